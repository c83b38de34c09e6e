"""Every on-chain rule as a pure function: decode the payload, check, return state changes and events.

A transaction processor calls ``apply_federation`` or ``apply_submission`` with a read-only view of
state, writes ``Outcome.changes`` and emits ``Outcome.events``. ``RuleViolation`` (``SchemaError`` is
one) means the transaction is invalid; ``StateCorrupt`` means retry.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trustmesh.contracts import cbor
from trustmesh.contracts.errors import RuleViolation, SchemaError, StateCorrupt
from trustmesh.contracts.records import FEDERATION_ACTIONS, FederationPayload, Steps, SubmitUpdate
from trustmesh.contracts.rules.common import TERMINAL, TRANSITIONS, Event, Outcome, check_signer
from trustmesh.contracts.rules.declare import declared_addresses
from trustmesh.contracts.rules.round import close_round, open_round
from trustmesh.contracts.rules.secagg import secagg_advance, secagg_advertise, secagg_reveal, secagg_shares
from trustmesh.contracts.rules.submission import Submission, SubmissionOutcome, submit
from trustmesh.contracts.rules.tasks import attest_result, claim_task, post_result, record_evaluation
from trustmesh.contracts.rules.workflow import approve, enroll, heartbeat, register_workflow
from trustmesh.contracts.schema import Record
from trustmesh.contracts.view import OverlayView, StateView

__all__ = [
    "MAX_FEDERATION_PAYLOAD",
    "MAX_SUBMISSION_PAYLOAD",
    "TERMINAL",
    "TRANSITIONS",
    "Event",
    "Outcome",
    "RuleViolation",
    "SchemaError",
    "StateCorrupt",
    "Submission",
    "SubmissionOutcome",
    "apply_federation",
    "apply_submission",
    "declared_addresses",
    "parse_federation",
    "parse_steps",
    "parse_submission",
]

MAX_FEDERATION_PAYLOAD = 512 * 1024
MAX_SUBMISSION_PAYLOAD = 80 * 1024

_HANDLERS: dict[str, Callable[[StateView, str, Any], Outcome]] = {
    "register_workflow": register_workflow,
    "enroll": enroll,
    "approve": approve,
    "open_round": open_round,
    "heartbeat": heartbeat,
    "close_round": close_round,
    "claim_task": claim_task,
    "post_result": post_result,
    "attest_result": attest_result,
    "record_evaluation": record_evaluation,
    "secagg_advertise": secagg_advertise,
    "secagg_shares": secagg_shares,
    "secagg_reveal": secagg_reveal,
    "secagg_advance": secagg_advance,
}


def parse_federation(payload: bytes | dict[str, Any] | Record) -> FederationPayload:
    """A federation payload (CBOR bytes or plain map) validated into its action's record."""
    if isinstance(payload, Record):
        payload = payload.to_obj()
    obj = cbor.decode(payload, max_bytes=MAX_FEDERATION_PAYLOAD) if not isinstance(payload, dict) else payload
    if type(obj) is not dict:
        raise SchemaError("payload: expected map")
    action = obj.get("action")
    if type(action) is not str or action not in FEDERATION_ACTIONS:
        raise SchemaError(f"action: {str(action)[:40]!r} is not one of {sorted(FEDERATION_ACTIONS)}")
    return FEDERATION_ACTIONS[action].from_obj(obj)  # type: ignore[return-value]


def parse_submission(payload: bytes | dict[str, Any] | Record) -> SubmitUpdate:
    """An iot-data submission payload (CBOR bytes or plain map) validated."""
    if isinstance(payload, Record):
        payload = payload.to_obj()
    obj = cbor.decode(payload, max_bytes=MAX_SUBMISSION_PAYLOAD) if not isinstance(payload, dict) else payload
    return SubmitUpdate.from_obj(obj)


def apply_federation(view: StateView, *, signer: str, payload: bytes) -> Outcome:
    """Apply one federation transaction signed by ``signer`` (its public key)."""
    check_signer(signer)
    parsed = parse_federation(payload)
    if isinstance(parsed, Steps):
        return _apply_steps(view, signer, parsed)
    return _HANDLERS[parsed.action](view, signer, parsed)


def parse_steps(parsed: Steps) -> list[FederationPayload]:
    """The actions a ``steps`` payload holds, each validated; none may be ``steps`` itself, and all
    concern the payload's workflow."""
    actions = []
    for number, raw in enumerate(parsed.steps, start=1):
        step = parse_federation(raw)
        if isinstance(step, Steps):
            raise RuleViolation(f"step {number}: a step may not hold steps itself")
        if step.workflow_id != parsed.workflow_id:
            raise RuleViolation(f"step {number}: workflow {step.workflow_id!r} is not the payload's "
                                f"{parsed.workflow_id!r}")
        actions.append(step)
    return actions


def _apply_steps(view: StateView, signer: str, parsed: Steps) -> Outcome:
    """Each step's rule in order over the state the earlier steps left; a refused step refuses all."""
    overlay = OverlayView(view)
    combined = Outcome()
    for number, step in enumerate(parse_steps(parsed), start=1):
        try:
            outcome = _HANDLERS[step.action](overlay, signer, step)
        except RuleViolation as exc:
            raise RuleViolation(f"step {number} ({step.action}): {exc}") from exc
        overlay.write(outcome.changes)
        combined.changes.update(outcome.changes)
        combined.events.extend(outcome.events)
    return combined


def apply_submission(view: StateView, *, signer: str, payload: bytes, txn_id: str) -> SubmissionOutcome:
    """Apply one iot-data submission signed by ``signer``; ``txn_id`` is the transaction's signature."""
    check_signer(signer)
    return submit(view, signer, parse_submission(payload), txn_id)
