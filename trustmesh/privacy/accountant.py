"""Privacy accounting with dp-accounting's RDP accountant, and the on-chain round cap derived from it.

Floating-point accounting runs in the coordinator's CLI only; the ledger records the integer
``rounds_allowed`` and refuses ``open_round`` beyond it.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from typing import Any

import dp_accounting
from dp_accounting import rdp

from trustmesh.privacy.errors import PrivacyConfigError

__all__ = ["ACCOUNTANT", "dpsgd_round_steps", "epsilon_after", "privacy_record", "rounds_allowed"]

ACCOUNTANT = f"rdp/dp-accounting {metadata.version('dp-accounting')}"


@contextmanager
def _quiet_absl() -> Iterator[None]:
    """dp-accounting logs a warning for each fractional RDP order it drops at q<1; they are expected."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _check(noise_multiplier: float, sampling_rate: float, delta: float) -> None:
    if not (noise_multiplier >= 0 and math.isfinite(noise_multiplier)):
        raise PrivacyConfigError(f"noise multiplier must be a finite number >= 0, got {noise_multiplier}")
    if not 0 < sampling_rate <= 1:
        raise PrivacyConfigError(f"sampling rate must be in (0, 1], got {sampling_rate}")
    if not 0 < delta < 1:
        raise PrivacyConfigError(f"delta must be in (0, 1), got {delta}")


def epsilon_after(rounds: int, *, noise_multiplier: float, sampling_rate: float, delta: float) -> float:
    """Epsilon spent after ``rounds`` Poisson-subsampled Gaussian steps (q=1: every participant, every round)."""
    _check(noise_multiplier, sampling_rate, delta)
    if rounds < 0:
        raise PrivacyConfigError(f"rounds must be >= 0, got {rounds}")
    if rounds == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    step: dp_accounting.DpEvent = dp_accounting.GaussianDpEvent(noise_multiplier)
    if sampling_rate < 1:
        step = dp_accounting.PoissonSampledDpEvent(sampling_rate, step)
    accountant = rdp.RdpAccountant()
    with _quiet_absl():
        accountant.compose(dp_accounting.SelfComposedDpEvent(step, rounds))
        return float(accountant.get_epsilon(delta))


def dpsgd_round_steps(samples: int, *, batch_size: int, epochs: int) -> tuple[float, int]:
    """(sampling rate q = B/N, steps = epochs * ceil(N/B)) that one round of DP-SGD on N examples is accounted with.

    Opacus samples at 1/len(loader) <= B/N and takes at most ceil(N/B) steps an epoch: both bound it from above.
    """
    if samples < 1 or batch_size < 1 or epochs < 1:
        raise PrivacyConfigError(f"need samples, batch_size and epochs >= 1, got {samples}, {batch_size}, {epochs}")
    return min(1.0, batch_size / samples), epochs * -(-samples // batch_size)


def rounds_allowed(epsilon: float, delta: float, noise_multiplier: float, sampling_rate: float,
                   max_rounds: int, *, steps_per_round: int = 1) -> int:
    """The largest r <= max_rounds with epsilon_after(r * steps_per_round) <= epsilon (binary search).

    Client-level DP takes one step a round; sample-level DP-SGD takes epochs * batches steps a round.
    """
    _check(noise_multiplier, sampling_rate, delta)
    if not epsilon > 0:
        raise PrivacyConfigError(f"epsilon must be > 0, got {epsilon}")
    if max_rounds < 0 or steps_per_round < 1:
        raise PrivacyConfigError(f"need max_rounds >= 0 and steps_per_round >= 1, got {max_rounds}, "
                                 f"{steps_per_round}")

    def fits(r: int) -> bool:
        return epsilon_after(r * steps_per_round, noise_multiplier=noise_multiplier, sampling_rate=sampling_rate,
                             delta=delta) <= epsilon

    low, high = 0, max_rounds  # invariant: fits(low); the answer lies in [low, high]
    if fits(high):
        return high
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def privacy_record(round: int, mechanism: str, clip: float, z: float, epsilon_spent: float,
                   epsilon_remaining: float, *, delta: float | None = None) -> dict[str, Any]:
    """One round's entry of the privacy audit trail (a CouchDB document body)."""
    record: dict[str, Any] = {
        "type": "privacy",
        "round": int(round),
        "mechanism": mechanism,
        "clip": float(clip),
        "noise_multiplier": float(z),
        "epsilon_spent": float(epsilon_spent),
        "epsilon_remaining": float(epsilon_remaining),
        "accountant": ACCOUNTANT,
    }
    if delta is not None:
        record["delta"] = float(delta)
    return record
