"""iot-data handler: rule check first, then the on-chain index and the idempotent Redis append.

``apply()`` may run several times for one transaction, and for transactions that never commit:
the Lua append keeps at most one list entry per transaction id, and a Redis record only counts
once the chain's index names its hash. If Redis is down the transaction fails with an internal
error, so the validator retries it: it is never committed without its record.
"""
from __future__ import annotations

from typing import Any

from sawtooth_sdk.processor.exceptions import InternalError, InvalidTransaction
from sawtooth_sdk.processor.handler import TransactionHandler

from trustmesh.contracts.errors import StateCorrupt
from trustmesh.contracts.families import IOT_DATA
from trustmesh.contracts.rules import RuleViolation, Submission, apply_submission
from trustmesh.contracts.view import block_time
from trustmesh.dataplane.records import SubmissionRecord
from trustmesh.dataplane.store import DataPlane
from trustmesh.errors import DataPlaneError
from trustmesh.tp.common import ContextStateView, send_outcome


def record_of(submission: Submission) -> bytes:
    """The Redis list entry for a checked submission (canonical CBOR)."""
    return SubmissionRecord(
        signer=submission.signer,
        update_hash=submission.update_hash,
        num_samples=submission.num_samples,
        txn_id=submission.txn_id,
        inline=submission.inline,
        metrics=dict(submission.metrics),
    ).encode()


class IotDataHandler(TransactionHandler):  # type: ignore[misc]
    """Submissions of model updates to a round (`schedule_id`)."""

    def __init__(self, *, dataplane: DataPlane) -> None:
        self._dataplane = dataplane

    @property
    def family_name(self) -> str:
        return IOT_DATA.name

    @property
    def family_versions(self) -> list[str]:
        return [IOT_DATA.version]

    @property
    def namespaces(self) -> list[str]:
        return [IOT_DATA.namespace]

    def apply(self, transaction: Any, context: Any) -> None:
        view = ContextStateView.for_transaction(transaction, context)
        try:
            outcome = apply_submission(
                view,
                signer=transaction.header.signer_public_key,
                payload=transaction.payload,
                txn_id=transaction.signature,
            )
            now = block_time(view)
        except RuleViolation as exc:
            raise InvalidTransaction(str(exc)) from exc
        except StateCorrupt as exc:
            raise InternalError(f"undecodable state: {exc}") from exc
        sub = outcome.submission
        # The index write and the event travel while Redis appends; the transaction is answered only
        # after both, so it never commits without its record (a failed append is an internal error,
        # and the validator drops this execution's writes).
        confirm = send_outcome(context, outcome.changes, outcome.events)
        try:
            self._dataplane.append_submission(
                sub.workflow_id, sub.schedule_id, sub.app_id, sub.txn_id,
                record_of(sub), sub.expected_nodes, now,
            )
        except DataPlaneError as exc:
            raise InternalError(f"redis append failed, the ledger will retry: {exc}") from exc
        confirm()
