"""iot-data TP over devnet and a real Redis: re-executed submissions append once; 50 concurrent
participants give exactly 50 list entries and 50 index entries."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sawtooth_sdk.processor.exceptions import InvalidTransaction
from sawtooth_sdk.protobuf.processor_pb2 import TpProcessRequest
from sawtooth_sdk.protobuf.state_context_pb2 import TpStateEntry
from sawtooth_sdk.protobuf.transaction_pb2 import Transaction, TransactionHeader
from tp_harness import Federation, batch_of, fake_update, signed_transaction, submission_fields

from trustmesh.contracts.families import FEDERATION, IOT_DATA
from trustmesh.dataplane.store import RedisDataPlane
from trustmesh.ledger.client import LedgerClient
from trustmesh.runner.stack import LocalStack
from trustmesh.tp.iot_data.handler import IotDataHandler

CONCURRENT_PARTICIPANTS = 50


class ChainContext:
    """The surface of the SDK's ``Context`` that handlers use: reads from the chain head, writes kept here."""

    def __init__(self, client: LedgerClient) -> None:
        self._client = client
        self.writes: dict[str, bytes] = {}
        self.events: list[tuple[str, tuple[tuple[str, str], ...], bytes]] = []

    def get_state(self, addresses: list[str], timeout: float | None = None) -> list[TpStateEntry]:
        found = ((address, self._client.get_state(address)) for address in addresses)
        return [TpStateEntry(address=address, data=data) for address, data in found if data is not None]

    def set_state(self, entries: dict[str, bytes], timeout: float | None = None) -> list[str]:
        self.writes.update(entries)
        return list(entries)

    def delete_state(self, addresses: list[str], timeout: float | None = None) -> list[str]:
        raise AssertionError("a submission never deletes state")

    def add_event(self, event_type: str, attributes: Any = None, data: bytes = b"", timeout: float | None = None) -> None:
        self.events.append((event_type, tuple(attributes or ()), data))


def as_request(transaction: Transaction) -> TpProcessRequest:
    """What the SDK's processor core hands ``apply()``: the parsed header, payload and signature."""
    return TpProcessRequest(header=TransactionHeader.FromString(transaction.header),
                            payload=transaction.payload, signature=transaction.header_signature)


def test_apply_three_times_appends_one_record(stack: LocalStack, fed: Federation) -> None:
    """The handler's apply(), run three times for one transaction (as validators and retries do)."""
    coordinator, participant = fed.node(), fed.node()
    fed.register("tp-apply-thrice", coordinator=coordinator, participants=[participant], compute=[fed.node()])
    rnd = fed.open_round(coordinator, "tp-apply-thrice")
    txn = signed_transaction(participant.signer, IOT_DATA, submission_fields(rnd, "p"))
    handler = IotDataHandler(dataplane=RedisDataPlane(stack.redis_for("tps")))
    contexts = [ChainContext(fed.client) for _ in range(3)]
    for context in contexts:
        handler.apply(as_request(txn), context)
    records = fed.records(rnd)
    assert [(r.signer, r.txn_id, r.inline) for r in records] == [
        (participant.public_key, txn.header_signature, fake_update("p"))
    ]
    assert contexts[0].writes and all(c.writes == contexts[0].writes for c in contexts)
    assert all([e[0] for e in c.events] == ["iot-data/submitted"] for c in contexts)
    mirror = fed.redis.get_round_mirror(rnd.workflow_id, rnd.schedule_id)
    assert mirror is not None and mirror.submitted_nodes == 1 and mirror.status == "all_submitted"


def test_a_submission_in_failed_batches_then_committed_has_one_record(fed: Federation) -> None:
    """The same signed submission runs in two batches that fail after it, then commits on its own:
    the TP executed it three times, the round's list holds it once and the index names it."""
    coordinator, participant = fed.node(), fed.node()
    fed.register("tp-retried-batches", coordinator=coordinator, participants=[participant], compute=[fed.node()])
    rnd = fed.open_round(coordinator, "tp-retried-batches")
    submission = signed_transaction(participant.signer, IOT_DATA, submission_fields(rnd, "p"))
    for attempt in range(2):
        broken = signed_transaction(participant.signer, FEDERATION, b"\xff not cbor %d" % attempt)
        [status] = fed.client.batch_status(
            [_submit(fed, batch_of(participant.signer, submission, broken))], wait=30)
        assert status.status == "INVALID"
        # apply() ran and appended before the batch failed: the record is in Redis, but the chain's
        # index does not name it, so it does not count (and the node may resubmit).
        assert [r.txn_id for r in fed.records(rnd)] == [submission.header_signature]
        assert participant.index(rnd.workflow_id, rnd.round) is None
    [status] = fed.client.batch_status([_submit(fed, batch_of(participant.signer, submission))], wait=30)
    assert status.status == "COMMITTED"
    records = fed.records(rnd)
    assert [r.txn_id for r in records] == [submission.header_signature]
    index = participant.index(rnd.workflow_id, rnd.round)
    assert index is not None
    assert index.entries[participant.public_key].txn_id == submission.header_signature
    assert index.entries[participant.public_key].update_hash == records[0].update_hash


def _submit(fed: Federation, batch: Any) -> str:
    fed.client.submit([batch], wait=None)
    return str(batch.header_signature)


def test_concurrent_participants_give_one_record_and_one_index_entry_each(fed: Federation) -> None:
    coordinator = fed.node()
    participants = [fed.node() for _ in range(CONCURRENT_PARTICIPANTS)]
    fed.register("tp-concurrent", coordinator=coordinator, participants=participants, compute=[fed.node()])
    rnd = fed.open_round(coordinator, "tp-concurrent")

    def submit(number: int) -> str:
        sent = participants[number].submit_update(**submission_fields(rnd, f"p{number}"), wait=60)
        assert sent.committed
        return sent.transaction_id

    with ThreadPoolExecutor(max_workers=CONCURRENT_PARTICIPANTS) as pool:
        txn_ids = list(pool.map(submit, range(CONCURRENT_PARTICIPANTS)))
    records = fed.records(rnd)
    assert fed.list_length(rnd) == CONCURRENT_PARTICIPANTS
    assert sorted(r.txn_id for r in records) == sorted(txn_ids)
    index = coordinator.index(rnd.workflow_id, rnd.round)
    assert index is not None and len(index.entries) == CONCURRENT_PARTICIPANTS
    assert {r.signer: r.update_hash for r in records} == {k: e.update_hash for k, e in index.entries.items()}
    assert {r.signer: r.txn_id for r in records} == {k: e.txn_id for k, e in index.entries.items()}
    mirror = fed.redis.get_round_mirror(rnd.workflow_id, rnd.schedule_id)
    assert mirror is not None and mirror.submitted_nodes == CONCURRENT_PARTICIPANTS
    assert mirror.status == "all_submitted"


def test_direct_apply_rejects_a_stranger_before_touching_redis(stack: LocalStack, fed: Federation) -> None:
    coordinator, participant, stranger = fed.node(), fed.node(), fed.node()
    fed.register("tp-apply-stranger", coordinator=coordinator, participants=[participant], compute=[fed.node()])
    rnd = fed.open_round(coordinator, "tp-apply-stranger")
    txn = signed_transaction(stranger.signer, IOT_DATA, submission_fields(rnd, "s"))
    handler = IotDataHandler(dataplane=RedisDataPlane(stack.redis_for("tps")))
    context = ChainContext(fed.client)
    with pytest.raises(InvalidTransaction, match="is not a participant"):
        handler.apply(as_request(txn), context)
    assert fed.list_length(rnd) == 0 and not context.writes


EVENT_WAIT = 30.0
"""Seconds to wait for the events of one round to arrive."""


def test_events_are_named_and_filterable_by_workflow_schedule_and_round(fed: Federation) -> None:
    from trustmesh.ledger.events import attribute, subscription

    wanted = ["federation/round-opened", "iot-data/submitted", "federation/round-ready"]
    stream = fed.client.subscribe([subscription(name, {"workflow_id": "tp-events"}) for name in wanted])
    try:
        for workflow_id in ("tp-events-elsewhere", "tp-events"):
            coordinator, participant = fed.node(), fed.node()
            fed.register(workflow_id, coordinator=coordinator, participants=[participant], compute=[fed.node()])
            rnd = fed.open_round(coordinator, workflow_id)
            participant.submit_update(**submission_fields(rnd, "p"))
            participant.act("close_round", workflow_id=workflow_id, round=1)
        seen = []
        while len(seen) < len(wanted):
            event = stream.get(timeout=EVENT_WAIT)
            assert event is not None, f"only {[e.event_type for e in seen]} arrived"
            seen.append(event)
    finally:
        stream.close()
    assert [e.event_type for e in seen] == wanted
    for event in seen:
        assert (attribute(event, "workflow_id"), attribute(event, "schedule_id"), attribute(event, "round")) == (
            "tp-events", "tp-events-r1", "1")
    assert attribute(seen[1], "signer") == participant.public_key
    assert attribute(seen[2], "status") == "ready"
