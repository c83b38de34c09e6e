"""Model parameters as plain named float32 arrays: the one form that crosses a boundary.

``Params`` keeps the model's ``state_dict`` order; ``ParamSpec`` is that order with the shapes,
which every decoder and aggregator checks against. Only ``get_params``/``set_params`` touch torch.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from trustmesh.errors import UpdateRejected

if TYPE_CHECKING:
    import torch

Params = dict[str, np.ndarray]

__all__ = [
    "Params",
    "ParamSpec",
    "spec_of",
    "spec_for_model",
    "get_params",
    "set_params",
    "delta",
    "apply_delta",
    "flatten",
    "unflatten",
]


@dataclass(frozen=True)
class ParamSpec:
    """The ordered (name, shape) list of a model's parameters; iterating yields the pairs."""

    entries: tuple[tuple[str, tuple[int, ...]], ...]

    def __post_init__(self) -> None:
        names = [name for name, _ in self.entries]
        if len(set(names)) != len(names):
            raise ValueError("parameter names must be unique")

    @classmethod
    def of(cls, pairs: Iterable[tuple[str, Sequence[int]]]) -> ParamSpec:
        """Build a spec from any iterable of (name, shape) pairs."""
        return cls(tuple((str(name), tuple(int(d) for d in shape)) for name, shape in pairs))

    def __iter__(self) -> Iterator[tuple[str, tuple[int, ...]]]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.entries)

    @property
    def shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(shape for _, shape in self.entries)

    @functools.cached_property
    def sizes(self) -> tuple[int, ...]:
        return tuple(math.prod(shape) for _, shape in self.entries)

    @functools.cached_property
    def offsets(self) -> tuple[int, ...]:
        """Start of each tensor in the flat vector, plus the total at the end."""
        out = [0]
        for size in self.sizes:
            out.append(out[-1] + size)
        return tuple(out)

    @property
    def num_params(self) -> int:
        return self.offsets[-1]

    def check(self, params: Mapping[str, np.ndarray]) -> None:
        """Raise UpdateRejected unless ``params`` has exactly these names, order, shapes, float32."""
        if list(params) != list(self.names):
            raise UpdateRejected(f"parameter names {list(params)[:4]}... do not match the model spec")
        for (name, shape), arr in zip(self.entries, params.values(), strict=True):
            if not isinstance(arr, np.ndarray) or arr.dtype != np.float32:
                raise UpdateRejected(f"{name}: expected a float32 array")
            if arr.shape != shape:
                raise UpdateRejected(f"{name}: shape {arr.shape} != {shape}")


def spec_of(params: Mapping[str, np.ndarray]) -> ParamSpec:
    """The spec of a parameter dict, in its own order."""
    return ParamSpec(tuple((name, tuple(arr.shape)) for name, arr in params.items()))


@functools.cache
def spec_for_model(name: str) -> ParamSpec:
    """The spec of a registered model (built once, then cached)."""
    import torch

    from trustmesh.fl.models import build_model

    with torch.random.fork_rng(devices=[]):  # building seeds torch; keep the caller's RNG as it was
        return spec_of(get_params(build_model(name)))


def get_params(model: torch.nn.Module) -> Params:
    """Copy a model's state into named C-contiguous float32 arrays, in ``state_dict`` order."""
    return {
        name: np.array(t.detach().cpu().numpy(), dtype=np.float32, order="C", copy=True)
        for name, t in model.state_dict().items()
    }


def set_params(model: torch.nn.Module, params: Mapping[str, np.ndarray]) -> None:
    """Load named arrays into a model; names and shapes must match exactly."""
    import torch

    state = model.state_dict()
    if list(params) != list(state):
        raise UpdateRejected("parameter names do not match the model")
    new_state = {}
    for name, arr in params.items():
        if tuple(arr.shape) != tuple(state[name].shape):
            raise UpdateRejected(f"{name}: shape {tuple(arr.shape)} != {tuple(state[name].shape)}")
        new_state[name] = torch.from_numpy(np.array(arr, dtype=np.float32, copy=True))
    model.load_state_dict(new_state, strict=True)


def _same_layout(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> None:
    if list(a) != list(b):
        raise UpdateRejected("parameter names differ")
    for name in a:
        if a[name].shape != b[name].shape:
            raise UpdateRejected(f"{name}: shape {a[name].shape} != {b[name].shape}")


def delta(local: Mapping[str, np.ndarray], base: Mapping[str, np.ndarray]) -> Params:
    """The update a participant sends: ``local - base``, per tensor, float32."""
    _same_layout(local, base)
    return {name: np.subtract(local[name], base[name], dtype=np.float32) for name in local}


def apply_delta(base: Mapping[str, np.ndarray], update: Mapping[str, np.ndarray]) -> Params:
    """``base + update``, per tensor, float32 (a new dict; inputs untouched)."""
    _same_layout(base, update)
    return {name: np.add(base[name], update[name], dtype=np.float32) for name in base}


def flatten(params: Mapping[str, np.ndarray], out: np.ndarray | None = None) -> np.ndarray:
    """All tensors concatenated in order into one float32 vector (written into ``out`` if given)."""
    total = sum(int(arr.size) for arr in params.values())
    if out is None:
        out = np.empty(total, dtype=np.float32)
    elif out.shape != (total,) or out.dtype != np.float32:
        raise ValueError(f"out must be a float32 vector of {total} elements")
    pos = 0
    for arr in params.values():
        out[pos : pos + arr.size] = arr.reshape(-1)
        pos += arr.size
    return out


def unflatten(vec: np.ndarray, spec: ParamSpec) -> Params:
    """Split a flat vector back into named tensors (views of ``vec`` when it is float32)."""
    vec = np.ascontiguousarray(vec, dtype=np.float32)
    if vec.shape != (spec.num_params,):
        raise UpdateRejected(f"flat vector has {vec.size} values, the spec {spec.num_params}")
    off = spec.offsets
    return {name: vec[off[i] : off[i + 1]].reshape(shape) for i, (name, shape) in enumerate(spec)}
