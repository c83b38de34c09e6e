"""A settled round's history document, derived from the chain's records (pure, no I/O).

Participants are the nodes the on-chain index names; missing nodes are the workflow's participants
it does not name, with the reason: no heartbeat (no liveness key in Redis when the round settled)
or late (alive, but no submission before the deadline).
"""
from __future__ import annotations

from trustmesh.contracts.records import RoundRecord, SecAggRecord, SubmissionIndex, WorkflowRecord
from trustmesh.history.documents import ExcludedSubmission, MissingNode, ParticipantEntry, RoundHistory
from trustmesh.privacy.audit import round_audit


def round_history(
    *,
    workflow: WorkflowRecord,
    record: RoundRecord,
    index: SubmissionIndex | None,
    alive: set[str],
    timings: dict[str, float],
    secagg: SecAggRecord | None = None,
) -> RoundHistory:
    entries = dict(sorted((index.entries if index else {}).items()))
    participants = tuple(
        ParticipantEntry(public_key=key, num_samples=e.num_samples, update_hash=e.update_hash,
                         metrics=dict(e.metrics))
        for key, e in entries.items()
    )
    dropped = set(secagg.dropped) if secagg is not None else set()
    missing = tuple(
        MissingNode(public_key=key, reason="late" if key in alive else "no_heartbeat",
                    detail=f"handed out its secure-aggregation shares but submitted no masked input in round "
                           f"{record.round}; the survivors recovered its masks" if key in dropped else
                           f"no submission indexed for round {record.round}")
        for key in sorted(workflow.participants) if key not in entries
    )
    result, evaluation = record.result, record.evaluation
    included: tuple[str, ...] = ()
    excluded: tuple[ExcludedSubmission, ...] = ()
    if result is not None:
        included = tuple(entries[k].update_hash for k in result.included if k in entries)
        excluded = tuple(
            ExcludedSubmission(update_hash=entries[k].update_hash, reason=reason, public_key=k)
            for k, reason in sorted(result.excluded.items()) if k in entries
        )
    accepted = record.status == "accepted"
    return RoundHistory(
        workflow_id=workflow.workflow_id,
        round=record.round,
        schedule_id=record.schedule_id,
        status=record.status,
        participants=participants,
        missing=missing,
        included=included,
        excluded=excluded,
        base_model_hash=record.base_model_hash,
        model_version=workflow.model_version if accepted else None,
        model_hash=result.model_hash if result is not None else None,
        accuracy=evaluation.accuracy if evaluation is not None else None,
        loss=evaluation.loss if evaluation is not None else None,
        timings={k: float(v) for k, v in timings.items()},
        epsilon_spent=record.epsilon_spent,
        aggregator=result.aggregator if result is not None else None,
        extra={
            "opened_at": record.opened_at, "deadline": record.deadline, "closed_at": record.closed_at,
            "attestations": list(record.attestations),
            "verdict": evaluation.verdict if evaluation is not None else None,
            "privacy": round_audit(workflow.spec, record.round, record.epsilon_spent),  # the DP audit trail
            "secure_aggregation": _secagg_summary(secagg),
        },
    )


def _secagg_summary(secagg: SecAggRecord | None) -> dict[str, object] | None:
    """Who took part in which secure-aggregation phase (None for a round without it)."""
    if secagg is None:
        return None
    return {"threshold": secagg.threshold, "phase": secagg.phase, "roster": sorted(secagg.keys),
            "members": list(secagg.members), "survivors": list(secagg.survivors), "dropped": list(secagg.dropped),
            "revealed": sorted(secagg.reveals), "failure": secagg.failure}
