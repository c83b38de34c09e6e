"""The devnet ledger: one ZMQ ROUTER socket, one loop thread, the Sawtooth 1.2 component protocol.

Every message is a ``validator_pb2.Message`` in one frame after the peer's identity. The loop
reads what is there, answers or routes each message, then lets the publisher build and commit
blocks and the executor send transactions to TPs. A socket monitor reports closed connections, so
a TP that dies with requests in flight is noticed at once (pings catch one that hangs).
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path

import zmq
import zmq.utils.monitor
from google.protobuf.message import DecodeError
from sawtooth_sdk.protobuf import client_batch_submit_pb2 as submit_pb2
from sawtooth_sdk.protobuf import (
    client_block_pb2,
    client_event_pb2,
    client_receipt_pb2,
    client_state_pb2,
    processor_pb2,
    state_context_pb2,
)
from sawtooth_sdk.protobuf.network_pb2 import PingRequest, PingResponse
from sawtooth_sdk.protobuf.processor_pb2 import (
    TpRegisterRequest,
    TpRegisterResponse,
    TpUnregisterResponse,
)
from sawtooth_sdk.protobuf.validator_pb2 import Message
from sawtooth_signing import Signer

from trustmesh.devnet import wire
from trustmesh.devnet.broadcaster import Broadcaster
from trustmesh.devnet.clients import ClientHandlers
from trustmesh.devnet.executor import Executor, Outcome
from trustmesh.devnet.processors import MAX_SDK_PROTOCOL_VERSION, Processor, ProcessorRegistry
from trustmesh.devnet.publisher import Committed, Publisher
from trustmesh.devnet.queries import ChainQueries
from trustmesh.devnet.store import ChainStore

LOGGER = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""Largest message the devnet accepts; a bigger one is answered with an error."""
_HARD_LIMIT = MAX_MESSAGE_BYTES + 1024 * 1024
"""Beyond this ZMQ drops the connection before buffering the message (ZMQ_MAXMSGSIZE)."""

SUBMIT_SLICE = 0.002
"""Seconds of submit checking per loop round while transactions are out at TPs."""

# request type -> (response type, an error response) for refusing oversize or undecodable requests
_ERROR_ANSWERS: dict[int, tuple[int, bytes]] = {
    Message.CLIENT_BATCH_SUBMIT_REQUEST: (
        Message.CLIENT_BATCH_SUBMIT_RESPONSE,
        submit_pb2.ClientBatchSubmitResponse(status=submit_pb2.ClientBatchSubmitResponse.INVALID_BATCH).SerializeToString(),
    ),
    Message.CLIENT_BATCH_STATUS_REQUEST: (
        Message.CLIENT_BATCH_STATUS_RESPONSE,
        submit_pb2.ClientBatchStatusResponse(status=submit_pb2.ClientBatchStatusResponse.INTERNAL_ERROR).SerializeToString(),
    ),
    Message.CLIENT_STATE_GET_REQUEST: (
        Message.CLIENT_STATE_GET_RESPONSE,
        client_state_pb2.ClientStateGetResponse(status=client_state_pb2.ClientStateGetResponse.INTERNAL_ERROR).SerializeToString(),
    ),
    Message.CLIENT_STATE_LIST_REQUEST: (
        Message.CLIENT_STATE_LIST_RESPONSE,
        client_state_pb2.ClientStateListResponse(status=client_state_pb2.ClientStateListResponse.INTERNAL_ERROR).SerializeToString(),
    ),
    Message.CLIENT_EVENTS_SUBSCRIBE_REQUEST: (
        Message.CLIENT_EVENTS_SUBSCRIBE_RESPONSE,
        client_event_pb2.ClientEventsSubscribeResponse(
            status=client_event_pb2.ClientEventsSubscribeResponse.INVALID_FILTER,
            response_message="request refused",
        ).SerializeToString(),
    ),
    Message.CLIENT_BLOCK_LIST_REQUEST: (
        Message.CLIENT_BLOCK_LIST_RESPONSE,
        client_block_pb2.ClientBlockListResponse(status=client_block_pb2.ClientBlockListResponse.INTERNAL_ERROR).SerializeToString(),
    ),
    Message.CLIENT_RECEIPT_GET_REQUEST: (
        Message.CLIENT_RECEIPT_GET_RESPONSE,
        client_receipt_pb2.ClientReceiptGetResponse(status=client_receipt_pb2.ClientReceiptGetResponse.INTERNAL_ERROR).SerializeToString(),
    ),
    Message.TP_REGISTER_REQUEST: (
        Message.TP_REGISTER_RESPONSE,
        processor_pb2.TpRegisterResponse(status=processor_pb2.TpRegisterResponse.ERROR).SerializeToString(),
    ),
    Message.TP_STATE_GET_REQUEST: (
        Message.TP_STATE_GET_RESPONSE,
        state_context_pb2.TpStateGetResponse(status=state_context_pb2.TpStateGetResponse.AUTHORIZATION_ERROR).SerializeToString(),
    ),
    Message.TP_STATE_SET_REQUEST: (
        Message.TP_STATE_SET_RESPONSE,
        state_context_pb2.TpStateSetResponse(status=state_context_pb2.TpStateSetResponse.AUTHORIZATION_ERROR).SerializeToString(),
    ),
}
for _kind in (
    Message.CLIENT_BLOCK_GET_BY_ID_REQUEST,
    Message.CLIENT_BLOCK_GET_BY_NUM_REQUEST,
    Message.CLIENT_BLOCK_GET_BY_BATCH_ID_REQUEST,
    Message.CLIENT_BLOCK_GET_BY_TRANSACTION_ID_REQUEST,
):
    _ERROR_ANSWERS[_kind] = (
        Message.CLIENT_BLOCK_GET_RESPONSE,
        client_block_pb2.ClientBlockGetResponse(status=client_block_pb2.ClientBlockGetResponse.INTERNAL_ERROR).SerializeToString(),
    )


class Devnet:
    """A single-node ledger serving TPs and clients on ``bind`` until :meth:`stop`."""

    def __init__(
        self,
        *,
        bind: str,
        data_dir: Path,
        signer: Signer,
        max_batches_per_block: int = 100,
        ping_interval: float = 5.0,
        ping_timeout: float = 10.0,
    ) -> None:
        self._bind = bind
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._stopping = threading.Event()
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.MAXMSGSIZE, _HARD_LIMIT)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.SNDHWM, 100_000)
        self._socket.setsockopt(zmq.RCVHWM, 100_000)
        self._monitor = self._socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self._socket.bind(bind)
        self._store = ChainStore(path=data_dir / "chain.sqlite")
        self._registry = ProcessorRegistry()
        self._dirty = True
        self._next_ping = time.monotonic() + ping_interval
        self._correlation_prefix = uuid.uuid4().hex[:8]
        self._counter = 0
        self.publisher = Publisher(
            store=self._store,
            signer=signer,
            max_batches=max_batches_per_block,
            on_resolved=self._on_resolved,
            on_committed=self._on_committed,
        )
        self.executor = Executor(registry=self._registry, send=self._send, on_outcome=self._on_outcome)
        self.publisher.executor = self.executor
        self.clients = ClientHandlers(store=self._store, publisher=self.publisher, answer=self._send_to)
        self.queries = ChainQueries(store=self._store, publisher=self.publisher, endpoint=bind)
        self.broadcaster = Broadcaster(store=self._store, head=lambda: self.publisher.head, notify=self._notify)
        LOGGER.info(
            "devnet serving %s; head block %d %s", bind, self.publisher.head.block_num,
            self.publisher.head.block_id[:16],
        )

    # -- sending ----------------------------------------------------------------------------------
    def _send_to(self, identity: bytes, correlation_id: str, message_type: int, content: bytes) -> None:
        data = wire.encode_message(message_type, correlation_id, content)
        try:
            self._socket.send_multipart([identity, data], flags=zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            LOGGER.warning("could not send %s to %s: %s", Message.MessageType.Name(message_type), identity.hex()[:12], exc)

    def _send(self, identity: bytes, message_type: int, content: bytes, correlation_id: str) -> None:
        self._send_to(identity, correlation_id, message_type, content)

    def _notify(self, identity: bytes, message_type: int, content: bytes) -> None:
        self._counter += 1
        self._send_to(identity, f"{self._correlation_prefix}-{self._counter:x}", message_type, content)

    # -- callbacks from the publisher / executor -------------------------------------------------
    def _on_outcome(self, outcome: Outcome) -> None:
        self.publisher.on_outcome(outcome)
        self._dirty = True

    def _on_resolved(self, batch_ids: list[str]) -> None:
        self.clients.on_resolved(batch_ids)

    def _on_committed(self, committed: Committed) -> None:
        self.broadcaster.on_committed(committed)

    # -- the loop ---------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stopping.set()

    def serve_forever(self) -> None:
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        try:
            while not self._stopping.is_set():
                busy = self.publisher.working or self.executor.busy or self.clients.has_waiters
                events = dict(poller.poll(0 if self.clients.has_submits else 20 if busy else 200))
                if self._monitor in events:
                    self._drain_monitor()
                if self._socket in events:
                    self._drain_socket()
                now = time.monotonic()
                if self.clients.has_submits:
                    # while TPs wait on us, verify submits in short slices between their requests
                    self.clients.work_submits(now + (SUBMIT_SLICE if self.executor.busy else 0.25))
                    self._dirty = True
                    now = time.monotonic()
                self.clients.expire(now)
                if now >= self._next_ping:
                    self._ping_processors(now)
                if self._dirty or busy:
                    self._dirty = False
                    self.publisher.advance(now)
                    self.executor.pump(now)
        finally:
            self.close()

    def close(self) -> None:
        try:
            self._socket.disable_monitor()
        except zmq.ZMQError:
            pass
        self._monitor.close(linger=0)
        self._socket.close(linger=0)
        self._context.term()
        self._store.close()
        LOGGER.info("devnet stopped")

    def _drain_monitor(self) -> None:
        while self._monitor.poll(0):
            try:
                event = zmq.utils.monitor.recv_monitor_message(self._monitor)
            except zmq.ZMQError:
                return
            if event["event"] == zmq.EVENT_DISCONNECTED:
                self._connection_closed(int(event["value"]))

    def _connection_closed(self, fd: int) -> None:
        LOGGER.info(
            "a connection closed (fd %d): by the peer, or refused for a message over %d MiB",
            fd, _HARD_LIMIT // 2**20,
        )
        for processor in self._registry.on_fd(fd):
            self._drop_processor(processor, "disconnected")
        self.broadcaster.connection_closed(fd)

    def _drop_processor(self, processor: Processor, why: str) -> None:
        LOGGER.warning("transaction processor %s %s; forgetting it", processor.identity.hex()[:12], why)
        self._registry.forget(processor.identity)
        self.executor.processor_gone(processor)
        self._dirty = True

    def _ping_processors(self, now: float) -> None:
        """Ping every TP; one that leaves a ping unanswered too long gets no work until it answers."""
        self._next_ping = now + self._ping_interval
        for processor in self._registry.all():
            if processor.ping_sent is None:
                processor.ping_sent = now
                self._notify(processor.identity, Message.PING_REQUEST, PingRequest().SerializeToString())
            elif not processor.suspended and now - processor.ping_sent > self._ping_timeout:
                LOGGER.warning(
                    "transaction processor %s did not answer a ping within %gs; its transactions go elsewhere",
                    processor.identity.hex()[:12], self._ping_timeout,
                )
                processor.suspended = True
                self.executor.processor_gone(processor)
                self._dirty = True

    def _heard_from(self, identity: bytes) -> None:
        processor = self._registry.get(identity)
        if processor is not None:
            processor.ping_sent = None
            processor.last_seen = time.monotonic()
            if processor.suspended:
                LOGGER.info("transaction processor %s answers again", identity.hex()[:12])
                processor.suspended = False
                self._dirty = True

    def _drain_socket(self) -> None:
        for _ in range(2000):
            try:
                frames = self._socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._dirty = True
            if len(frames) != 2:
                LOGGER.warning("dropped a message of %d frames (expected identity + one)", len(frames))
                continue
            try:
                self._handle(frames[0].bytes, frames[1])
            except Exception:  # one bad message must never stop the ledger
                LOGGER.exception("error while handling a message; dropped it")

    # -- dispatch ---------------------------------------------------------------------------------
    def _handle(self, identity: bytes, frame: zmq.Frame) -> None:
        data = frame.bytes
        try:
            kind, correlation_id, content = wire.decode_message(data)
        except DecodeError:
            LOGGER.warning("dropped an undecodable frame of %d bytes from %s", len(data), identity.hex()[:12])
            return
        if len(data) > MAX_MESSAGE_BYTES:
            LOGGER.warning(
                "refused a %s of %.1f MiB from %s: over the %d MiB limit",
                _type_name(kind), len(data) / 2**20, identity.hex()[:12], MAX_MESSAGE_BYTES // 2**20,
            )
            if kind in _ERROR_ANSWERS:
                self._send_to(identity, correlation_id, *_ERROR_ANSWERS[kind])
            return
        try:
            answer = self._route(identity, frame, kind, correlation_id, content)
        except DecodeError:
            LOGGER.warning("undecodable %s content from %s", _type_name(kind), identity.hex()[:12])
            answer = _ERROR_ANSWERS.get(kind)
        if answer is not None:
            self._send_to(identity, correlation_id, answer[0], answer[1])

    def _route(
        self, identity: bytes, frame: zmq.Frame, kind: int, correlation_id: str, content: bytes
    ) -> tuple[int, bytes] | None:
        M = Message
        if kind == M.TP_STATE_GET_REQUEST:
            return self.executor.on_state_get(content)
        if kind == M.TP_STATE_SET_REQUEST:
            return self.executor.on_state_set(content)
        if kind == M.TP_PROCESS_RESPONSE:
            self.executor.on_process_response(identity, correlation_id, content)
            self._heard_from(identity)
            return None
        if kind == M.CLIENT_BATCH_SUBMIT_REQUEST:
            self.clients.enqueue_submit(identity, correlation_id, content)
            return None
        if kind == M.CLIENT_BATCH_STATUS_REQUEST:
            return self.clients.batch_status(identity, correlation_id, content)
        if kind == M.TP_STATE_DELETE_REQUEST:
            return self.executor.on_state_delete(content)
        if kind == M.TP_EVENT_ADD_REQUEST:
            return self.executor.on_event_add(content)
        if kind == M.TP_RECEIPT_ADD_DATA_REQUEST:
            return self.executor.on_receipt_add_data(content)
        if kind == M.CLIENT_STATE_GET_REQUEST:
            return self.queries.state_get(content)
        if kind == M.CLIENT_STATE_LIST_REQUEST:
            return self.queries.state_list(content)
        if kind == M.PING_REQUEST:
            return M.PING_RESPONSE, PingResponse().SerializeToString()
        if kind == M.PING_RESPONSE:
            self._heard_from(identity)
            return None
        if kind == M.TP_REGISTER_REQUEST:
            return self._register(identity, frame, content)
        if kind == M.TP_UNREGISTER_REQUEST:
            processor = self._registry.unregister(identity)
            LOGGER.info("transaction processor %s unregistered", identity.hex()[:12])
            if processor is None:
                LOGGER.info("(it was not registered)")
            return M.TP_UNREGISTER_RESPONSE, TpUnregisterResponse(status=TpUnregisterResponse.OK).SerializeToString()
        if kind == M.CLIENT_EVENTS_SUBSCRIBE_REQUEST:
            self.broadcaster.subscribe(identity, _fd(frame), content,
                                       lambda t, c: self._send_to(identity, correlation_id, t, c))
            return None
        if kind == M.CLIENT_EVENTS_GET_REQUEST:
            return self.broadcaster.events_get(content)
        if kind == M.CLIENT_EVENTS_UNSUBSCRIBE_REQUEST:
            self.broadcaster.unsubscribe(identity, lambda t, c: self._send_to(identity, correlation_id, t, c))
            return None
        if kind in (
            M.CLIENT_BLOCK_GET_BY_ID_REQUEST,
            M.CLIENT_BLOCK_GET_BY_NUM_REQUEST,
            M.CLIENT_BLOCK_GET_BY_BATCH_ID_REQUEST,
            M.CLIENT_BLOCK_GET_BY_TRANSACTION_ID_REQUEST,
        ):
            return self.queries.block_get(kind, content)
        if kind == M.CLIENT_BLOCK_LIST_REQUEST:
            return self.queries.block_list(content)
        if kind == M.CLIENT_BATCH_GET_REQUEST:
            return self.queries.batch_get(content)
        if kind == M.CLIENT_TRANSACTION_GET_REQUEST:
            return self.queries.transaction_get(content)
        if kind == M.CLIENT_RECEIPT_GET_REQUEST:
            return self.queries.receipt_get(content)
        if kind == M.CLIENT_STATUS_GET_REQUEST:
            return self.queries.status_get()
        LOGGER.warning("dropped a message of unsupported type %s from %s", _type_name(kind), identity.hex()[:12])
        return None

    def _register(self, identity: bytes, frame: zmq.Frame, content: bytes) -> tuple[int, bytes]:
        request = TpRegisterRequest()
        request.ParseFromString(content)
        if request.protocol_version > MAX_SDK_PROTOCOL_VERSION:
            LOGGER.error(
                "transaction processor %s asks for protocol version %d; the devnet speaks up to %d",
                identity.hex()[:12], request.protocol_version, MAX_SDK_PROTOCOL_VERSION,
            )
            response = TpRegisterResponse(status=TpRegisterResponse.ERROR, protocol_version=MAX_SDK_PROTOCOL_VERSION)
            return Message.TP_REGISTER_RESPONSE, response.SerializeToString()
        self._registry.register(identity=identity, fd=_fd(frame), request=request)
        response = TpRegisterResponse(status=TpRegisterResponse.OK, protocol_version=request.protocol_version)
        return Message.TP_REGISTER_RESPONSE, response.SerializeToString()


def _fd(frame: zmq.Frame) -> int | None:
    try:
        return int(frame.get(zmq.SRCFD))
    except (zmq.ZMQError, AttributeError, TypeError, ValueError):
        return None


def _type_name(kind: int) -> str:
    try:
        return str(Message.MessageType.Name(kind))
    except ValueError:
        return f"type {kind}"
