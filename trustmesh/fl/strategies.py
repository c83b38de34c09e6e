"""Named aggregation strategies: thin classes over the math in ``aggregate.py``, one per workflow name.

A strategy gets the round's validated updates (deltas, in the on-chain index order), their sample
counts and metrics, and the server-optimizer state of the previous round; it returns the aggregated
delta and the new state. It does no I/O: the compute node fetches, stores and hashes.
"""
from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np

from trustmesh.errors import ConfigError
from trustmesh.fl import aggregate as agg

__all__ = [
    "Params",
    "AggregateResult",
    "ServerOptState",
    "Strategy",
    "FedAvg",
    "PerfFedAvg",
    "Median",
    "TrimmedMean",
    "Krum",
    "MultiKrum",
    "CosineTrim",
    "TrendTrim",
    "FedAdam",
    "FedYogi",
    "STRATEGIES",
    "get_strategy",
]

Params = dict[str, np.ndarray]


@dataclass(frozen=True, kw_only=True)
class ServerOptState:
    """Server state named like the model's tensors, kept as a blob hashed with the result.

    FedAdam/FedYogi: the moments m and v. TrendTrim: its reference direction in m, v all zeros.
    """

    m: Params
    v: Params

    def to_params(self) -> Params:
        """One flat dict ``m/<name>`` then ``v/<name>`` (float32), ready for the update codec."""
        out: Params = {f"m/{name}": arr for name, arr in self.m.items()}
        out.update({f"v/{name}": arr for name, arr in self.v.items()})
        return out

    @classmethod
    def from_params(cls, params: Mapping[str, np.ndarray]) -> ServerOptState:
        """Inverse of ``to_params``; the m and v halves must name the same tensors with equal shapes."""
        m = {k[2:]: np.asarray(a, dtype=np.float32) for k, a in params.items() if k.startswith("m/")}
        v = {k[2:]: np.asarray(a, dtype=np.float32) for k, a in params.items() if k.startswith("v/")}
        if len(m) + len(v) != len(params) or list(m) != list(v):
            raise agg.AggregationError("optimizer state must hold m/<name> and v/<name> for the same names")
        if any(m[k].shape != v[k].shape for k in m):
            raise agg.AggregationError("optimizer state: m and v shapes differ")
        return cls(m=m, v=v)


@dataclass(frozen=True)
class AggregateResult:
    """The aggregated delta (add it to the base model), the new optimizer state, and what shaped it."""

    delta: Params
    state: ServerOptState | None = None
    selected: tuple[int, ...] | None = None  # indices of the updates used (Krum family); None = all
    arithmetic: str = agg.CANONICAL_ARITHMETIC


def _spec(updates: Sequence[Mapping[str, np.ndarray]]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    if not updates:
        raise agg.AggregationError("nothing to aggregate: no updates")
    return tuple((name, tuple(arr.shape)) for name, arr in updates[0].items())


@dataclass(frozen=True, kw_only=True)
class Strategy(ABC):
    """Base: stack the updates once, combine the matrix into one delta vector, name it again."""

    name: ClassVar[str]
    robust: ClassVar[bool] = False  # needs to see individual updates (refused with secure aggregation)
    workers: int = 1  # threads for the column blocks; never changes a byte of the result

    def aggregate(
        self,
        updates: Sequence[Mapping[str, np.ndarray]],
        weights: Sequence[float],
        *,
        metrics: Sequence[Mapping[str, Any]] | None = None,
        state: ServerOptState | None = None,
    ) -> AggregateResult:
        """Aggregate deltas given in on-chain index order; ``weights`` are their num_samples."""
        if len(weights) != len(updates):
            raise agg.AggregationError(f"{len(updates)} updates but {len(weights)} weights")
        mets = list(metrics) if metrics is not None else [{} for _ in updates]
        if len(mets) != len(updates):
            raise agg.AggregationError(f"{len(updates)} updates but {len(mets)} metric records")
        spec = _spec(updates)
        matrix = agg.stack_updates(updates, spec)
        vector, selected, new_state = self.combine(matrix, list(weights), mets, state, spec)
        return AggregateResult(delta=agg.unstack(vector, spec), state=new_state, selected=selected)

    @abstractmethod
    def combine(
        self,
        matrix: np.ndarray,
        weights: list[float],
        metrics: list[Mapping[str, Any]],
        state: ServerOptState | None,
        spec: tuple[tuple[str, tuple[int, ...]], ...],
    ) -> tuple[np.ndarray, tuple[int, ...] | None, ServerOptState | None]:
        """The stacked updates ``[n, P]`` -> (delta vector, selected indices, new state)."""


@dataclass(frozen=True, kw_only=True)
class FedAvg(Strategy):
    """FedAvg: mean of the deltas weighted by their sample counts."""

    name: ClassVar[str] = "fedavg"

    def combine(self, matrix, weights, metrics, state, spec):  # type: ignore[no-untyped-def]
        return agg.fedavg(matrix, weights, workers=self.workers), None, None


@dataclass(frozen=True, kw_only=True)
class PerfFedAvg(Strategy):
    """PerfFedAvg: weights = alpha * data share + (1 - alpha) * validation-accuracy share."""

    name: ClassVar[str] = "perffedavg"
    alpha: float = 0.5
    accuracy_key: str = "val_accuracy"
    missing_accuracy: float = 0.5  # the source design's value for a participant that sent none

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError("perffedavg: alpha must lie in [0, 1]")

    def combine(self, matrix, weights, metrics, state, spec):  # type: ignore[no-untyped-def]
        accs = []
        for record in metrics:
            value = record.get(self.accuracy_key, self.missing_accuracy)
            acc = float(value) if isinstance(value, numbers.Real) else self.missing_accuracy
            accs.append(acc if math.isfinite(acc) else self.missing_accuracy)
        vec = agg.perffedavg(matrix, weights, accs, alpha=self.alpha, workers=self.workers)
        return vec, None, None


@dataclass(frozen=True, kw_only=True)
class Median(Strategy):
    """Coordinate-wise median (Yin et al. 2018); sample counts are ignored."""

    name: ClassVar[str] = "median"
    robust: ClassVar[bool] = True

    def combine(self, matrix, weights, metrics, state, spec):  # type: ignore[no-untyped-def]
        return agg.coordinate_median(matrix, workers=self.workers), None, None


@dataclass(frozen=True, kw_only=True)
class TrimmedMean(Strategy):
    """Coordinate-wise trimmed mean dropping floor(beta * n) values at each end; counts ignored."""

    name: ClassVar[str] = "trimmed_mean"
    robust: ClassVar[bool] = True
    beta: float = 0.2

    def __post_init__(self) -> None:
        if not 0.0 <= self.beta < 0.5:
            raise ConfigError("trimmed_mean: beta must lie in [0, 0.5)")

    def combine(self, matrix, weights, metrics, state, spec):  # type: ignore[no-untyped-def]
        return agg.trimmed_mean(matrix, beta=self.beta, workers=self.workers), None, None


@dataclass(frozen=True, kw_only=True)
class Krum(Strategy):
    """Krum (Blanchard et al. 2017): the one update closest to its n - f - 2 nearest neighbours."""

    name: ClassVar[str] = "krum"
    robust: ClassVar[bool] = True
    f: int = 1

    def __post_init__(self) -> None:
        if self.f < 0:
            raise ConfigError(f"{self.name}: f must be >= 0")

    def combine(self, matrix, weights, metrics, state, spec):  # type: ignore[no-untyped-def]
        vec, best = agg.krum(matrix, f=self.f, workers=self.workers)
        return vec, (best,), None


@dataclass(frozen=True, kw_only=True)
class MultiKrum(Krum):
    """Multi-Krum: FedAvg over the m best Krum scores (m = n - f when not set)."""

    name: ClassVar[str] = "multi_krum"
    m: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.m is not None and self.m < 1:
            raise ConfigError("multi_krum: m must be >= 1")

    def combine(self, matrix, weights, metrics, state, spec):  # type: ignore[no-untyped-def]
        m = None if self.m is None else min(self.m, matrix.shape[0])
        vec, chosen = agg.multi_krum(matrix, weights, f=self.f, m=m, workers=self.workers)
        return vec, tuple(chosen), None


@dataclass(frozen=True, kw_only=True)
class CosineTrim(Strategy):
    """Drops the f updates least aligned with the coordinate median, caps norms, sample-weighted mean."""

    name: ClassVar[str] = "cosine_trim"
    robust: ClassVar[bool] = True
    f: int = 1
    norm_cap: float = 3.0  # longer than norm_cap x the median norm: shrunk to the median norm

    def __post_init__(self) -> None:
        if self.f < 0:
            raise ConfigError("cosine_trim: f must be >= 0")
        if not (math.isfinite(self.norm_cap) and self.norm_cap >= 1.0):
            raise ConfigError("cosine_trim: norm_cap must be finite and >= 1")

    def combine(self, matrix, weights, metrics, state, spec):  # type: ignore[no-untyped-def]
        f = min(self.f, matrix.shape[0] - 1)
        vec, kept = agg.cosine_trim(matrix, weights, f=f, norm_cap=self.norm_cap, workers=self.workers)
        return vec, tuple(kept), None


@dataclass(frozen=True, kw_only=True)
class TrendTrim(Strategy):
    """Drops up to f updates pointing against the previous rounds' aggregate (server state), caps norms.

    The reference travels as ``ServerOptState.m`` (``v`` stays zero, so the blob keeps the
    FedAdam layout the round protocol already stores and hashes); without one the median stands in.
    """

    name: ClassVar[str] = "trend_trim"
    robust: ClassVar[bool] = True
    f: int = 1
    min_cosine: float = 0.0  # below this cosine to the reference an update may be dropped
    norm_cap: float = 3.0  # longer than norm_cap x the median norm: shrunk to the median norm
    momentum: float = 0.0  # next reference = momentum x reference + (1 - momentum) x this aggregate

    def __post_init__(self) -> None:
        if self.f < 0:
            raise ConfigError("trend_trim: f must be >= 0")
        if not -1.0 <= self.min_cosine <= 1.0:
            raise ConfigError("trend_trim: min_cosine must lie in [-1, 1]")
        if not (math.isfinite(self.norm_cap) and self.norm_cap >= 1.0):
            raise ConfigError("trend_trim: norm_cap must be finite and >= 1")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError("trend_trim: momentum must lie in [0, 1)")

    def combine(self, matrix, weights, metrics, state, spec):  # type: ignore[no-untyped-def]
        reference = None
        if state is not None:
            if [(k, a.shape) for k, a in state.m.items()] != list(spec):
                raise agg.AggregationError(f"{self.name}: server state does not match the model")
            reference = agg.stack_updates([state.m], spec)[0]
        f = min(self.f, matrix.shape[0] - 1)
        vec, kept = agg.trend_trim(matrix, weights, reference, f=f, min_cosine=self.min_cosine,
                                   norm_cap=self.norm_cap, workers=self.workers)
        if reference is None or self.momentum == 0.0:
            trend = vec.copy()
        else:
            trend = agg.weighted_sum([reference, vec], [self.momentum, 1.0 - self.momentum])
        new_state = ServerOptState(m=agg.unstack(trend, spec), v=agg.unstack(np.zeros_like(trend), spec))
        return vec, tuple(kept), new_state


@dataclass(frozen=True, kw_only=True)
class FedAdam(Strategy):
    """FedAdam (Reddi et al. 2021): the FedAvg delta is a pseudo-gradient for a server Adam step."""

    name: ClassVar[str] = "fedadam"
    eta: float = 1e-2
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3
    _step = staticmethod(agg.adam_server_step)

    def __post_init__(self) -> None:
        if self.eta <= 0 or self.tau <= 0 or not 0 <= self.beta1 < 1 or not 0 <= self.beta2 < 1:
            raise ConfigError(f"{self.name}: need eta > 0, tau > 0 and 0 <= beta1, beta2 < 1")

    def combine(self, matrix, weights, metrics, state, spec):  # type: ignore[no-untyped-def]
        pseudo_grad = agg.fedavg(matrix, weights, workers=self.workers)
        m = v = None
        if state is not None:
            if [(k, a.shape) for k, a in state.m.items()] != list(spec):
                raise agg.AggregationError(f"{self.name}: optimizer state does not match the model")
            m = agg.stack_updates([state.m], spec)[0]
            v = agg.stack_updates([state.v], spec)[0]
        step, m_new, v_new = self._step(
            pseudo_grad, m, v, eta=self.eta, beta1=self.beta1, beta2=self.beta2, tau=self.tau
        )
        new_state = ServerOptState(m=agg.unstack(m_new, spec), v=agg.unstack(v_new, spec))
        return step, None, new_state


@dataclass(frozen=True, kw_only=True)
class FedYogi(FedAdam):
    """FedYogi (Reddi et al. 2021): like FedAdam with Yogi's additive second-moment update."""

    name: ClassVar[str] = "fedyogi"
    _step = staticmethod(agg.yogi_server_step)


STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (FedAvg, PerfFedAvg, Median, TrimmedMean, Krum, MultiKrum, CosineTrim, TrendTrim, FedAdam, FedYogi)
}


def get_strategy(name: str, **params: Any) -> Strategy:
    """The strategy a workflow names, built from its parameters; ConfigError for unknown ones."""
    cls = STRATEGIES.get(name)
    if cls is None:
        raise ConfigError(f"unknown aggregation {name!r}; known: {', '.join(sorted(STRATEGIES))}")
    allowed = {f.name for f in fields(cls) if f.init}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ConfigError(f"{name}: unknown parameter(s) {', '.join(unknown)}")
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"{name}: {exc}") from exc

