"""One in-process W1 FedAvg loop for the benches: participants train, each delta may be changed
(privatized, encoded, attacked) before it is submitted, the server averages and evaluates.

Defaults are W1's: MLP seeded 0, SGD lr 0.05, batch 32, 1 local epoch, participant k shuffles with
seed round*100 + k (rounds numbered from 1), sample-weighted FedAvg, accuracy on the 1,000 test digits.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from trustmesh.fl.aggregate import fedavg
from trustmesh.fl.data import load_w1
from trustmesh.fl.models import build_model
from trustmesh.fl.params import (
    Params,
    apply_delta,
    delta,
    flatten,
    get_params,
    set_params,
    spec_of,
    unflatten,
)
from trustmesh.fl.partition import partition_indices
from trustmesh.fl.train import evaluate, train_local

__all__ = ["LR", "BATCH", "SimResult", "participant_data", "run_fedavg", "sgd_trainer"]

LR, BATCH = 0.05, 32

# (model, round, participant, X, y) -> samples trained on; trains ``model`` in place from the global model
Trainer = Callable[[nn.Module, int, int, np.ndarray, np.ndarray], int]
# (round, participant, delta) -> the delta that participant submits
Transform = Callable[[int, int, Params], Params]


@dataclass(frozen=True, kw_only=True)
class SimResult:
    """Test accuracy after each round and the wall seconds of each round."""

    accuracy: list[float]
    round_seconds: list[float]

    @property
    def final_accuracy(self) -> float | None:
        return self.accuracy[-1] if self.accuracy else None

    @property
    def seconds(self) -> float:
        return sum(self.round_seconds)


def participant_data(n: int, scheme: str = "iid") -> list[tuple[np.ndarray, np.ndarray]]:
    """W1's 4,000 train digits split among ``n`` participants (W1's recipes and seeds), flat X."""
    data = load_w1().flat()
    labels = np.zeros(int(data.train_indices.max()) + 1, dtype=np.int64)
    labels[data.train_indices] = data.y_train
    row_of = np.full(len(labels), -1, dtype=np.int64)
    row_of[data.train_indices] = np.arange(len(data.train_indices))
    parts = partition_indices(labels, data.train_indices, scheme, n)
    return [(data.x_train[row_of[p]].copy(), data.y_train[row_of[p]].copy()) for p in parts]


def sgd_trainer(model: nn.Module, rnd: int, k: int, x: np.ndarray, y: np.ndarray) -> int:
    """W1 local training: one epoch of plain SGD."""
    return train_local(model, x, y, lr=LR, momentum=0.0, batch_size=BATCH, epochs=1, seed=rnd * 100 + k).num_samples


def run_fedavg(*, participants: list[tuple[np.ndarray, np.ndarray]], rounds: int, model_name: str = "mlp",
               train: Trainer = sgd_trainer, transform: Transform | None = None,
               progress: Callable[[int, float, float], None] | None = None) -> SimResult:
    """Run ``rounds`` FedAvg rounds with every participant every round; ``progress(round, acc, secs)``."""
    torch.set_num_threads(1)
    test = load_w1().flat()
    model = build_model(model_name, seed=0)
    base = get_params(model)
    spec = spec_of(base)
    matrix = np.empty((len(participants), spec.num_params), dtype=np.float32)
    accuracy: list[float] = []
    seconds: list[float] = []
    for rnd in range(1, rounds + 1):
        started = time.perf_counter()
        counts = []
        for k, (x, y) in enumerate(participants):
            set_params(model, base)
            counts.append(train(model, rnd, k, x, y))
            update = delta(get_params(model), base)
            flatten(transform(rnd, k, update) if transform else update, out=matrix[k])
        base = apply_delta(base, unflatten(fedavg(matrix, counts), spec))
        set_params(model, base)
        finite = all(np.isfinite(a).all() for a in base.values())
        acc = evaluate(model, test.x_test, test.y_test)[1] if finite else 0.0
        accuracy.append(float(acc))
        seconds.append(time.perf_counter() - started)
        if progress:
            progress(rnd, accuracy[-1], seconds[-1])
    return SimResult(accuracy=accuracy, round_seconds=seconds)
