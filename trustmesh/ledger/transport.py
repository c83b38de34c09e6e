"""One ZMQ DEALER connection to a validator's component endpoint, shared safely between threads.

An I/O thread owns the socket (zmq sockets are not thread-safe). Requests carry a fresh
correlation id and resolve a future when the reply with that id arrives; other messages (event
lists) go to a callback; the validator's pings are answered. A socket monitor tracks whether the
connection is up, so requests fail at once instead of queueing for a peer that is not there.
zmq errors and timeouts become :class:`LedgerError` / :class:`LedgerTimeout` here, once.
"""
from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable

import zmq
import zmq.utils.monitor
from sawtooth_sdk.protobuf.network_pb2 import PingResponse
from sawtooth_sdk.protobuf.validator_pb2 import Message

from trustmesh.errors import LedgerError, LedgerTimeout

LOGGER = logging.getLogger(__name__)

_POLL_MS = 200
_UP_EVENT = getattr(zmq, "EVENT_HANDSHAKE_SUCCEEDED", zmq.EVENT_CONNECTED)
_DOWN_EVENTS = zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED

MessageHandler = Callable[[Message], None]
StateHandler = Callable[[bool], None]


class ConnectionLost(LedgerError):
    """The connection dropped while a request was out; the request may be sent again."""


class ConnectionRefused(LedgerError):
    """Nothing accepts connections at the URL right now (asked to fail fast rather than wait)."""


def normalize_url(url: str) -> str:
    """``host:port`` or ``tcp://host:port`` → ``tcp://host:port``."""
    url = url.strip()
    return url if "://" in url else f"tcp://{url}"


def new_correlation_id() -> str:
    return uuid.uuid4().hex


class Connection:
    """A DEALER socket to ``url`` with request/reply futures, ping answers and up/down tracking.

    ``on_message`` gets every message that is not a reply (e.g. CLIENT_EVENTS); ``on_state`` gets
    True/False when the connection comes up or goes down. Both run on the I/O thread: keep them
    short and never call :meth:`request` from them.
    """

    def __init__(
        self,
        *,
        url: str,
        on_message: MessageHandler | None = None,
        on_state: StateHandler | None = None,
    ) -> None:
        self.url = normalize_url(url)
        self._on_message = on_message
        self._on_state = on_state
        self._context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self._pending: dict[str, concurrent.futures.Future[Message]] = {}
        self._pending_lock = threading.Lock()
        self._outbox: queue.Queue[tuple[bytes, concurrent.futures.Future[Message] | None]] = queue.Queue()
        self._up = threading.Event()
        self._refused = threading.Event()  # a connect attempt failed since the connection was last up
        self._closed = threading.Event()
        self._wake_addr = f"inproc://ledger-wake-{uuid.uuid4().hex}"
        self._wake_recv = self._context.socket(zmq.PAIR)
        self._wake_recv.bind(self._wake_addr)
        self._wake_send = self._context.socket(zmq.PAIR)
        self._wake_send.connect(self._wake_addr)
        self._wake_lock = threading.Lock()
        try:
            self._sock = self._context.socket(zmq.DEALER)
            self._sock.identity = uuid.uuid4().hex.encode()
            self._sock.linger = 0
            self._sock.setsockopt(zmq.IMMEDIATE, 1)
            self._sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
            self._sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, 30)
            self._sock.setsockopt(zmq.TCP_KEEPALIVE_INTVL, 10)
            self._sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
            self._monitor = self._sock.get_monitor_socket(_UP_EVENT | _DOWN_EVENTS | zmq.EVENT_CONNECT_RETRIED)
            self._sock.connect(self.url)
        except zmq.ZMQError as exc:
            self._wake_recv.close(linger=0)
            self._wake_send.close(linger=0)
            raise LedgerError(f"cannot connect to {self.url}: {exc}") from exc
        self._thread = threading.Thread(target=self._run, name=f"ledger-io {self.url}", daemon=True)
        self._thread.start()

    # -- caller side ---------------------------------------------------------------------------
    @property
    def is_up(self) -> bool:
        return self._up.is_set()

    def wait_up(self, timeout: float) -> bool:
        return self._up.wait(timeout)

    def request(self, message_type: int, content: bytes, *, timeout: float, fail_fast: bool = False) -> Message:
        """Send one request and wait for its reply; LedgerTimeout if none within ``timeout`` s.

        With ``fail_fast``, a URL whose connect attempts are being refused fails at once with
        :class:`ConnectionRefused` instead of waiting for it to come up."""
        if self._closed.is_set():
            raise LedgerError(f"connection to {self.url} is closed")
        deadline = time.monotonic() + timeout
        while not self._up.is_set():
            if fail_fast and self._refused.is_set():
                raise ConnectionRefused(f"{self.url} refuses connections")
            left = deadline - time.monotonic()
            if left <= 0:
                raise LedgerTimeout(f"no connection to {self.url} within {timeout:g} s")
            self._up.wait(min(left, 0.02) if fail_fast else left)
        correlation_id = new_correlation_id()
        future: concurrent.futures.Future[Message] = concurrent.futures.Future()
        with self._pending_lock:
            self._pending[correlation_id] = future
        message = Message(message_type=message_type, correlation_id=correlation_id, content=content)
        self._enqueue(message.SerializeToString(), future)
        try:
            return future.result(max(0.0, deadline - time.monotonic()))
        except concurrent.futures.TimeoutError as exc:
            raise LedgerTimeout(f"{self.url} did not answer within {timeout:g} s") from exc
        finally:
            with self._pending_lock:
                self._pending.pop(correlation_id, None)

    def send(self, message_type: int, content: bytes, *, correlation_id: str | None = None) -> None:
        """Send without waiting for a reply (answers to the validator, last words)."""
        message = Message(
            message_type=message_type,
            correlation_id=correlation_id or new_correlation_id(),
            content=content,
        )
        self._enqueue(message.SerializeToString(), None)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._wake()
        self._thread.join(timeout=5)
        self._fail_pending(LedgerError(f"connection to {self.url} closed"))
        self._wake_send.close(linger=0)

    # -- the I/O thread ------------------------------------------------------------------------
    def _enqueue(self, frame: bytes, future: concurrent.futures.Future[Message] | None) -> None:
        self._outbox.put((frame, future))
        self._wake()

    def _wake(self) -> None:
        with self._wake_lock:
            try:
                self._wake_send.send(b"", zmq.NOBLOCK)
            except zmq.ZMQError:
                pass

    def _fail_pending(self, error: LedgerError) -> None:
        with self._pending_lock:
            futures = list(self._pending.values())
        for future in futures:
            if not future.done():
                future.set_exception(error)

    def _set_up(self, up: bool) -> None:
        if up == self._up.is_set():
            return
        if up:
            self._up.set()
        else:
            self._up.clear()
            self._fail_pending(ConnectionLost(f"lost the connection to {self.url}"))
        LOGGER.debug("%s is %s", self.url, "up" if up else "down")
        if self._on_state is not None:
            try:
                self._on_state(up)
            except Exception:  # a callback bug must not kill the I/O thread
                LOGGER.exception("connection state callback failed")

    def _run(self) -> None:
        poller = zmq.Poller()
        for sock in (self._sock, self._monitor, self._wake_recv):
            poller.register(sock, zmq.POLLIN)
        try:
            while not self._closed.is_set():
                events = dict(poller.poll(_POLL_MS))
                if self._wake_recv in events:
                    while self._wake_recv.poll(0):
                        self._wake_recv.recv()
                if self._monitor in events:
                    while self._monitor.poll(0):
                        event = zmq.utils.monitor.recv_monitor_message(self._monitor)["event"]
                        if event == _UP_EVENT:
                            self._refused.clear()
                            self._set_up(True)
                        elif event == zmq.EVENT_CONNECT_RETRIED:
                            self._refused.set()
                        elif event & _DOWN_EVENTS:
                            self._set_up(False)
                if self._sock in events:
                    while self._sock.poll(0):
                        self._on_frames(self._sock.recv_multipart())
                self._flush_outbox()
        finally:
            self._set_up(False)
            try:
                self._sock.disable_monitor()
            except zmq.ZMQError:
                pass
            self._monitor.close(linger=0)
            self._sock.close(linger=0)
            self._wake_recv.close(linger=0)

    def _flush_outbox(self) -> None:
        while True:
            try:
                frame, future = self._outbox.get_nowait()
            except queue.Empty:
                return
            try:
                self._sock.send(frame, zmq.NOBLOCK)
            except zmq.ZMQError as exc:  # zmq.Again: no live peer (IMMEDIATE)
                if future is not None and not future.done():
                    future.set_exception(LedgerError(f"cannot send to {self.url}: {exc}"))

    def _on_frames(self, frames: list[bytes]) -> None:
        if not frames[-1]:
            return  # an empty probe frame carries nothing
        message = Message()
        try:
            message.ParseFromString(frames[-1])
        except Exception:  # protobuf raises DecodeError and friends on garbage
            LOGGER.warning("dropped an undecodable frame from %s", self.url)
            return
        with self._pending_lock:
            future = self._pending.get(message.correlation_id)
        if future is not None:
            if not future.done():
                future.set_result(message)
            return
        if message.message_type == Message.PING_REQUEST:
            self._send_now(Message.PING_RESPONSE, message.correlation_id, PingResponse().SerializeToString())
            return
        if self._on_message is not None:
            try:
                self._on_message(message)
            except Exception:
                LOGGER.exception("message callback failed for %s", self.url)
        else:
            LOGGER.debug("ignored unsolicited message type %d from %s", message.message_type, self.url)

    def _send_now(self, message_type: int, correlation_id: str, content: bytes) -> None:
        frame = Message(message_type=message_type, correlation_id=correlation_id, content=content)
        try:
            self._sock.send(frame.SerializeToString(), zmq.NOBLOCK)
        except zmq.ZMQError:
            LOGGER.debug("could not answer a ping from %s", self.url)
