"""What every rule shares: the Outcome and Event types, typed state reads, and the round state machine."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

from trustmesh.contracts import cbor
from trustmesh.contracts.addresses import round_address, submission_index_address, workflow_address
from trustmesh.contracts.errors import RuleViolation, SchemaError, StateCorrupt
from trustmesh.contracts.records import RoundRecord, SubmissionIndex, WorkflowRecord
from trustmesh.contracts.schema import Match, Record
from trustmesh.contracts.view import StateView

MAX_STATE_BYTES = 4 * 1024 * 1024
R = TypeVar("R", bound=Record)

# Legal round status changes. ready -> verified only when a workflow needs no attestation;
# open -> unmasking -> ready only in secure-aggregation rounds (survivors reveal their shares).
TRANSITIONS: dict[str, frozenset[str]] = {
    "open": frozenset({"ready", "failed", "unmasking"}),
    "unmasking": frozenset({"ready", "failed"}),
    "ready": frozenset({"aggregated", "verified"}),
    "aggregated": frozenset({"verified", "ready"}),
    "verified": frozenset({"accepted", "rejected"}),
    "failed": frozenset(),
    "accepted": frozenset(),
    "rejected": frozenset(),
}
TERMINAL = frozenset(status for status, nexts in TRANSITIONS.items() if not nexts)

_KEY = Match(r"0[23][0-9a-f]{64}")


@dataclass(frozen=True, kw_only=True)
class Event:
    """A Sawtooth event: type (``family/name``), filterable string attributes and opaque data."""

    event_type: str
    attributes: tuple[tuple[str, str], ...]
    data: bytes = b""

    def attribute(self, key: str) -> str | None:
        """The first value of attribute ``key`` (None if absent)."""
        return next((v for k, v in self.attributes if k == key), None)


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """State changes (address -> new bytes, or None to delete) and events of one transaction."""

    changes: dict[str, bytes | None] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)


def check_signer(signer: str) -> str:
    """The signer's key must be a compressed secp256k1 public key in lowercase hex."""
    if not isinstance(signer, str) or not _KEY.ok(signer):
        raise RuleViolation("signer is not a compressed secp256k1 public key")
    return signer


def short(key: str) -> str:
    """A key abbreviated for messages."""
    return key[:12] + "…"


def read_record(view: StateView, address: str, cls: type[R]) -> R | None:
    """Decode the record at ``address`` (None if empty); undecodable state is StateCorrupt."""
    raw = view.get(address)
    if raw is None or raw == b"":
        return None
    try:
        return cls.from_obj(cbor.decode(raw, max_bytes=MAX_STATE_BYTES))
    except SchemaError as exc:
        raise StateCorrupt(f"{cls.__name__} at {address}: {exc}") from exc


def encode_record(record: Record) -> bytes:
    return cbor.encode(record.to_obj())


def load_workflow(view: StateView, workflow_id: str, *, active: bool = True) -> WorkflowRecord:
    """The workflow (it must exist and, unless ``active`` is False, still be active)."""
    workflow = read_record(view, workflow_address(workflow_id), WorkflowRecord)
    if workflow is None:
        raise RuleViolation(f"no workflow {workflow_id!r}")
    if active and workflow.status != "active":
        raise RuleViolation(f"workflow {workflow_id!r} is {workflow.status}")
    return workflow


def load_round(view: StateView, workflow_id: str, round_no: int) -> RoundRecord:
    record = read_record(view, round_address(workflow_id, round_no), RoundRecord)
    if record is None:
        raise RuleViolation(f"workflow {workflow_id!r} has no round {round_no}")
    return record


def load_index(view: StateView, workflow_id: str, round_no: int) -> SubmissionIndex | None:
    return read_record(view, submission_index_address(workflow_id, round_no), SubmissionIndex)


def require_status(record: RoundRecord, *allowed: str) -> None:
    if record.status not in allowed:
        want = " or ".join(allowed)
        raise RuleViolation(f"round {record.round} is {record.status}, not {want}")


def advance(record: RoundRecord, status: str, **changes: Any) -> RoundRecord:
    """The round moved to ``status`` (with other field changes); illegal transitions are rejected."""
    if status not in TRANSITIONS[record.status]:
        raise RuleViolation(f"round {record.round} cannot go from {record.status} to {status}")
    return dataclasses.replace(record, status=status, **changes)


def round_event(name: str, record: RoundRecord, *extra: tuple[str, str], family: str = "federation") -> Event:
    """An event about a round, filterable by workflow_id, schedule_id and round."""
    attributes = (
        ("workflow_id", record.workflow_id),
        ("schedule_id", record.schedule_id),
        ("round", str(record.round)),
        ("status", record.status),
        *extra,
    )
    return Event(event_type=f"{family}/{name}", attributes=attributes, data=encode_record(record))


def complete_if_last(workflow: WorkflowRecord, record: RoundRecord) -> WorkflowRecord:
    """The workflow is completed once its final round (rounds, or the privacy cap) has a verdict."""
    if record.status in TERMINAL and record.round >= workflow.final_round:
        return dataclasses.replace(workflow, status="completed")
    return workflow
