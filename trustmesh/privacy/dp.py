"""Client-level DP-FedAvg with the Gaussian mechanism, as distributed DP.

Each participant clips its own delta to L2 norm C and adds its share of the noise, so the sum of
the submissions already carries noise and the aggregate stays recomputable from the chain.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from trustmesh.fl.aggregate import sq_norm
from trustmesh.fl.params import flatten
from trustmesh.privacy.errors import PrivacyAlreadyApplied, PrivacyConfigError

Params = dict[str, np.ndarray]

__all__ = [
    "DistributedNoise",
    "RoundPrivatizer",
    "PrivatizedDelta",
    "add_gaussian_noise",
    "clip_delta",
    "l2_norm",
    "weighted_noise_multiplier",
]


# Scale a touch below C so the float32 result's norm never exceeds C after rounding.
_CLIP_SAFETY = 1.0 - 2.0 ** -20


def l2_norm(params: Mapping[str, np.ndarray]) -> float:
    """L2 norm over all tensors together, in the canonical arithmetic the update validator uses."""
    return math.sqrt(sq_norm(flatten(params)))


def clip_delta(params: Mapping[str, np.ndarray], clip: float) -> tuple[Params, float]:
    """Scale the whole delta so its L2 norm is at most ``clip``; return it and the norm before clipping."""
    if not (clip > 0 and math.isfinite(clip)):
        raise PrivacyConfigError(f"clip must be a positive finite number, got {clip}")
    norm = l2_norm(params)
    if not math.isfinite(norm):
        raise PrivacyConfigError("delta holds non-finite values; it cannot be clipped")
    scale = min(1.0, clip / norm * _CLIP_SAFETY) if norm > 0 else 1.0
    clipped = {name: (np.asarray(value, dtype=np.float64) * scale).astype(np.float32)
               for name, value in params.items()}
    return clipped, norm


def add_gaussian_noise(params: Mapping[str, np.ndarray], std: float, rng: np.random.Generator) -> Params:
    """Return ``params`` plus i.i.d. N(0, std^2) noise on every coordinate (drawn in sorted name order)."""
    if not (std >= 0 and math.isfinite(std)):
        raise PrivacyConfigError(f"noise std must be a finite number >= 0, got {std}")
    noisy: Params = {}
    for name in sorted(params):
        value = np.asarray(params[name], dtype=np.float32)
        noise = rng.normal(0.0, std, size=value.shape) if std > 0 else np.zeros(value.shape)
        noisy[name] = (value.astype(np.float64) + noise).astype(np.float32)
    return {name: noisy[name] for name in params}  # the caller's order: the update codec checks it


def weighted_noise_multiplier(weights: list[float] | np.ndarray, noise_multiplier: float) -> float:
    """Effective multiplier of the weighted sum sum(w_k (clip(d_k) + n_k)) with per-participant std z*C/sqrt(n).

    The sensitivity of that sum is C * max(w); its noise std is z*C*sqrt(sum w^2 / n). Equal weights
    give back z; unequal (sample-weighted) FedAvg gives less, which the accountant must be told.
    """
    w: np.ndarray = np.asarray(weights, dtype=np.float64)
    if w.size == 0 or np.any(w < 0) or float(w.max()) <= 0:
        raise PrivacyConfigError("weights must be non-negative with at least one positive")
    return float(noise_multiplier * math.sqrt(float(np.dot(w, w)) / w.size) / float(w.max()))


@dataclass(frozen=True, kw_only=True)
class DistributedNoise:
    """How the noise z*C is split among participants, and what the accountant must assume.

    ``calibrate_to="expected"``: each adds std z*C/sqrt(expected_nodes); with dropouts the sum has
    less noise, so accounting uses z*sqrt(min_nodes/expected_nodes). ``"min_nodes"``: each adds
    z*C/sqrt(min_nodes); any quorum has at least z*C, at the price of extra noise when all submit.
    """

    noise_multiplier: float
    clip: float
    expected_nodes: int
    min_nodes: int
    calibrate_to: Literal["expected", "min_nodes"] = "expected"

    def __post_init__(self) -> None:
        if not (self.clip > 0 and math.isfinite(self.clip)):
            raise PrivacyConfigError(f"clip must be a positive finite number, got {self.clip}")
        if not (self.noise_multiplier >= 0 and math.isfinite(self.noise_multiplier)):
            raise PrivacyConfigError(f"noise multiplier must be >= 0, got {self.noise_multiplier}")
        if not 1 <= self.min_nodes <= self.expected_nodes:
            raise PrivacyConfigError(
                f"need 1 <= min_nodes <= expected_nodes, got {self.min_nodes} and {self.expected_nodes}")
        if self.calibrate_to not in ("expected", "min_nodes"):
            raise PrivacyConfigError(f"calibrate_to is 'expected' or 'min_nodes', got {self.calibrate_to!r}")

    @property
    def calibration_nodes(self) -> int:
        """The number of submissions whose noise shares add up to exactly z*C."""
        return self.expected_nodes if self.calibrate_to == "expected" else self.min_nodes

    @property
    def participant_std(self) -> float:
        """Std of the noise one participant adds to each coordinate of its clipped delta."""
        return self.noise_multiplier * self.clip / math.sqrt(self.calibration_nodes)

    def sum_std(self, submitted: int) -> float:
        """Std of the noise in the sum of ``submitted`` noisy deltas."""
        return self.participant_std * math.sqrt(submitted)

    @property
    def accounting_noise_multiplier(self) -> float:
        """The multiplier to give the accountant: the noise of the smallest sum that can close a round."""
        return self.sum_std(self.min_nodes) / self.clip


@dataclass(frozen=True, kw_only=True)
class PrivatizedDelta:
    """A clipped, noised delta and what was done to it (for the audit trail)."""

    round: int
    params: Params
    original_norm: float
    clipped: bool
    noise_std: float


@dataclass(kw_only=True)
class RoundPrivatizer:
    """Applies clip + noise exactly once per round for one participant; a second request raises."""

    noise: DistributedNoise
    rng: np.random.Generator = field(default_factory=np.random.default_rng)
    _done: dict[int, PrivatizedDelta] = field(default_factory=dict, init=False, repr=False)

    def privatize(self, round: int, delta: Mapping[str, np.ndarray]) -> PrivatizedDelta:
        """Clip ``delta`` to C and add this participant's noise share for ``round``."""
        if round in self._done:
            raise PrivacyAlreadyApplied(
                f"clipping and noise were already applied for round {round}; resubmit that result")
        clipped, norm = clip_delta(delta, self.noise.clip)
        noisy = add_gaussian_noise(clipped, self.noise.participant_std, self.rng)
        result = PrivatizedDelta(round=round, params=noisy, original_norm=norm,
                                 clipped=norm > self.noise.clip, noise_std=self.noise.participant_std)
        self._done[round] = result
        return result

    def applied(self, round: int) -> PrivatizedDelta | None:
        """The delta privatized for ``round``, so a retried submission resends it unchanged."""
        return self._done.get(round)
