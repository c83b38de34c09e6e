"""Event streams against a fake validator: filters, block tracking, resubscribe after a restart."""
from __future__ import annotations

import time

import pytest
from ledger_fakes import FakeValidator, Received
from sawtooth_sdk.protobuf import client_event_pb2
from sawtooth_sdk.protobuf.events_pb2 import Event, EventFilter, EventList
from sawtooth_sdk.protobuf.validator_pb2 import Message

from trustmesh.errors import LedgerError
from trustmesh.ledger.client import LedgerClient
from trustmesh.ledger.events import BLOCK_COMMIT, attribute, event_matches, subscription
from trustmesh.net import free_port

SubscribeResponse = client_event_pb2.ClientEventsSubscribeResponse


def _commit(num: int) -> Event:
    return Event(
        event_type=BLOCK_COMMIT,
        attributes=[
            Event.Attribute(key="block_id", value=f"{num:0128x}"),
            Event.Attribute(key="block_num", value=str(num)),
        ],
    )


def _kv(key: str) -> Event:
    return Event(event_type="tm-kv/set", attributes=[Event.Attribute(key="key", value=key)], data=b"v")


def _events(*events: Event) -> bytes:
    return EventList(events=list(events)).SerializeToString()


def _unsubscribed(_: Received):
    response = client_event_pb2.ClientEventsUnsubscribeResponse(status=1)
    return Message.CLIENT_EVENTS_UNSUBSCRIBE_RESPONSE, response.SerializeToString()


def _accept(status: int = SubscribeResponse.OK):
    return lambda _: (Message.CLIENT_EVENTS_SUBSCRIBE_RESPONSE, SubscribeResponse(status=status).SerializeToString())


def _wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def _subscribe_requests(fake: FakeValidator) -> list[client_event_pb2.ClientEventsSubscribeRequest]:
    return [
        client_event_pb2.ClientEventsSubscribeRequest.FromString(r.message.content)
        for r in fake.of_type(Message.CLIENT_EVENTS_SUBSCRIBE_REQUEST)
    ]


def test_filters_follow_the_validators_rules():
    event = Event(
        event_type="x",
        attributes=[Event.Attribute(key="a", value="1"), Event.Attribute(key="a", value="2")],
    )
    assert event_matches([subscription("x")], event)
    assert not event_matches([subscription("y")], event)
    assert event_matches([subscription("x", {"a": "1"}, kind=EventFilter.SIMPLE_ANY)], event)
    assert not event_matches([subscription("x", {"a": "1"}, kind=EventFilter.SIMPLE_ALL)], event)
    assert event_matches([subscription("x", {"a": "^[12]$"}, kind=EventFilter.REGEX_ALL)], event)
    assert not event_matches([subscription("x", {"a": "^1$"}, kind=EventFilter.REGEX_ALL)], event)
    assert event_matches([subscription("x", {"a": "^2"}, kind=EventFilter.REGEX_ANY)], event)


def test_stream_adds_block_commit_and_delivers_only_matching_events():
    fake = FakeValidator().start()
    fake.on(Message.CLIENT_EVENTS_SUBSCRIBE_REQUEST, _accept())
    fake.on(Message.CLIENT_EVENTS_UNSUBSCRIBE_REQUEST, _unsubscribed)
    client = LedgerClient(urls=[fake.url], timeout=3.0)
    try:
        stream = client.subscribe([subscription("tm-kv/set", {"key": "wanted"})])
        [request] = _subscribe_requests(fake)
        assert [s.event_type for s in request.subscriptions] == ["tm-kv/set", BLOCK_COMMIT]
        assert list(request.last_known_block_ids) == []
        [identity] = fake.identities()

        fake.push(identity, Message.CLIENT_EVENTS, _events(_commit(1), _kv("other"), _kv("wanted")))

        event = stream.get(timeout=5)
        assert event is not None and attribute(event, "key") == "wanted"
        assert stream.get(timeout=0.2) is None  # the block-commit and "other" were not asked for
        assert stream.last_block_id == f"{1:0128x}"

        stream.close()
        assert fake.of_type(Message.CLIENT_EVENTS_UNSUBSCRIBE_REQUEST)
        assert stream.get(timeout=0.1) is None
    finally:
        client.close()
        fake.stop()


def test_stream_resubscribes_from_the_last_block_after_a_restart():
    fake = FakeValidator().start()
    fake.on(Message.CLIENT_EVENTS_SUBSCRIBE_REQUEST, _accept())
    fake.on(Message.CLIENT_EVENTS_UNSUBSCRIBE_REQUEST, _unsubscribed)
    client = LedgerClient(urls=[fake.url], timeout=3.0)
    stream = client.subscribe([subscription(BLOCK_COMMIT)])
    try:
        [identity] = fake.identities()
        fake.push(identity, Message.CLIENT_EVENTS, _events(_commit(1)))
        fake.push(identity, Message.CLIENT_EVENTS, _events(_commit(2)))
        assert [attribute(stream.get(timeout=5), "block_num") for _ in range(2)] == ["1", "2"]

        fake.stop()
        fake = FakeValidator(port=fake.port)
        fake.on(Message.CLIENT_EVENTS_SUBSCRIBE_REQUEST, _accept())
        fake.on(Message.CLIENT_EVENTS_UNSUBSCRIBE_REQUEST, _unsubscribed)
        fake.start()
        _wait_for(lambda: _subscribe_requests(fake))
        for request in _subscribe_requests(fake):  # one, or more if an answer came late
            assert list(request.last_known_block_ids) == [f"{2:0128x}"]

        # the validator replays from block 2 on; the stream drops what it has seen
        fake.push(identity, Message.CLIENT_EVENTS, _events(_commit(2)))
        fake.push(identity, Message.CLIENT_EVENTS, _events(_commit(3)))
        assert attribute(stream.get(timeout=5), "block_num") == "3"
    finally:
        stream.close()
        client.close()
        fake.stop()


def test_refused_subscription_raises():
    fake = FakeValidator().start()
    fake.on(Message.CLIENT_EVENTS_SUBSCRIBE_REQUEST, _accept(SubscribeResponse.INVALID_FILTER))
    try:
        with LedgerClient(urls=[fake.url], timeout=3.0) as client:
            with pytest.raises(LedgerError, match="INVALID_FILTER"):
                client.subscribe([subscription("x")])
    finally:
        fake.stop()


def test_bad_regex_is_refused_before_sending():
    with LedgerClient(urls=["tcp://127.0.0.1:1"], timeout=0.5) as client:
        with pytest.raises(LedgerError, match="bad event filter"):
            client.subscribe([subscription("x", {"a": "("}, kind=EventFilter.REGEX_ANY)])


def test_subscribe_request_carries_filters_and_the_resume_block():
    """A subscribe request carries the subscriptions it was given, filters included."""
    fake = FakeValidator().start()
    seen: list[Received] = []

    def accept(received: Received):
        seen.append(received)
        return _accept()(received)

    fake.on(Message.CLIENT_EVENTS_SUBSCRIBE_REQUEST, accept)
    fake.on(Message.CLIENT_EVENTS_UNSUBSCRIBE_REQUEST, _unsubscribed)
    try:
        with LedgerClient(urls=[fake.url], timeout=3.0) as client:
            stream = client.subscribe(
                [subscription("tm-kv/set", {"key": "^w"}, kind=EventFilter.REGEX_ANY)],
                last_known_block_id="ab" * 64,
            )
            stream.close()
        request = client_event_pb2.ClientEventsSubscribeRequest.FromString(seen[0].message.content)
        [flt] = request.subscriptions[0].filters
        assert (flt.key, flt.match_string, flt.filter_type) == ("key", "^w", EventFilter.REGEX_ANY)
        assert list(request.last_known_block_ids) == ["ab" * 64]
    finally:
        fake.stop()


def test_stream_skips_a_validator_that_refuses_connections():
    fake = FakeValidator().start()
    fake.on(Message.CLIENT_EVENTS_SUBSCRIBE_REQUEST, _accept())
    fake.on(Message.CLIENT_EVENTS_UNSUBSCRIBE_REQUEST, _unsubscribed)
    dead = f"tcp://127.0.0.1:{free_port()}"
    try:
        with LedgerClient(urls=[dead, fake.url], timeout=5.0) as client:
            stream = client.subscribe([subscription(BLOCK_COMMIT)])
            assert stream.url == fake.url
            [identity] = fake.identities()
            fake.push(identity, Message.CLIENT_EVENTS, _events(_commit(7)))
            assert attribute(stream.get(timeout=5), "block_num") == "7"
            stream.close()
    finally:
        fake.stop()
