"""Pure pieces of the devnet: wire codecs against the SDK's classes, state root, access sets, filters."""
from __future__ import annotations

import pytest
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st
from sawtooth_sdk.protobuf.block_pb2 import Block
from sawtooth_sdk.protobuf.client_batch_submit_pb2 import (
    ClientBatchStatus,
    ClientBatchStatusResponse,
    ClientBatchSubmitRequest,
)
from sawtooth_sdk.protobuf.client_list_control_pb2 import ClientPagingResponse
from sawtooth_sdk.protobuf.client_state_pb2 import ClientStateGetResponse, ClientStateListResponse
from sawtooth_sdk.protobuf.events_pb2 import Event, EventFilter, EventSubscription
from sawtooth_sdk.protobuf.processor_pb2 import TpProcessRequest, TpProcessResponse
from sawtooth_sdk.protobuf.state_context_pb2 import (
    TpEventAddRequest,
    TpEventAddResponse,
    TpReceiptAddDataRequest,
    TpStateEntry,
    TpStateGetRequest,
    TpStateGetResponse,
    TpStateSetRequest,
    TpStateSetResponse,
)
from sawtooth_sdk.protobuf.transaction_pb2 import TransactionHeader
from sawtooth_sdk.protobuf.transaction_receipt_pb2 import StateChange, TransactionReceipt
from sawtooth_sdk.protobuf.validator_pb2 import Message

from trustmesh.devnet import wire
from trustmesh.devnet.checks import BatchRejected, check_batch
from trustmesh.devnet.events import Subscription, parse_subscriptions
from trustmesh.devnet.execution import AccessSet
from trustmesh.devnet.state_root import StateRoot
from trustmesh.ledger.batch import make_batch, make_transaction
from trustmesh.ledger.keys import new_signer

text = st.text(max_size=40)
blobs = st.binary(max_size=80)
addresses = st.text(alphabet="0123456789abcdef", min_size=70, max_size=70)


@settings(deadline=None, max_examples=40)
@given(kind=st.integers(0, 1000), correlation_id=text, content=blobs)
def test_message_envelope_matches_protobuf(kind: int, correlation_id: str, content: bytes) -> None:
    encoded = wire.encode_message(kind, correlation_id, content)
    parsed = Message.FromString(encoded)
    assert (parsed.message_type, parsed.correlation_id, parsed.content) == (kind, correlation_id, content)
    reference = Message(message_type=kind, correlation_id=correlation_id, content=content).SerializeToString()
    assert wire.decode_message(reference) == (kind, correlation_id, content)
    assert encoded == reference


@settings(deadline=None, max_examples=40)
@given(
    strings=st.lists(text, min_size=6, max_size=6),
    inputs=st.lists(text, max_size=3),
    outputs=st.lists(text, max_size=3),
    deps=st.lists(text, max_size=2),
)
def test_transaction_header_matches_protobuf(strings: list[str], inputs: list[str], outputs: list[str],
                                             deps: list[str]) -> None:
    header = TransactionHeader(
        batcher_public_key=strings[0], family_name=strings[1], family_version=strings[2], nonce=strings[3],
        payload_sha512=strings[4], signer_public_key=strings[5], inputs=inputs, outputs=outputs, dependencies=deps,
    )
    decoded = wire.decode_txn_header(header.SerializeToString())
    assert decoded == wire.TxnHeader(
        batcher_public_key=strings[0], dependencies=tuple(deps), family_name=strings[1], family_version=strings[2],
        inputs=tuple(inputs), nonce=strings[3], outputs=tuple(outputs), payload_sha512=strings[4],
        signer_public_key=strings[5],
    )


def test_batches_round_trip_and_blocks_keep_their_bytes() -> None:
    signer = new_signer()
    txns = [
        make_transaction(signer, family_name="f", family_version="1", payload=p, inputs=["ab"], outputs=["ab"])
        for p in (b"one", b"two")
    ]
    batch = make_batch(signer, txns)
    request = ClientBatchSubmitRequest(batches=[batch, batch]).SerializeToString()
    raw = wire.split_submit_request(request)
    assert raw == [batch.SerializeToString()] * 2
    checked = check_batch(raw[0])
    assert checked.batch_id == batch.header_signature
    assert [t.payload for t in checked.transactions] == [b"one", b"two"]
    block = Block.FromString(wire.encode_block(b"hdr", "sig", raw))
    assert (block.header, block.header_signature, list(block.batches)) == (b"hdr", "sig", [batch, batch])


def test_check_batch_refuses_truncated_bytes() -> None:
    signer = new_signer()
    txn = make_transaction(signer, family_name="f", family_version="1", payload=b"x", inputs=[], outputs=[])
    raw = make_batch(signer, [txn]).SerializeToString()
    with pytest.raises(BatchRejected):
        check_batch(raw[:-7])


@pytest.mark.parametrize("raw_header", [False, True])
def test_process_request_matches_protobuf(raw_header: bool) -> None:
    header = TransactionHeader(family_name="tm-kv", family_version="1.0", inputs=["ab"], nonce="n")
    encoded = wire.encode_process_request(
        header=header.SerializeToString(), raw_header=raw_header, payload=b"p", signature="s" * 128, context_id="c1"
    )
    request = TpProcessRequest.FromString(encoded)
    if raw_header:
        assert TransactionHeader.FromString(request.header_bytes) == header
        assert request.header == TransactionHeader()
    else:
        assert request.header == header
        assert request.header_bytes == b""
    assert (request.payload, request.signature, request.context_id) == (b"p", "s" * 128, "c1")


@settings(deadline=None, max_examples=40)
@given(context_id=text, entries=st.lists(st.tuples(addresses, blobs), max_size=4))
def test_state_requests_and_responses_match_protobuf(context_id: str, entries: list[tuple[str, bytes]]) -> None:
    set_request = TpStateSetRequest(
        context_id=context_id, entries=[TpStateEntry(address=a, data=d) for a, d in entries]
    ).SerializeToString()
    assert wire.decode_state_set(set_request) == (context_id, entries)
    get_request = TpStateGetRequest(context_id=context_id, addresses=[a for a, _ in entries]).SerializeToString()
    assert wire.decode_context_addresses(get_request) == (context_id, [a for a, _ in entries])
    get_response = TpStateGetResponse.FromString(wire.encode_state_get_response(entries, TpStateGetResponse.OK))
    assert [(e.address, e.data) for e in get_response.entries] == entries
    assert get_response.status == TpStateGetResponse.OK
    set_response = TpStateSetResponse.FromString(
        wire.encode_addresses_response([a for a, _ in entries], TpStateSetResponse.AUTHORIZATION_ERROR)
    )
    assert list(set_response.addresses) == [a for a, _ in entries]
    assert set_response.status == TpStateSetResponse.AUTHORIZATION_ERROR


def test_event_receipt_and_process_responses_match_protobuf() -> None:
    event = Event(event_type="t", attributes=[Event.Attribute(key="k", value="v")], data=b"d")
    request = TpEventAddRequest(context_id="c", event=event).SerializeToString()
    assert wire.decode_event_add(request) == ("c", event.SerializeToString())
    assert wire.decode_receipt_add_data(TpReceiptAddDataRequest(context_id="c", data=b"x").SerializeToString()) == (
        "c", b"x")
    assert TpEventAddResponse.FromString(wire.encode_status_response(TpEventAddResponse.ERROR)).status == 2
    response = TpProcessResponse(status=TpProcessResponse.INVALID_TRANSACTION, message="no", extended_data=b"e")
    assert wire.decode_process_response(response.SerializeToString()) == (2, "no", b"e")
    receipt = TransactionReceipt.FromString(
        wire.encode_receipt(transaction_id="t1", changes=[("a" * 70, b"v"), ("b" * 70, None)],
                            events=[event.SerializeToString()], data=[b"", b"x"])
    )
    assert receipt.transaction_id == "t1"
    assert [(c.address, c.value, c.type) for c in receipt.state_changes] == [
        ("a" * 70, b"v", StateChange.SET), ("b" * 70, b"", StateChange.DELETE)]
    assert list(receipt.events) == [event]
    assert list(receipt.data) == [b"", b"x"]


@settings(deadline=None, max_examples=100)
@given(garbage=st.binary(max_size=200))
def test_garbage_either_decodes_or_raises_decode_error(garbage: bytes) -> None:
    for decode in (wire.decode_message, wire.decode_batch, wire.decode_txn_header, wire.decode_state_set,
                   wire.decode_process_response):
        try:
            decode(garbage)
        except DecodeError:
            pass


@settings(deadline=None, max_examples=40)
@given(state=st.dictionaries(addresses, blobs, max_size=6), changes=st.dictionaries(addresses, st.none() | blobs,
                                                                                      max_size=6))
def test_state_root_updates_incrementally(state: dict[str, bytes], changes: dict[str, bytes | None]) -> None:
    before = StateRoot.of_entries(state.items())
    after = StateRoot.update(before, old=state, new=changes)
    final = {**state, **changes}
    assert after == StateRoot.of_entries((a, v) for a, v in final.items() if v is not None)
    assert len(StateRoot.root_hash(after)) == 64


def test_access_sets_overlap_by_prefix() -> None:
    full = "ab" + "0" * 68
    assert AccessSet([full]).overlaps(AccessSet(["ab"]))
    assert AccessSet(["ab"]).overlaps(AccessSet([full]))
    assert AccessSet(["ab"]).overlaps(AccessSet(["abcd"]))
    assert not AccessSet(["ab"]).overlaps(AccessSet(["cd", "cd" + "1" * 68]))
    assert not AccessSet([]).overlaps(AccessSet(["ab"]))


def _event(**attributes: str) -> Event:
    return Event(event_type="e", attributes=[Event.Attribute(key=k, value=v) for k, v in attributes.items()])


@pytest.mark.parametrize(
    ("kind", "match", "attributes", "expected"),
    [
        (EventFilter.SIMPLE_ANY, "2", {"round": "2"}, True),
        (EventFilter.SIMPLE_ANY, "2", {"round": "3"}, False),
        (EventFilter.SIMPLE_ALL, "2", {}, True),  # no attribute with the key: ALL holds vacuously
        (EventFilter.REGEX_ANY, "^n[0-9]$", {"round": "n7"}, True),
        (EventFilter.REGEX_ALL, "^x", {"round": "y"}, False),
    ],
)
def test_event_filters(kind: int, match: str, attributes: dict[str, str], expected: bool) -> None:
    subscription = Subscription(event_type="e", filters=tuple(
        parse_subscriptions([_subscription(kind, match)])[0].filters))
    assert subscription.matches(_event(**attributes)) is expected


def _subscription(kind: int, match: str) -> EventSubscription:
    return EventSubscription(event_type="e", filters=[EventFilter(key="round", match_string=match, filter_type=kind)])


def test_client_responses_match_protobuf() -> None:
    invalid = ClientBatchStatus(batch_id="b2", status=ClientBatchStatus.INVALID)
    invalid.invalid_transactions.add(transaction_id="t", message="why")
    encoded = wire.encode_batch_status_response(
        1, [wire.encode_batch_status("b1", ClientBatchStatus.COMMITTED), invalid.SerializeToString()]
    )
    assert encoded == ClientBatchStatusResponse(
        status=1, batch_statuses=[ClientBatchStatus(batch_id="b1", status=ClientBatchStatus.COMMITTED), invalid]
    ).SerializeToString()
    assert wire.encode_state_get_client_response(1, b"v", "r" * 64) == ClientStateGetResponse(
        status=1, value=b"v", state_root="r" * 64).SerializeToString()
    entries = [("a" * 70, b"x"), ("b" * 70, b"y")]
    assert wire.encode_state_list_client_response(
        1, entries, state_root="r", paging=("c" * 70, "a" * 70, 2)
    ) == ClientStateListResponse(
        status=1,
        entries=[ClientStateListResponse.Entry(address=a, data=d) for a, d in entries],
        state_root="r",
        paging=ClientPagingResponse(next="c" * 70, start="a" * 70, limit=2),
    ).SerializeToString()
    assert wire.encode_state_list_client_response(5, state_root="r", paging=("", "", 0)) == ClientStateListResponse(
        status=5, state_root="r", paging=ClientPagingResponse()).SerializeToString()
