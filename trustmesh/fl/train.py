"""Local training and evaluation as plain functions over (model, X, y).

Plain minibatch SGD (optional momentum and FedProx term). The minibatch order comes from
``numpy.random.default_rng(seed)`` (W1: seed = round * 100 + client), so a run is reproducible.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from trustmesh.errors import ConfigError

__all__ = ["TrainResult", "train_local", "evaluate"]


@dataclass(frozen=True)
class TrainResult:
    """What a participant reports: samples seen per epoch, then the mean training loss and the share
    of correctly classified samples over the last epoch (as its minibatches were trained), seconds."""

    num_samples: int
    loss: float
    seconds: float
    accuracy: float = float("nan")


def _tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    if len(x) != len(y):
        raise ConfigError(f"X has {len(x)} rows but y has {len(y)}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.ascontiguousarray(y, dtype=np.int64)
    # torch wants writable memory; the cached datasets are read-only, so copy those once
    xt = torch.from_numpy(x if x.flags.writeable else x.copy())
    yt = torch.from_numpy(y if y.flags.writeable else y.copy())
    return xt, yt


def train_local(
    model: nn.Module,
    X: np.ndarray,
    y: np.ndarray,
    *,
    lr: float,
    momentum: float = 0.0,
    batch_size: int,
    epochs: int,
    seed: int,
    prox_mu: float = 0.0,
    base_params: Mapping[str, np.ndarray] | None = None,
    threads: int | None = 1,
) -> TrainResult:
    """Train ``model`` in place with SGD; FedProx adds (mu/2)·||w - base||² (base = start if not given).

    ``threads`` sets torch's intra-op threads (1 by default: the machine is shared); None leaves it.
    """
    if batch_size < 1 or epochs < 0 or lr <= 0:
        raise ConfigError("batch_size >= 1, epochs >= 0 and lr > 0 are required")
    if threads is not None:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    xt, yt = _tensors(X, y)
    n = len(xt)
    params = list(model.parameters())
    anchor: list[torch.Tensor] = []
    if prox_mu > 0:
        if base_params is None:
            anchor = [p.detach().clone() for p in params]
        else:
            named = dict(model.named_parameters())
            anchor = [torch.from_numpy(np.array(base_params[name], dtype=np.float32)) for name in named]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum)
    rng = np.random.default_rng(seed)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    epoch_loss = epoch_accuracy = float("nan")
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(n))
        total, correct = 0.0, 0
        for start in range(0, n, batch_size):
            batch = order[start : start + batch_size]
            optimizer.zero_grad(set_to_none=True)
            logits, target = model(xt[batch]), yt[batch]
            loss = loss_fn(logits, target)
            total += float(loss.detach()) * len(batch)
            correct += int((logits.detach().argmax(1) == target).sum())
            if anchor:
                prox = sum(((p - a) ** 2).sum() for p, a in zip(params, anchor, strict=True))
                loss = loss + 0.5 * prox_mu * prox
            loss.backward()
            optimizer.step()
        epoch_loss = total / max(n, 1)
        epoch_accuracy = correct / max(n, 1)
    return TrainResult(num_samples=n, loss=epoch_loss, seconds=time.perf_counter() - started,
                       accuracy=epoch_accuracy)


@torch.no_grad()
def evaluate(
    model: nn.Module, X: np.ndarray, y: np.ndarray, batch_size: int = 1000, *, threads: int | None = 1
) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of ``model`` on (X, y)."""
    if threads is not None:
        torch.set_num_threads(threads)
    xt, yt = _tensors(X, y)
    if len(xt) == 0:
        raise ConfigError("cannot evaluate on an empty set")
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(xt), batch_size):
        logits = model(xt[start : start + batch_size])
        target = yt[start : start + batch_size]
        loss_sum += float(nn.functional.cross_entropy(logits, target, reduction="sum"))
        correct += int((logits.argmax(1) == target).sum())
    return loss_sum / len(xt), correct / len(xt)
