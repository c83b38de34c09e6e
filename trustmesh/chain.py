"""A node's gateway to the chain: send federation actions and submissions, read typed records.

Coordinators, participants, compute nodes and `verify-round` all go through this one class, so the
payload encoding (canonical CBOR), the declared inputs/outputs and record decoding live in one
place — the rules themselves stay in ``trustmesh.contracts``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sawtooth_sdk.protobuf.transaction_pb2 import Transaction
from sawtooth_signing import Signer

from trustmesh.contracts import cbor
from trustmesh.contracts.addresses import (
    round_address,
    secagg_address,
    submission_index_address,
    workflow_address,
)
from trustmesh.contracts.families import FEDERATION, IOT_DATA, Family
from trustmesh.contracts.payloads import federation_payload
from trustmesh.contracts.records import (
    SCHEMA_VERSION,
    RoundRecord,
    SecAggRecord,
    SubmissionIndex,
    WorkflowRecord,
)
from trustmesh.contracts.rules import declared_addresses
from trustmesh.contracts.rules.common import read_record
from trustmesh.contracts.view import block_time
from trustmesh.ledger.batch import make_batch, make_transaction
from trustmesh.ledger.client import LedgerClient, SubmittedTransaction
from trustmesh.ledger.keys import public_key_hex


class LedgerView:
    """The contracts' ``StateView`` over a ledger client: each read goes to the chain head."""

    def __init__(self, client: LedgerClient) -> None:
        self._client = client

    def get(self, address: str) -> bytes | None:
        return self._client.get_state(address)


class Chain:
    """Signed actions of one node (its key is its identity) and reads of chain state."""

    def __init__(self, *, client: LedgerClient, signer: Signer) -> None:
        self.client = client
        self.signer = signer
        self.public_key = public_key_hex(signer)
        self.view = LedgerView(client)

    # -- writes ---------------------------------------------------------------------------------
    def _send(self, family: Family, payload: dict[str, Any], wait: float | None) -> SubmittedTransaction:
        payload = {"schema_version": SCHEMA_VERSION, **payload}
        inputs, outputs = declared_addresses(family, payload, self.public_key)
        return self.client.submit_transaction(
            self.signer, family.name, family.version, cbor.encode(payload), inputs, outputs, wait=wait
        )

    def act(self, action: str, *, wait: float | None = 30.0, **fields: Any) -> SubmittedTransaction:
        """Send one federation action (``register_workflow``, ``open_round``, ``claim_task`` ...).

        Raises ``TransactionRejected`` with the rule's reason when the chain refuses it.
        """
        return self._send(FEDERATION, {"action": action, **fields}, wait)

    def presign(self, action: str, *, batcher_public_key: str, **fields: Any) -> Transaction:
        """A federation action signed by this node for another node's batch (``batcher_public_key``).

        The coordinator hands its next ``open_round`` to the compute nodes this way, so the round
        opens in the very batch that records the previous round's verdict.
        """
        payload = {"schema_version": SCHEMA_VERSION, "action": action, **fields}
        inputs, outputs = declared_addresses(FEDERATION, payload, self.public_key)
        return make_transaction(self.signer, family_name=FEDERATION.name, family_version=FEDERATION.version,
                                payload=cbor.encode(payload), inputs=inputs, outputs=outputs,
                                batcher_public_key=batcher_public_key)

    def act_many(self, actions: list[tuple[str, dict[str, Any]]], *, wait: float | None = 30.0,
                 then: Sequence[Transaction] = ()) -> None:
        """Send several federation actions as ONE transaction (a ``steps`` payload): they commit
        together, in order, or not at all.

        Later actions see the state the earlier ones wrote, so a compute node can close a round,
        claim its aggregate task and post the result in one block, and in one execution: a
        transaction of its own per action would cost the processor a round of state reads each.
        """
        payloads = [federation_payload(action, **fields) for action, fields in actions]
        if len(payloads) == 1:
            payload = payloads[0]
        else:
            workflow_id = actions[0][1].get("workflow_id")
            payload = federation_payload("steps", workflow_id=workflow_id, steps=payloads)
        inputs, outputs = declared_addresses(FEDERATION, payload, self.public_key)
        transactions = [make_transaction(
            self.signer, family_name=FEDERATION.name, family_version=FEDERATION.version,
            payload=payload, inputs=inputs, outputs=outputs,
        )]
        transactions.extend(then)  # transactions others signed for this node's batch (see presign)
        self.client.submit([make_batch(self.signer, transactions)], wait=wait)

    def submit_update(self, *, wait: float | None = 30.0, **fields: Any) -> SubmittedTransaction:
        """Send an iot-data submission (workflow_id, round, schedule_id, update_hash, ...)."""
        return self._send(IOT_DATA, dict(fields), wait)

    # -- reads ----------------------------------------------------------------------------------
    def workflow(self, workflow_id: str) -> WorkflowRecord | None:
        return read_record(self.view, workflow_address(workflow_id), WorkflowRecord)

    def round(self, workflow_id: str, round_no: int) -> RoundRecord | None:
        return read_record(self.view, round_address(workflow_id, round_no), RoundRecord)

    def index(self, workflow_id: str, round_no: int) -> SubmissionIndex | None:
        return read_record(self.view, submission_index_address(workflow_id, round_no), SubmissionIndex)

    def secagg(self, workflow_id: str, round_no: int) -> SecAggRecord | None:
        """The round's secure-aggregation phases (None for a round without secure aggregation)."""
        return read_record(self.view, secagg_address(workflow_id, round_no), SecAggRecord)

    def now(self) -> int:
        """Block time at the chain head (raises RuleViolation before the first block)."""
        return block_time(self.view)
