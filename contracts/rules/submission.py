"""The iot-data family's one rule: a participant submits its update to an open round."""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field

from trustmesh.contracts.addresses import submission_index_address
from trustmesh.contracts.errors import RuleViolation
from trustmesh.contracts.records import SCHEMA_VERSION, IndexEntry, SubmissionIndex, SubmitUpdate
from trustmesh.contracts.rules.common import (
    Event,
    Outcome,
    encode_record,
    load_index,
    load_round,
    load_workflow,
    require_status,
    short,
)
from trustmesh.contracts.rules.secagg import require_member
from trustmesh.contracts.view import StateView, block_time


@dataclass(frozen=True, kw_only=True)
class Submission:
    """A checked submission: what the iot-data TP appends to the round's Redis list."""

    signer: str
    txn_id: str
    workflow_id: str
    round: int
    schedule_id: str
    app_id: str
    update_hash: str
    inline: bytes | None
    num_samples: int
    metrics: dict[str, float] = field(default_factory=dict)
    submitted_nodes: tuple[str, ...] = ()
    expected_nodes: int = 0


@dataclass(frozen=True, kw_only=True)
class SubmissionOutcome(Outcome):
    """An Outcome plus the decoded submission the iot-data TP records off-chain."""

    submission: Submission


def submit(view: StateView, signer: str, payload: SubmitUpdate, txn_id: str) -> SubmissionOutcome:
    """Index the signer's first submission to an open round before its deadline (samples capped)."""
    if not isinstance(txn_id, str) or not 1 <= len(txn_id) <= 256:
        raise RuleViolation("transaction id must be a non-empty string of at most 256 characters")
    workflow = load_workflow(view, payload.workflow_id)
    if signer not in workflow.participants:
        raise RuleViolation(f"{short(signer)} is not a participant of workflow {workflow.workflow_id!r}")
    record = load_round(view, workflow.workflow_id, payload.round)
    if record.schedule_id != payload.schedule_id:
        raise RuleViolation(f"round {record.round} has schedule_id {record.schedule_id!r}, not {payload.schedule_id!r}")
    require_status(record, "open")
    require_member(view, workflow, record.round, signer)
    now = block_time(view)
    if now > record.deadline:
        raise RuleViolation(f"round {record.round} closed for submissions at {record.deadline} (now {now})")
    if payload.inline is not None and hashlib.sha512(payload.inline).hexdigest() != payload.update_hash:
        raise RuleViolation("update_hash is not the sha512 of the inline update")
    index = load_index(view, workflow.workflow_id, payload.round)
    if index is None:
        index = SubmissionIndex(
            schema_version=SCHEMA_VERSION,
            workflow_id=workflow.workflow_id,
            round=record.round,
            schedule_id=record.schedule_id,
            entries={},
        )
    if signer in index.entries:
        raise RuleViolation(f"{short(signer)} has already submitted to round {record.round}")
    num_samples = min(payload.num_samples, workflow.spec.max_samples_per_node)
    entry = IndexEntry(
        update_hash=payload.update_hash,
        num_samples=num_samples,
        metrics=dict(payload.metrics),
        txn_id=txn_id,
        inline=payload.inline is not None,
    )
    index = dataclasses.replace(index, entries={**index.entries, signer: entry})
    submission = Submission(
        signer=signer,
        txn_id=txn_id,
        workflow_id=workflow.workflow_id,
        round=record.round,
        schedule_id=record.schedule_id,
        app_id=workflow.spec.app_id,
        update_hash=payload.update_hash,
        inline=payload.inline,
        num_samples=num_samples,
        metrics=dict(payload.metrics),
        submitted_nodes=tuple(sorted(index.entries)),
        expected_nodes=workflow.spec.expected_nodes,
    )
    event = Event(
        event_type="iot-data/submitted",
        attributes=(
            ("workflow_id", workflow.workflow_id),
            ("schedule_id", record.schedule_id),
            ("round", str(record.round)),
            ("signer", signer),
            ("update_hash", payload.update_hash),
            ("submitted", str(len(index.entries))),
            ("expected_nodes", str(workflow.spec.expected_nodes)),
        ),
        data=encode_record(entry),
    )
    changes: dict[str, bytes | None] = {submission_index_address(workflow.workflow_id, record.round): encode_record(index)}
    return SubmissionOutcome(changes=changes, events=[event], submission=submission)
