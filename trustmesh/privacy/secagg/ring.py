"""Exact arithmetic in Z/2^32: quantize floats to ring elements, sum with wrap-around, dequantize."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from trustmesh.privacy.errors import PrivacyConfigError, SecAggFailed

RING_BITS = 32
HALF = 2 ** (RING_BITS - 1)


@dataclass(frozen=True, kw_only=True)
class RingQuantizer:
    """Fixed-point code with step ``step``: x -> round(x/step) mod 2^32 (stochastic rounding by default).

    Per coordinate the sum of n encoded values differs from the true sum by less than n*step
    (stochastic, unbiased) or at most n*step/2 (deterministic). Sums must stay within ±2^31*step.
    """

    step: float = 2.0 ** -20
    stochastic: bool = True

    def __post_init__(self) -> None:
        if not (self.step > 0 and math.isfinite(self.step)):
            raise PrivacyConfigError(f"quantization step must be positive, got {self.step}")

    def error_bound(self, participants: int) -> float:
        """Largest per-coordinate difference between the decoded sum and the true sum."""
        return participants * self.step * (1.0 if self.stochastic else 0.5)

    def capacity(self, participants: int) -> float:
        """Largest |value| one of ``participants`` may encode so their sum cannot wrap."""
        return (HALF - 1 - participants) * self.step / participants

    def encode(self, values: np.ndarray, *, participants: int, rng: np.random.Generator) -> np.ndarray:
        """Quantize float values to uint32 ring elements; refuses values that could overflow the sum."""
        scaled = np.asarray(values, dtype=np.float64) / self.step
        if scaled.size:
            low, high = float(scaled.min()), float(scaled.max())  # NaN and ±inf propagate here
            if not (math.isfinite(low) and math.isfinite(high)):
                raise SecAggFailed("input holds non-finite values")
            if max(-low, high) > self.capacity(participants) / self.step:
                raise SecAggFailed(f"input exceeds the ring's capacity ±{self.capacity(participants):g}; "
                                   "clip it or raise the step")
        if self.stochastic:
            integers = np.floor(scaled)
            np.subtract(scaled, integers, out=scaled)  # the fraction, rounded up with that probability
            np.add(integers, rng.random(scaled.shape) < scaled, out=integers)
        else:
            integers = np.rint(scaled)
        # within capacity every integer fits in int32, whose two's complement is the ring element
        return integers.astype(np.int32).view(np.uint32)

    def decode(self, total: np.ndarray) -> np.ndarray:
        """Read a ring sum as signed 32-bit integers times the step (float64)."""
        return np.asarray(total, dtype=np.uint32).view(np.int32).astype(np.float64) * self.step
