"""The thread-based SDK Stream: replies resolve futures; a lost validator fails them and reconnects."""
from __future__ import annotations

import threading
import time

import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st
from sawtooth_sdk.messaging.exceptions import ValidatorConnectionError
from sawtooth_sdk.messaging.future import FutureTimeoutError
from sawtooth_sdk.protobuf.validator_pb2 import Message

from trustmesh.net import free_port
from trustmesh.sdk_compat import RECONNECT_EVENT, Stream, decode_envelope, encode_envelope


def _router(url: str) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.ROUTER)
    sock.linger = 0
    sock.bind(url)
    return sock


def _answer_one(router: zmq.Socket) -> None:
    assert router.poll(10_000)
    identity, data = router.recv_multipart()
    request = Message.FromString(data)
    reply = Message(message_type=Message.PING_RESPONSE, correlation_id=request.correlation_id)
    router.send_multipart([identity, reply.SerializeToString()])


def test_reply_resolves_the_future() -> None:
    url = f"tcp://127.0.0.1:{free_port()}"
    router = _router(url)
    stream = Stream(url)
    try:
        future = stream.send(Message.PING_REQUEST, b"")
        _answer_one(router)
        assert future.result(10).message_type == Message.PING_RESPONSE
    finally:
        stream.close()
        router.close(linger=0)


def test_lost_validator_fails_pending_futures_while_others_send_then_reconnects() -> None:
    url = f"tcp://127.0.0.1:{free_port()}"
    router = _router(url)
    stream = Stream(url)
    futures = []
    lock = threading.Lock()
    stop = threading.Event()

    def keep_sending() -> None:
        while not stop.is_set():
            try:
                future = stream.send(Message.PING_REQUEST, b"")
            except ValidatorConnectionError:
                continue
            with lock:
                futures.append(future)

    try:
        first = stream.send(Message.PING_REQUEST, b"")
        _answer_one(router)
        assert first.result(10).message_type == Message.PING_RESPONSE
        senders = [threading.Thread(target=keep_sending) for _ in range(3)]
        for sender in senders:
            sender.start()
        router.close(linger=0)  # the validator goes away with requests outstanding
        reconnected = stream.receive()
        stop.set()
        for sender in senders:
            sender.join(10)
        with lock:
            outstanding = list(futures)
        assert outstanding
        for future in outstanding:
            with pytest.raises(ValidatorConnectionError):
                future.result(10).content  # noqa: B018 — reading content raises on a failed future
        router = _router(url)  # the validator is back on the same endpoint
        assert reconnected.result(15) == RECONNECT_EVENT
        again = stream.send(Message.PING_REQUEST, b"")
        deadline = time.monotonic() + 20
        while not again.done() and time.monotonic() < deadline:  # requests queued before the drop come first
            if router.poll(100):
                _answer_one(router)
        assert again.result(10).message_type == Message.PING_RESPONSE
    finally:
        stop.set()
        stream.close()
        router.close(linger=0)


@settings(deadline=None, max_examples=40)
@given(kind=st.integers(0, 100_000), correlation_id=st.text(max_size=40), content=st.binary(max_size=100))
def test_envelope_codec_matches_protobuf(kind: int, correlation_id: str, content: bytes) -> None:
    reference = Message(message_type=kind, correlation_id=correlation_id, content=content).SerializeToString()
    assert encode_envelope(kind, correlation_id, content) == reference
    received = decode_envelope(reference)
    assert (received.message_type, received.correlation_id, received.content) == (kind, correlation_id, content)


def test_context_requests_use_the_calling_threads_socket() -> None:
    url = f"tcp://127.0.0.1:{free_port()}"
    router = _router(url)
    stream = Stream(url)
    try:
        register = stream.send(Message.TP_REGISTER_REQUEST, b"")
        assert router.poll(10_000)
        main_identity, data = router.recv_multipart()
        router.send_multipart([main_identity, Message(
            message_type=Message.TP_REGISTER_RESPONSE, correlation_id=Message.FromString(data).correlation_id
        ).SerializeToString()])
        assert register.result(10).message_type == Message.TP_REGISTER_RESPONSE

        state_get = stream.send(Message.TP_STATE_GET_REQUEST, b"request")
        assert router.poll(10_000)
        direct_identity, data = router.recv_multipart()
        assert direct_identity != main_identity  # its own connection: no hop through the I/O thread
        request = Message.FromString(data)
        assert (request.message_type, request.content) == (Message.TP_STATE_GET_REQUEST, b"request")
        router.send_multipart([direct_identity, Message(
            message_type=Message.TP_STATE_GET_RESPONSE, correlation_id=request.correlation_id, content=b"ok"
        ).SerializeToString()])
        assert state_get.result(10).content == b"ok"

        unanswered = stream.send(Message.TP_STATE_SET_REQUEST, b"")
        with pytest.raises(FutureTimeoutError):
            unanswered.result(0.2)
        router.close(linger=0)  # the validator goes away: the waiting handler is released
        with pytest.raises(ValidatorConnectionError):
            unanswered.result(15).content  # noqa: B018
    finally:
        stream.close()
        router.close(linger=0)


def test_context_requests_in_flight_together_get_their_own_replies() -> None:
    """A handler may send its state write and its events before waiting: replies that come back in
    another order still reach the request they answer."""
    url = f"tcp://127.0.0.1:{free_port()}"
    router = _router(url)
    stream = Stream(url)
    try:
        sent = [stream.send(Message.TP_STATE_SET_REQUEST, b"set"),
                stream.send(Message.TP_EVENT_ADD_REQUEST, b"event-1"),
                stream.send(Message.TP_EVENT_ADD_REQUEST, b"event-2")]
        requests = []
        for _ in sent:
            assert router.poll(10_000)
            identity, data = router.recv_multipart()
            requests.append((identity, Message.FromString(data)))
        for identity, request in reversed(requests):  # answered last first
            router.send_multipart([identity, Message(
                message_type=request.message_type + 1, correlation_id=request.correlation_id,
                content=b"re:" + request.content).SerializeToString()])
        assert [f.result(10).content for f in sent] == [b"re:set", b"re:event-1", b"re:event-2"]
    finally:
        stream.close()
        router.close(linger=0)
