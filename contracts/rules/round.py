"""Round lifecycle rules: open_round and close_round."""
from __future__ import annotations

import dataclasses

from trustmesh.contracts.addresses import round_address, schedule_address, secagg_address, workflow_address
from trustmesh.contracts.errors import RuleViolation
from trustmesh.contracts.records import (
    SCHEMA_VERSION,
    CloseRound,
    OpenRound,
    RoundRecord,
    ScheduleRecord,
)
from trustmesh.contracts.rules.common import (
    TERMINAL,
    Outcome,
    advance,
    complete_if_last,
    encode_record,
    load_index,
    load_round,
    load_workflow,
    require_status,
    round_event,
)
from trustmesh.contracts.rules.secagg import close_secagg, load_secagg, opening_record, secagg_of
from trustmesh.contracts.view import StateView, block_time


def open_round(view: StateView, signer: str, payload: OpenRound) -> Outcome:
    """The coordinator opens the next round with a fresh schedule_id; deadline = now + round_timeout."""
    workflow = load_workflow(view, payload.workflow_id, active=False)
    if signer != workflow.coordinator:
        raise RuleViolation("only the workflow's coordinator may open a round")
    expected = workflow.last_round + 1
    if payload.round != expected:
        raise RuleViolation(f"the next round is {expected}, not {payload.round}")
    if payload.round > workflow.spec.rounds:
        raise RuleViolation(f"workflow {workflow.workflow_id!r} has only {workflow.spec.rounds} rounds")
    if payload.round > workflow.privacy_cap:
        raise RuleViolation(
            f"privacy budget exhausted: the workflow's privacy cap allows {workflow.privacy_cap} round(s), "
            f"round {payload.round} refused"
        )
    if workflow.status != "active":
        raise RuleViolation(f"workflow {workflow.workflow_id!r} is {workflow.status}")
    if workflow.last_round > 0:
        previous = load_round(view, workflow.workflow_id, workflow.last_round)
        if previous.status not in TERMINAL:
            raise RuleViolation(f"round {previous.round} is still {previous.status}")
    sched_address = schedule_address(workflow.workflow_id, payload.schedule_id)
    if view.get(sched_address):
        raise RuleViolation(f"schedule_id {payload.schedule_id!r} is already used in this workflow")
    now = block_time(view)
    record = RoundRecord(
        schema_version=SCHEMA_VERSION,
        workflow_id=workflow.workflow_id,
        round=payload.round,
        schedule_id=payload.schedule_id,
        base_model_hash=workflow.model_hash,
        opened_at=now,
        deadline=now + workflow.spec.round_timeout,
        status="open",
        epsilon_spent=payload.epsilon_spent,
    )
    schedule = ScheduleRecord(
        schema_version=SCHEMA_VERSION,
        workflow_id=workflow.workflow_id,
        schedule_id=payload.schedule_id,
        round=payload.round,
    )
    workflow = dataclasses.replace(workflow, last_round=payload.round)
    changes = {
        workflow_address(workflow.workflow_id): encode_record(workflow),
        round_address(workflow.workflow_id, record.round): encode_record(record),
        sched_address: encode_record(schedule),
    }
    secagg = opening_record(workflow, record.round, now)
    if secagg is not None:
        changes[secagg_address(workflow.workflow_id, record.round)] = encode_record(secagg)
    event = round_event(
        "round-opened", record, ("deadline", str(record.deadline)), ("base_model_hash", record.base_model_hash)
    )
    return Outcome(changes=changes, events=[event])


def close_round(view: StateView, signer: str, payload: CloseRound) -> Outcome:
    """Anyone closes an open round once all expected nodes submitted or the deadline passed.

    In a secure-aggregation round it fixes the survivors and starts the reveal phase instead.
    """
    workflow = load_workflow(view, payload.workflow_id)
    record = load_round(view, workflow.workflow_id, payload.round)
    require_status(record, "open")
    index = load_index(view, workflow.workflow_id, payload.round)
    submitted = 0 if index is None else len(index.entries)
    now = block_time(view)
    if secagg_of(workflow) is not None:
        return close_secagg(workflow, record, load_secagg(view, workflow.workflow_id, record.round), index, now)
    if submitted < workflow.spec.expected_nodes and now <= record.deadline:
        raise RuleViolation(
            f"round {record.round} has {submitted} of {workflow.spec.expected_nodes} submissions and is open "
            f"until {record.deadline} (now {now})"
        )
    status = "ready" if submitted >= workflow.spec.min_nodes_required else "failed"
    record = advance(record, status, submitted=submitted, closed_at=now)
    changes = {round_address(workflow.workflow_id, record.round): encode_record(record)}
    finished = complete_if_last(workflow, record)
    if finished is not workflow:
        changes[workflow_address(workflow.workflow_id)] = encode_record(finished)
    name = "round-ready" if status == "ready" else "round-failed"
    event = round_event(
        name, record, ("submitted", str(submitted)), ("min_nodes_required", str(workflow.spec.min_nodes_required))
    )
    return Outcome(changes=changes, events=[event])
