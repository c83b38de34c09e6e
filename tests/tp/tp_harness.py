"""Shared pieces of the TP tests: node identities, workflows registered on a running stack, and
signed submissions and transactions built the way clients build them."""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sawtooth_sdk.protobuf.batch_pb2 import Batch
from sawtooth_sdk.protobuf.transaction_pb2 import Transaction
from sawtooth_signing import Signer

from trustmesh.chain import Chain
from trustmesh.contracts import cbor
from trustmesh.contracts.addresses import BLOCKINFO_NAMESPACE
from trustmesh.contracts.families import FEDERATION, IOT_DATA, Family
from trustmesh.contracts.records import SCHEMA_VERSION, RoundRecord, WorkflowRecord
from trustmesh.contracts.rules import declared_addresses
from trustmesh.contracts.workflow import load_workflow, register_payload
from trustmesh.dataplane.records import SubmissionRecord
from trustmesh.dataplane.store import RedisDataPlane
from trustmesh.ledger.batch import make_batch, make_transaction
from trustmesh.ledger.client import LedgerClient
from trustmesh.ledger.keys import new_signer, public_key_hex
from trustmesh.runner.stack import LocalStack

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "mnist-federated.json"
APP_ID = "local-train"
INITIAL_MODEL_HASH = hashlib.sha512(b"initial model of the TP tests").hexdigest()
EVERY_NAMESPACE = sorted({FEDERATION.namespace, IOT_DATA.namespace, BLOCKINFO_NAMESPACE})


def digest(text: str) -> str:
    return hashlib.sha512(text.encode()).hexdigest()


def fake_update(label: str) -> bytes:
    """A tiny stand-in for an update envelope: the TP never decodes updates, it checks their sha512."""
    return f"update of {label}".encode()


@dataclass
class Round:
    workflow_id: str
    round: int
    schedule_id: str


class Federation:
    """A ledger client, an admin view of Redis and helpers to set up workflows on one stack."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.client = LedgerClient(urls=[stack.ledger_url])
        assert stack.redis is not None
        self.redis = RedisDataPlane(stack.redis.url)  # admin: the tests read every key

    def close(self) -> None:
        self.client.close()
        self.redis.close()

    def node(self, signer: Signer | None = None) -> Chain:
        """A node with a fresh key (or ``signer``), sharing this client."""
        return Chain(client=self.client, signer=signer or new_signer())

    def register(
        self,
        workflow_id: str,
        *,
        coordinator: Chain,
        participants: Sequence[Chain],
        compute: Sequence[Chain],
        expected: int | None = None,
        min_nodes: int = 1,
        round_timeout: int = 3600,
    ) -> WorkflowRecord:
        """Register a workflow (the W1 example with these members) signed by ``coordinator``."""
        doc: dict[str, Any] = load_workflow(EXAMPLE)
        doc["workflow_id"] = workflow_id
        doc["expected_nodes"] = expected if expected is not None else len(participants)
        doc["data"]["num_partitions"] = len(participants)
        doc["federation_config"].update(
            coordinator_node=coordinator.public_key,
            participant_nodes=[p.public_key for p in participants],
            compute_nodes=[c.public_key for c in compute],
            min_nodes_required=min_nodes,
            round_timeout=round_timeout,
            attestations_required=min(1, len(compute) - 1),
        )
        payload = register_payload(doc, initial_model_hash=INITIAL_MODEL_HASH)
        fields = {k: v for k, v in payload.items() if k not in ("schema_version", "action")}
        coordinator.act("register_workflow", **fields)
        record = coordinator.workflow(workflow_id)
        assert record is not None and record.status == "active"
        return record

    def open_round(self, coordinator: Chain, workflow_id: str, round_no: int = 1) -> Round:
        schedule_id = f"{workflow_id}-r{round_no}"
        coordinator.act("open_round", workflow_id=workflow_id, round=round_no, schedule_id=schedule_id)
        return Round(workflow_id, round_no, schedule_id)

    def round_record(self, rnd: Round) -> RoundRecord:
        record = self.node().round(rnd.workflow_id, rnd.round)
        assert record is not None
        return record

    def records(self, rnd: Round) -> list[SubmissionRecord]:
        """The round's Redis list, decoded."""
        return self.redis.read_submissions(rnd.workflow_id, rnd.schedule_id, APP_ID)

    def list_length(self, rnd: Round) -> int:
        from trustmesh.dataplane.keys import federated_list_key

        return int(self.redis.client.llen(federated_list_key(rnd.workflow_id, rnd.schedule_id, APP_ID)))


def submission_fields(rnd: Round, label: str, **overrides: Any) -> dict[str, Any]:
    """The fields of an inline submission of ``fake_update(label)`` to ``rnd``."""
    update = fake_update(label)
    fields: dict[str, Any] = {
        "workflow_id": rnd.workflow_id,
        "round": rnd.round,
        "schedule_id": rnd.schedule_id,
        "update_hash": hashlib.sha512(update).hexdigest(),
        "inline": update,
        "num_samples": 10,
        "metrics": {"loss": 0.5},
    }
    fields.update(overrides)
    return fields


def signed_transaction(signer: Signer, family: Family, payload: dict[str, Any] | bytes) -> Transaction:
    """A signed transaction; a map payload declares exactly its addresses, raw bytes every namespace."""
    if isinstance(payload, dict):
        body = cbor.encode({"schema_version": SCHEMA_VERSION, **payload})
        inputs, outputs = declared_addresses(family, body, public_key_hex(signer))
    else:
        body, inputs, outputs = payload, EVERY_NAMESPACE, [family.namespace]
    return make_transaction(signer, family_name=family.name, family_version=family.version, payload=body,
                            inputs=inputs, outputs=outputs)


def batch_of(signer: Signer, *transactions: Transaction) -> Batch:
    return make_batch(signer, transactions)
