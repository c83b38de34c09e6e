"""Events, BlockInfo, block publication rules and bad input, on one shared devnet + demo TP."""
from __future__ import annotations

import os

import zmq
from devnet_rawclient import RawClient, event_filter, kv_batch
from sawtooth_sdk.protobuf.block_pb2 import BlockHeader
from sawtooth_sdk.protobuf.client_batch_submit_pb2 import (
    ClientBatchStatus,
    ClientBatchSubmitResponse,
)
from sawtooth_sdk.protobuf.client_block_pb2 import (
    ClientBlockGetByBatchIdRequest,
    ClientBlockGetByNumRequest,
    ClientBlockGetResponse,
    ClientBlockListRequest,
    ClientBlockListResponse,
)
from sawtooth_sdk.protobuf.client_event_pb2 import (
    ClientEventsGetRequest,
    ClientEventsGetResponse,
    ClientEventsSubscribeResponse,
    ClientEventsUnsubscribeRequest,
    ClientEventsUnsubscribeResponse,
)
from sawtooth_sdk.protobuf.events_pb2 import Event, EventFilter, EventSubscription
from sawtooth_sdk.protobuf.transaction_receipt_pb2 import StateChangeList
from sawtooth_sdk.protobuf.validator_pb2 import Message
from sawtooth_signing import Signer

from trustmesh.contracts.blockinfo import CONFIG_ADDRESS, block_address, decode_block, decode_config
from trustmesh.contracts.blockinfo import NAMESPACE as BLOCKINFO_NS
from trustmesh.devnet.demo_tp import NAMESPACE, address
from trustmesh.devnet.launch import DevnetProcess

OK = ClientBatchSubmitResponse.OK


def _attrs(event: Event) -> dict[str, str]:
    return {a.key: a.value for a in event.attributes}


def _block_of(client: RawClient, batch_id: str) -> BlockHeader:
    reply = client.request(
        Message.CLIENT_BLOCK_GET_BY_BATCH_ID_REQUEST, ClientBlockGetByBatchIdRequest(batch_id=batch_id).SerializeToString()
    )
    response = ClientBlockGetResponse.FromString(reply.content)
    assert response.status == ClientBlockGetResponse.OK
    return BlockHeader.FromString(response.block.header)


def _head(client: RawClient) -> tuple[int, str]:
    request = ClientBlockListRequest()
    request.paging.limit = 1
    response = ClientBlockListResponse.FromString(
        client.request(Message.CLIENT_BLOCK_LIST_REQUEST, request.SerializeToString()).content
    )
    assert response.status == ClientBlockListResponse.OK
    block = response.blocks[0]
    return BlockHeader.FromString(block.header).block_num, block.header_signature


def _commit(client: RawClient, signer: Signer, *payloads: str) -> str:
    batch = kv_batch(signer, *payloads)
    assert client.submit([batch]) == OK
    assert client.status(batch.header_signature).status == ClientBatchStatus.COMMITTED
    return str(batch.header_signature)


def _events_until_block(client: RawClient, block_num: int) -> list[Event]:
    """Every delivered event up to and including the block-commit of ``block_num``."""
    seen: list[Event] = []
    while True:
        events = client.next_events()
        seen.extend(events)
        commits = [_attrs(e) for e in events if e.event_type == "sawtooth/block-commit"]
        if any(int(c["block_num"]) >= block_num for c in commits):
            return seen


def test_block_commit_and_filtered_custom_events_are_delivered(client: RawClient, signer: Signer) -> None:
    response = client.subscribe([
        EventSubscription(event_type="sawtooth/block-commit"),
        EventSubscription(event_type="tm-kv/ping", filters=[event_filter("round", "2")]),
    ])
    assert response.status == ClientEventsSubscribeResponse.OK
    batch_id = _commit(client, signer, "event tm-kv/ping round=1 node=a", "event tm-kv/ping round=2 node=b",
                       "event tm-kv/other round=2")
    header = _block_of(client, batch_id)
    events = _events_until_block(client, header.block_num)
    pings = [_attrs(e) for e in events if e.event_type == "tm-kv/ping"]
    assert pings == [{"round": "2", "node": "b"}]
    assert not [e for e in events if e.event_type == "tm-kv/other"]
    commit = next(_attrs(e) for e in events if e.event_type == "sawtooth/block-commit"
                  and _attrs(e)["block_num"] == str(header.block_num))
    assert commit["state_root_hash"] == header.state_root_hash
    assert commit["previous_block_id"] == header.previous_block_id
    assert len(commit["block_id"]) == 128


def test_regex_filter_and_state_delta(client: RawClient, signer: Signer) -> None:
    response = client.subscribe([
        EventSubscription(event_type="tm-kv/ping",
                          filters=[event_filter("node", "^gpu-[0-9]+$", EventFilter.REGEX_ANY)]),
        EventSubscription(event_type="sawtooth/state-delta",
                          filters=[event_filter("address", f"^{NAMESPACE}", EventFilter.REGEX_ANY)]),
        EventSubscription(event_type="sawtooth/block-commit"),
    ])
    assert response.status == ClientEventsSubscribeResponse.OK
    batch_id = _commit(client, signer, "event tm-kv/ping node=gpu-7", "event tm-kv/ping node=cpu-1",
                       "set delta-key delta-value")
    events = _events_until_block(client, _block_of(client, batch_id).block_num)
    assert [_attrs(e)["node"] for e in events if e.event_type == "tm-kv/ping"] == ["gpu-7"]
    deltas = [e for e in events if e.event_type == "sawtooth/state-delta"]
    changes = {c.address: c.value for d in deltas for c in StateChangeList.FromString(d.data).state_changes}
    assert changes[address("delta-key")] == b"delta-value"
    assert CONFIG_ADDRESS in changes  # the block's BlockInfo write is part of its state delta


def test_bad_filters_are_refused(client: RawClient) -> None:
    bad_regex = EventSubscription(event_type="x", filters=[event_filter("k", "(", EventFilter.REGEX_ANY)])
    assert client.subscribe([bad_regex]).status == ClientEventsSubscribeResponse.INVALID_FILTER
    unset = EventSubscription(event_type="x", filters=[EventFilter(key="k", match_string="v")])
    assert client.subscribe([unset]).status == ClientEventsSubscribeResponse.INVALID_FILTER
    unknown = client.subscribe([EventSubscription(event_type="x")], last_known_block_ids=["ab" * 64])
    assert unknown.status == ClientEventsSubscribeResponse.UNKNOWN_BLOCK


def test_events_get_and_unsubscribe(client: RawClient, signer: Signer) -> None:
    batch_id = _commit(client, signer, "event tm-kv/ping round=9 node=z")
    header = _block_of(client, batch_id)
    reply = client.request(
        Message.CLIENT_BLOCK_GET_BY_NUM_REQUEST,
        ClientBlockGetByNumRequest(block_num=header.block_num).SerializeToString(),
    )
    block_id = ClientBlockGetResponse.FromString(reply.content).block.header_signature
    request = ClientEventsGetRequest(
        subscriptions=[EventSubscription(event_type="tm-kv/ping", filters=[event_filter("round", "9")])],
        block_ids=[block_id],
    )
    response = ClientEventsGetResponse.FromString(
        client.request(Message.CLIENT_EVENTS_GET_REQUEST, request.SerializeToString()).content
    )
    assert response.status == ClientEventsGetResponse.OK
    assert [_attrs(e) for e in response.events] == [{"round": "9", "node": "z"}]
    assert client.subscribe([EventSubscription(event_type="sawtooth/block-commit")]).status == 1
    reply = client.request(Message.CLIENT_EVENTS_UNSUBSCRIBE_REQUEST, ClientEventsUnsubscribeRequest().SerializeToString())
    assert ClientEventsUnsubscribeResponse.FromString(reply.content).status == ClientEventsUnsubscribeResponse.OK


def test_subscribe_resumes_after_a_known_block(client: RawClient, signer: Signer) -> None:
    first = _block_of(client, _commit(client, signer, "set resume-a 1"))
    second = _block_of(client, _commit(client, signer, "set resume-b 2"))
    reply = client.request(
        Message.CLIENT_BLOCK_GET_BY_NUM_REQUEST, ClientBlockGetByNumRequest(block_num=first.block_num).SerializeToString()
    )
    first_id = ClientBlockGetResponse.FromString(reply.content).block.header_signature
    response = client.subscribe([EventSubscription(event_type="sawtooth/block-commit")], last_known_block_ids=[first_id])
    assert response.status == ClientEventsSubscribeResponse.OK
    caught_up = _events_until_block(client, second.block_num)
    nums = [int(_attrs(e)["block_num"]) for e in caught_up]
    assert nums[0] == first.block_num + 1  # nothing at or before the known block
    assert nums == list(range(first.block_num + 1, second.block_num + 1))


def test_blockinfo_records_each_block_in_order(client: RawClient, signer: Signer) -> None:
    for i in range(3):
        _commit(client, signer, f"set clock-{i} {i}")
    head_num, _ = _head(client)
    config = decode_config(client.state_get(CONFIG_ADDRESS) or b"")
    assert config.latest_block == head_num - 1  # block N+1 records block N
    stamps = []
    for num in range(max(config.oldest_block, head_num - 4), head_num):
        info = decode_block(client.state_get(block_address(num)) or b"")
        reply = client.request(
            Message.CLIENT_BLOCK_GET_BY_NUM_REQUEST, ClientBlockGetByNumRequest(block_num=num).SerializeToString()
        )
        block = ClientBlockGetResponse.FromString(reply.content).block
        assert info.block_num == num
        assert info.header_signature == block.header_signature
        assert info.previous_block_id == BlockHeader.FromString(block.header).previous_block_id
        stamps.append(info.timestamp)
    assert stamps == sorted(stamps)
    assert all(s > 1_600_000_000 for s in stamps)


def test_tp_reads_block_time_from_blockinfo(client: RawClient, signer: Signer) -> None:
    batch = kv_batch(signer, "now clock-read", inputs=[NAMESPACE, BLOCKINFO_NS], outputs=[NAMESPACE])
    assert client.submit([batch]) == OK
    assert client.status(batch.header_signature).status == ClientBatchStatus.COMMITTED
    header = _block_of(client, batch.header_signature)
    recorded = decode_block(client.state_get(block_address(header.block_num - 1)) or b"")
    assert client.value("clock-read") == str(recorded.timestamp)


def test_all_invalid_batch_publishes_no_block(client: RawClient, signer: Signer) -> None:
    _commit(client, signer, "set before-invalid 1")
    head_before = _head(client)
    bad = kv_batch(signer, "set never 1", "fail nothing valid here")
    assert client.submit([bad]) == OK
    assert client.status(bad.header_signature).status == ClientBatchStatus.INVALID
    assert _head(client) == head_before
    batch_id = _commit(client, signer, "set after-invalid 1")
    header = _block_of(client, batch_id)
    assert header.block_num == head_before[0] + 1
    assert header.previous_block_id == head_before[1]
    assert decode_config(client.state_get(CONFIG_ADDRESS) or b"").latest_block == head_before[0]


def test_internal_error_is_retried(client: RawClient, signer: Signer) -> None:
    _commit(client, signer, "internal; set retried yes")
    assert client.value("retried") == "yes"


def test_garbage_and_unknown_messages_do_not_stop_the_ledger(devnet: DevnetProcess, client: RawClient,
                                                            signer: Signer) -> None:
    raw = zmq.Context.instance().socket(zmq.DEALER)
    raw.linger = 0
    raw.connect(devnet.url)
    raw.send(b"\xff\xfe not a protobuf message \x00\x01")
    raw.send_multipart([b"two", b"frames"])
    raw.send(os.urandom(4096))
    raw.send(Message(message_type=9999, correlation_id="x", content=b"?").SerializeToString())
    reply = client.request(Message.CLIENT_BATCH_SUBMIT_REQUEST, b"\x0a\x05junk!")  # undecodable content
    assert reply.message_type == Message.CLIENT_BATCH_SUBMIT_RESPONSE
    raw.close()
    assert client.request(Message.PING_REQUEST, b"").message_type == Message.PING_RESPONSE
    _commit(client, signer, "set still-serving yes")


def test_oversize_messages_are_refused(devnet: DevnetProcess, client: RawClient, signer: Signer) -> None:
    big = RawClient(devnet.url)
    reply = big.request(Message.CLIENT_BATCH_SUBMIT_REQUEST, b"\x00" * (16 * 1024 * 1024 + 100))
    assert ClientBatchSubmitResponse.FromString(reply.content).status == ClientBatchSubmitResponse.INVALID_BATCH
    big.send(Message.CLIENT_BATCH_SUBMIT_REQUEST, b"\x00" * (24 * 1024 * 1024))  # dropped with the connection
    big.close()
    assert client.request(Message.PING_REQUEST, b"").message_type == Message.PING_RESPONSE
    _commit(client, signer, "set after-oversize yes")
    assert client.value("after-oversize") == "yes"
