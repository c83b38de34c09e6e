"""Compute-node rules: claim_task, post_result, attest_result, record_evaluation."""
from __future__ import annotations

import dataclasses

from trustmesh.contracts.addresses import round_address, workflow_address
from trustmesh.contracts.errors import RuleViolation
from trustmesh.contracts.records import (
    AttestResult,
    ClaimTask,
    Dispute,
    Evaluation,
    Lease,
    PostResult,
    RecordEvaluation,
    Result,
    RoundRecord,
    WorkflowRecord,
)
from trustmesh.contracts.rules.common import (
    Outcome,
    advance,
    complete_if_last,
    encode_record,
    load_index,
    load_round,
    load_workflow,
    require_status,
    round_event,
    short,
)
from trustmesh.contracts.view import StateView, block_time

TASK_STATUS = {"aggregate": "ready", "evaluate": "verified"}


def _require_compute_node(workflow: WorkflowRecord, signer: str) -> None:
    if signer not in workflow.compute_nodes:
        raise RuleViolation(f"{short(signer)} is not a compute node of workflow {workflow.workflow_id!r}")


def _require_lease(record: RoundRecord, signer: str, task: str, now: int) -> None:
    """The signer must hold the round's unexpired ``task`` lease."""
    lease = record.lease
    if lease is None or lease.task != task:
        raise RuleViolation(f"round {record.round} has no {task} lease")
    if lease.holder != signer:
        raise RuleViolation(f"the {task} lease of round {record.round} is held by {short(lease.holder)}")
    if now > lease.until:
        raise RuleViolation(f"the {task} lease of round {record.round} expired at {lease.until} (now {now})")


def _put_round(changes: dict[str, bytes | None], record: RoundRecord) -> None:
    changes[round_address(record.workflow_id, record.round)] = encode_record(record)


def claim_task(view: StateView, signer: str, payload: ClaimTask) -> Outcome:
    """A compute node takes the aggregate (round ready) or evaluate (round verified) lease."""
    workflow = load_workflow(view, payload.workflow_id)
    _require_compute_node(workflow, signer)
    record = load_round(view, workflow.workflow_id, payload.round)
    require_status(record, TASK_STATUS[payload.task])
    if signer in record.barred:
        raise RuleViolation(f"{short(signer)} is barred from round {record.round} after a disputed result")
    now = block_time(view)
    lease = record.lease
    if lease is not None and lease.task == payload.task and now <= lease.until:
        raise RuleViolation(
            f"the {payload.task} lease of round {record.round} is held by {short(lease.holder)} until {lease.until}"
        )
    new_lease = Lease(task=payload.task, holder=signer, until=now + workflow.spec.lease_seconds)
    record = dataclasses.replace(record, lease=new_lease)
    changes: dict[str, bytes | None] = {}
    _put_round(changes, record)
    event = round_event(
        "task-claimed", record, ("task", payload.task), ("holder", signer), ("until", str(new_lease.until))
    )
    return Outcome(changes=changes, events=[event])


def post_result(view: StateView, signer: str, payload: PostResult) -> Outcome:
    """The aggregate lease holder posts the new model hash, naming every indexed submission."""
    workflow = load_workflow(view, payload.workflow_id)
    record = load_round(view, workflow.workflow_id, payload.round)
    require_status(record, "ready")
    now = block_time(view)
    _require_lease(record, signer, "aggregate", now)
    index = load_index(view, workflow.workflow_id, payload.round)
    indexed = set() if index is None else set(index.entries)
    included = set(payload.included)
    if len(included) != len(payload.included):
        raise RuleViolation("included: a submission is listed twice")
    both = included & set(payload.excluded)
    if both:
        raise RuleViolation(f"{short(min(both))} is both included and excluded")
    named = included | set(payload.excluded)
    missing = indexed - named
    if missing:
        raise RuleViolation(f"the result omits {len(missing)} indexed submission(s), e.g. {short(min(missing))}")
    unknown = named - indexed
    if unknown:
        raise RuleViolation(f"the result names {short(min(unknown))}, which has no indexed submission")
    if not included and payload.model_hash != record.base_model_hash:
        raise RuleViolation("a result that includes no submission must keep the base model")
    result = Result(
        aggregator=signer,
        model_hash=payload.model_hash,
        aggregator_state_hash=payload.aggregator_state_hash,
        included=tuple(sorted(included)),
        excluded=dict(payload.excluded),
        posted_at=now,
    )
    attested = workflow.spec.attestations_required == 0
    status = "verified" if attested else "aggregated"
    record = advance(record, status, result=result, lease=None, attestations=())
    changes: dict[str, bytes | None] = {}
    _put_round(changes, record)
    extra = (("model_hash", payload.model_hash), ("aggregator", signer))
    events = [round_event("result-posted", record, *extra)]
    if attested:
        events.append(round_event("result-verified", record, *extra))
    return Outcome(changes=changes, events=events)


def attest_result(view: StateView, signer: str, payload: AttestResult) -> Outcome:
    """Another compute node's recomputation: k matches verify; a mismatch disputes and bars the aggregator."""
    workflow = load_workflow(view, payload.workflow_id)
    _require_compute_node(workflow, signer)
    record = load_round(view, workflow.workflow_id, payload.round)
    require_status(record, "aggregated")
    result = record.result
    if result is None:
        raise RuleViolation(f"round {record.round} has no result to attest")
    if signer == result.aggregator:
        raise RuleViolation("the aggregator cannot attest its own result")
    if signer in record.barred:
        raise RuleViolation(f"{short(signer)} is barred from round {record.round}")
    if signer in record.attestations:
        raise RuleViolation(f"{short(signer)} has already attested this result")
    changes: dict[str, bytes | None] = {}
    matches = (payload.model_hash, payload.aggregator_state_hash) == (result.model_hash, result.aggregator_state_hash)
    if matches:
        attestations = tuple(sorted((*record.attestations, signer)))
        if len(attestations) >= workflow.spec.attestations_required:
            record = advance(record, "verified", attestations=attestations)
            events = [round_event("result-verified", record, ("model_hash", result.model_hash), ("attester", signer))]
        else:
            record = dataclasses.replace(record, attestations=attestations)
            events = []
        _put_round(changes, record)
        return Outcome(changes=changes, events=events)
    dispute = Dispute(
        aggregator=result.aggregator, attester=signer, posted_hash=result.model_hash, attested_hash=payload.model_hash
    )
    record = advance(
        record,
        "ready",
        result=None,
        attestations=(),
        lease=None,
        barred=tuple(sorted({*record.barred, result.aggregator})),
        disputes=(*record.disputes, dispute),
    )
    _put_round(changes, record)
    event = round_event("result-disputed", record, ("aggregator", result.aggregator), ("attester", signer))
    return Outcome(changes=changes, events=[event])


def record_evaluation(view: StateView, signer: str, payload: RecordEvaluation) -> Outcome:
    """The evaluate lease holder records accuracy; the gate accepts the new model or keeps the previous one."""
    workflow = load_workflow(view, payload.workflow_id)
    record = load_round(view, workflow.workflow_id, payload.round)
    require_status(record, "verified")
    now = block_time(view)
    _require_lease(record, signer, "evaluate", now)
    result = record.result
    if result is None:
        raise RuleViolation(f"round {record.round} has no result to evaluate")
    gate = workflow.spec.gate
    previous = workflow.model_accuracy
    passes = gate_passes(payload.accuracy, previous, min_accuracy=gate.min_accuracy, max_drop=gate.max_drop)
    verdict = "accepted" if passes else "rejected"
    evaluation = Evaluation(
        evaluator=signer,
        accuracy=payload.accuracy,
        loss=payload.loss,
        metrics=dict(payload.metrics),
        verdict=verdict,
        previous_model_hash=workflow.model_hash,
        previous_accuracy=previous,
        at=now,
    )
    record = advance(record, verdict, evaluation=evaluation, lease=None)
    if passes:
        workflow = dataclasses.replace(
            workflow,
            model_hash=result.model_hash,
            model_version=workflow.model_version + 1,
            model_accuracy=payload.accuracy,
            aggregator_state_hash=result.aggregator_state_hash,
        )
    workflow = complete_if_last(workflow, record)
    changes: dict[str, bytes | None] = {workflow_address(workflow.workflow_id): encode_record(workflow)}
    _put_round(changes, record)
    name = "model-accepted" if passes else "model-rejected"
    event = round_event(
        name,
        record,
        ("model_hash", workflow.model_hash),
        ("candidate_hash", result.model_hash),
        ("accuracy", repr(payload.accuracy)),
        ("model_version", str(workflow.model_version)),
    )
    return Outcome(changes=changes, events=[event])


_GATE_UNITS = 1_000_000  # accuracies compared in millionths: 0.90 - 0.85 must not exceed a 0.05 drop


def gate_passes(accuracy: float, previous: float | None, *, min_accuracy: float, max_drop: float) -> bool:
    """The validation gate: accuracy >= the minimum and no more than ``max_drop`` below the current model.

    Compared in integer millionths, so a drop of exactly ``max_drop`` passes despite binary floats.
    """
    def units(x: float) -> int:
        return round(x * _GATE_UNITS)

    if units(accuracy) < units(min_accuracy):
        return False
    return previous is None or units(previous) - units(accuracy) <= units(max_drop)
