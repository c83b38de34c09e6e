"""The privacy audit trail of a round: what the workflow's DP did and what it has spent.

Built from the workflow spec and the epsilon the coordinator recorded with the round (no accounting
runs here), and stored with the round's history document in CouchDB.
"""
from __future__ import annotations

from typing import Any

from trustmesh.privacy.accountant import privacy_record
from trustmesh.privacy.rounds import ClientDP, SampleDP

__all__ = ["round_audit"]


def round_audit(spec: Any, round_no: int, epsilon_spent: float | None) -> dict[str, Any] | None:
    """One round's audit entry (mechanism, C, z, epsilon spent and remaining); None when DP is off."""
    dp = spec.privacy.dp
    if dp.mode == "none" or epsilon_spent is None or dp.clip is None or dp.noise_multiplier is None:
        return None
    sample = dp.mode == "sample"
    budget = dp.epsilon if dp.epsilon is not None else float("inf")
    record = privacy_record(round_no, SampleDP.mechanism if sample else ClientDP.mechanism, dp.clip,
                            dp.noise_multiplier, epsilon_spent, max(0.0, budget - epsilon_spent), delta=dp.delta)
    record["epsilon_budget"] = dp.epsilon
    record["unit"] = SampleDP.unit if sample else ClientDP.unit
    if sample:  # with a partition's size N these give q = B/N and epochs * ceil(N/B) steps a round
        record["batch_size"] = spec.training.batch_size
        record["local_epochs"] = spec.training.local_epochs
    else:
        record["expected_nodes"] = spec.expected_nodes
        record["min_nodes"] = spec.min_nodes_required
    return record
