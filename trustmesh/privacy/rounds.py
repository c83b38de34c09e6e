"""Client-level DP as a workflow runs it: one place that turns the workflow's privacy section into
each participant's noise share, the on-chain round cap and the epsilon spent after each round.

Distributed DP (docs/privacy.md): every participant clips its delta to C and adds its share of the
Gaussian noise, so the aggregate stays recomputable from the chain and verify-round is unchanged.
The accountant assumes the smallest quorum that can close a round (min_nodes_required).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trustmesh.privacy.accountant import epsilon_after, rounds_allowed
from trustmesh.privacy.dp import DistributedNoise
from trustmesh.privacy.errors import PrivacyConfigError

DEFAULT_DELTA = 1e-5
SAMPLING_RATE = 1.0  # every participant takes part in every round


@dataclass(frozen=True)
class ClientDP:
    noise: DistributedNoise
    epsilon: float | None
    delta: float

    def round_cap(self, max_rounds: int) -> int:
        """Rounds the (epsilon, delta) budget allows, at most ``max_rounds`` (recorded on-chain)."""
        if self.epsilon is None:
            return max_rounds
        return rounds_allowed(self.epsilon, self.delta, self.noise.accounting_noise_multiplier,
                              SAMPLING_RATE, max_rounds)

    def epsilon_spent(self, rounds: int) -> float:
        """Epsilon after ``rounds`` rounds, for the round record and the audit trail."""
        return epsilon_after(rounds, noise_multiplier=self.noise.accounting_noise_multiplier,
                             sampling_rate=SAMPLING_RATE, delta=self.delta)


def client_dp(dp: Any, *, expected_nodes: int, min_nodes: int) -> ClientDP | None:
    """The client-level DP plan of a workflow's ``privacy.dp`` section (a mapping or DPSpec); None if off."""
    get = dp.get if isinstance(dp, dict) else (lambda k, default=None: getattr(dp, k, default))
    mode = get("mode", "none")
    if mode == "none":
        return None
    if mode != "client":
        raise PrivacyConfigError(
            f"privacy.dp.mode {mode!r}: rounds run client-level DP; sample-level DP-SGD is in "
            "trustmesh.privacy.dpsgd but not wired into participants yet")
    clip, z = get("clip"), get("noise_multiplier")
    if clip is None or z is None:
        raise PrivacyConfigError("client-level DP needs privacy.dp.clip and privacy.dp.noise_multiplier")
    noise = DistributedNoise(noise_multiplier=float(z), clip=float(clip), expected_nodes=expected_nodes,
                             min_nodes=min_nodes)
    delta = get("delta") or DEFAULT_DELTA
    epsilon = get("epsilon")
    return ClientDP(noise=noise, epsilon=float(epsilon) if epsilon is not None else None, delta=float(delta))
