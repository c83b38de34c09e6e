"""Cross-field checks of a workflow that a per-field schema cannot express.

Used by the JSON workflow validator and by ``register_workflow``, so both refuse the same things.
Messages name the workflow file's JSON path of the offending field.
"""
from __future__ import annotations

from trustmesh.contracts.records import ROBUST_AGGREGATORS, WorkflowSpec

__all__ = ["SECAGG_AGGREGATORS", "spec_problems"]

SECAGG_AGGREGATORS = frozenset({"fedavg", "fedadam", "fedyogi"})
"""Aggregators that need only the weighted sum of the updates, which is all secure aggregation reveals."""


def spec_problems(spec: WorkflowSpec, *, participants: int, compute_nodes: int) -> list[str]:
    """Every cross-field problem of ``spec`` given the member counts (empty list = consistent)."""
    problems: list[str] = []
    if spec.min_nodes_required > spec.expected_nodes:
        problems.append(
            f"federation_config.min_nodes_required: {spec.min_nodes_required} exceeds expected_nodes "
            f"{spec.expected_nodes}"
        )
    if spec.expected_nodes > participants:
        problems.append(
            f"expected_nodes: {spec.expected_nodes} exceeds the {participants} participant(s) listed in "
            "federation_config.participant_nodes"
        )
    k = spec.attestations_required
    if k == 0 and compute_nodes != 1:
        problems.append(
            f"federation_config.attestations_required: 0 is allowed only with exactly one compute node, not {compute_nodes}"
        )
    if k > 0 and compute_nodes < k + 1:
        problems.append(
            f"federation_config.attestations_required: {k} needs at least {k + 1} compute nodes (the aggregator cannot "
            f"attest itself), not {compute_nodes}"
        )
    secagg = spec.privacy.secure_aggregation
    if secagg.enabled:
        if spec.aggregation.name in ROBUST_AGGREGATORS:
            problems.append(
                f"aggregation.name: {spec.aggregation.name!r} is a robust aggregator and cannot be combined "
                "with privacy.secure_aggregation (no single update is visible)"
            )
        elif spec.aggregation.name not in SECAGG_AGGREGATORS:
            problems.append(
                f"aggregation.name: {spec.aggregation.name!r} needs each update's own metrics; secure aggregation "
                f"supports {', '.join(sorted(SECAGG_AGGREGATORS))}"
            )
        if secagg.threshold is None:
            problems.append("privacy.secure_aggregation.threshold: required when secure aggregation is enabled")
        elif secagg.threshold > spec.expected_nodes:
            problems.append(
                f"privacy.secure_aggregation.threshold: {secagg.threshold} exceeds expected_nodes "
                f"{spec.expected_nodes}"
            )
        k = secagg.neighbours
        if k is not None:
            if k >= spec.expected_nodes:
                problems.append(
                    f"privacy.secure_aggregation.neighbours: {k} must be below expected_nodes "
                    f"{spec.expected_nodes} (use null for the complete graph)"
                )
            elif secagg.threshold is not None and secagg.threshold > k + 1:
                problems.append(
                    f"privacy.secure_aggregation.threshold: {secagg.threshold} exceeds a neighbourhood of "
                    f"{k + 1} (neighbours {k} plus the owner)"
                )
    dp = spec.privacy.dp
    if dp.mode != "none":
        for name in ("clip", "noise_multiplier", "epsilon", "delta"):
            if getattr(dp, name) is None:
                problems.append(f"privacy.dp.{name}: required when privacy.dp.mode is {dp.mode!r}")
    data = spec.data
    if data.partition == "dirichlet" and data.alpha is None:
        problems.append("data.alpha: required for a dirichlet partition")
    if data.partition == "shards" and data.shards_per_node is None:
        problems.append("data.shards_per_node: required for a shards partition")
    return problems
