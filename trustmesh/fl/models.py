"""The model registry a workflow names its model from, and model files at rest (safetensors).

W1 fixes the two models: MLP "2NN" 784-200-200-10 and the 2-conv CNN; ``digits-mlp`` is a tiny
extra for the 8x8 sklearn digits, for fast end-to-end tests. Construction is seeded.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file
from torch import nn

from trustmesh.errors import ConfigError
from trustmesh.fl.params import Params, ParamSpec, spec_of

__all__ = ["MODEL_NAMES", "build_model", "count_params", "save_model", "load_model", "input_shape"]


class MLP(nn.Module):
    """Fully connected ReLU network; accepts flat or image-shaped input."""

    def __init__(self, *, sizes: tuple[int, ...]) -> None:
        super().__init__()
        self.depth = len(sizes) - 1
        for i in range(self.depth):
            self.add_module(f"fc{i + 1}", nn.Linear(sizes[i], sizes[i + 1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for i in range(self.depth):
            x = getattr(self, f"fc{i + 1}")(x)
            if i < self.depth - 1:
                x = torch.relu(x)
        return x


class CNN(nn.Module):
    """W1 CNN: conv5x5(1->32), pool, conv5x5(32->64), pool, fc 1024->512, fc 512->10 (valid padding)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5)
        self.conv2 = nn.Conv2d(32, 64, 5)
        self.fc1 = nn.Linear(1024, 512)
        self.fc2 = nn.Linear(512, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.view(-1, 1, 28, 28)
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


_REGISTRY: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "mlp": (lambda: MLP(sizes=(784, 200, 200, 10)), (784,)),
    "cnn": (CNN, (1, 28, 28)),
    "digits-mlp": (lambda: MLP(sizes=(64, 32, 10)), (64,)),
}
MODEL_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def build_model(name: str, seed: int = 0) -> nn.Module:
    """A fresh model by registry name; ``torch.manual_seed(seed)`` runs just before construction."""
    try:
        factory, _ = _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}") from None
    torch.manual_seed(seed)
    return factory()


def input_shape(name: str) -> tuple[int, ...]:
    """The per-sample input shape a registered model expects (it also accepts flat input)."""
    return _REGISTRY[name][1]


def count_params(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def save_model(params: Mapping[str, np.ndarray], path: str | Path) -> None:
    """Write named float32 arrays as a safetensors file; the order is kept in its metadata."""
    arrays = {name: np.asarray(arr, dtype=np.float32, order="C") for name, arr in params.items()}
    save_file(arrays, str(path), metadata={"format": "trustmesh-fl", "order": json.dumps(list(arrays))})


def load_model(path: str | Path, spec: ParamSpec | None = None) -> Params:
    """Read a safetensors model file back in its saved order; checked against ``spec`` if given."""
    try:
        arrays = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as fh:
            metadata = fh.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise ConfigError(f"cannot read model file {path}: {exc}") from exc
    order = json.loads(metadata["order"]) if "order" in metadata else list(arrays)
    if sorted(order) != sorted(arrays):
        raise ConfigError(f"model file {path}: metadata order does not match its tensors")
    params = {name: np.asarray(arrays[name], dtype=np.float32, order="C") for name in order}
    if spec is not None and spec_of(params) != spec:
        raise ConfigError(f"model file {path} does not match the expected model spec")
    return params
