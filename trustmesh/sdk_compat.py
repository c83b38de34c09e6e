"""A thread-based ``Stream`` for the Sawtooth SDK 1.2.5 on Python 3.11.

The SDK's ``sawtooth_sdk/messaging/stream.py`` uses ``@asyncio.coroutine`` and
``asyncio.Queue(loop=...)``, both removed in Python 3.11, so it fails at import. :func:`install`
puts this module's :class:`Stream` in ``sys.modules['sawtooth_sdk.messaging.stream']`` before
anything imports ``sawtooth_sdk.processor``; the SDK's own ``TransactionProcessor``, ``Context``
and ``TransactionHandler`` then run unchanged over plain pyzmq sockets.

One I/O thread owns the DEALER socket (zmq sockets are not thread-safe). Callers hand it outgoing
messages through a queue and wake it over an inproc pair. Replies resolve the SDK's own
``Future`` objects by correlation id; other messages (process requests, pings) wait in a receive
queue. A socket monitor turns a disconnect into failed futures and, once the socket has
reconnected, a ``RECONNECT_EVENT`` on the receive queue, so the processor core re-registers.

A handler's context requests (state get/set/delete, events, receipt data) skip the I/O thread: each
handler thread sends them on a DEALER of its own and reads the reply there (a validator answers
them by context id on whichever connection they arrive), which saves two thread hand-offs per
request. Several may be in flight on that socket at once: a reply that arrives for another of the
thread's requests is kept for it. The envelope is encoded by hand (same bytes as
``Message.SerializeToString()``).
"""
from __future__ import annotations

import concurrent.futures
import logging
import queue
import sys
import threading
import time
import types
import uuid
from typing import Any

import zmq
import zmq.utils.monitor

LOGGER = logging.getLogger(__name__)

RECONNECT_EVENT = -1
"""Sentinel on the receive queue: the validator connection came back; register again."""

_POLL_MS = 200


def _new_id() -> bytes:
    return uuid.uuid4().hex.encode()


# -- the ``validator_pb2.Message`` envelope, by hand --------------------------------------------
# The SDK's generated classes run on protobuf's pure-Python implementation; encoding and decoding
# the three-field envelope by hand saves a large share of a TP's per-transaction CPU. The bytes
# are the same as ``Message(...).SerializeToString()`` (proto3: empty fields omitted).


class Received:
    """A message from the validator, with the attributes the SDK's core reads from a ``Message``."""

    __slots__ = ("message_type", "correlation_id", "content")

    def __init__(self, message_type: int, correlation_id: str, content: bytes) -> None:
        self.message_type = message_type
        self.correlation_id = correlation_id
        self.content = content


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_envelope(message_type: int, correlation_id: str | bytes, content: bytes) -> bytes:
    corr = correlation_id.encode() if isinstance(correlation_id, str) else correlation_id
    out = b""
    if message_type:
        out += b"\x08" + _varint(message_type)
    if corr:
        out += b"\x12" + _varint(len(corr)) + corr
    if content:
        out += b"\x1a" + _varint(len(content)) + content
    return out


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def decode_envelope(data: bytes) -> Received:
    """Raise ValueError on bytes that are not a ``Message``."""
    message_type, correlation_id, content = 0, "", b""
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
            if number == 1:
                message_type = value
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated field")
            chunk = data[pos : pos + length]
            pos += length
            if number == 2:
                correlation_id = chunk.decode()
            elif number == 3:
                content = chunk
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError(f"wire type {wire}")
        if number == 0 or pos > len(data):
            raise ValueError("malformed message")
    return Received(message_type, correlation_id, content)


_CONTEXT_REQUESTS = frozenset({7, 9, 11, 13, 15})
"""TP_STATE_GET/SET/DELETE, TP_RECEIPT_ADD_DATA and TP_EVENT_ADD requests (validator_pb2 numbers):
a validator answers them by context id on whichever connection they arrive."""

_DIRECT_POLL_S = 0.05
_EARLY_REPLIES_KEPT = 64
"""Replies a thread keeps for requests it has not waited on yet (several context requests may be in
flight at once); older ones belong to requests abandoned after a timeout."""


class _DirectReply:
    """The reply to a context request sent on the calling thread's own socket, read by that thread.

    Behaves as the SDK's ``Future`` for ``Context``: ``result(timeout)`` returns the reply, raises
    ``FutureTimeoutError`` after ``timeout``, or gives a ``FutureError`` (whose ``content`` raises
    ``ValidatorConnectionError``) if the validator connection dropped meanwhile.
    """

    def __init__(self, *, stream: Stream, sock: zmq.Socket, correlation_id: str, request_type: int,
                 early: dict[str, Received]) -> None:
        self._stream = stream
        self._sock = sock
        self._early = early  # replies this thread's socket received for its other pending requests
        self.correlation_id = correlation_id
        self._request_type = request_type
        self._generation = stream._generation
        self._result: Any = None

    def done(self) -> bool:
        return self._result is not None

    def result(self, timeout: float | None = None) -> Any:
        from sawtooth_sdk.messaging.future import FutureError, FutureResult, FutureTimeoutError

        deadline = None if timeout is None else time.monotonic() + timeout
        early = self._early.pop(self.correlation_id, None)
        if early is not None:
            self._result = FutureResult(message_type=early.message_type, content=early.content)
        while self._result is None:
            wait = _DIRECT_POLL_S if deadline is None else max(0.0, min(_DIRECT_POLL_S, deadline - time.monotonic()))
            if self._sock.poll(int(wait * 1000)):
                try:
                    reply = decode_envelope(self._sock.recv())
                except (ValueError, UnicodeDecodeError):
                    continue
                if reply.correlation_id == self.correlation_id:
                    self._result = FutureResult(message_type=reply.message_type, content=reply.content)
                else:  # a reply to another request of this thread still in flight (or abandoned)
                    self._early[reply.correlation_id] = reply
                    while len(self._early) > _EARLY_REPLIES_KEPT:
                        self._early.pop(next(iter(self._early)))
                continue
            if self._stream._generation != self._generation or not self._stream._ready.is_set():
                self._result = FutureError()
            elif deadline is not None and time.monotonic() >= deadline:
                raise FutureTimeoutError(f"timed out waiting for the reply to message type {self._request_type}")
        return self._result

    def set_result(self, result: Any) -> None:
        self._result = result


class Stream:
    """Connection to a validator's component endpoint, as the SDK's processor core expects.

    Context requests (state get/set/delete, events, receipt data) from a handler go out on a
    socket of the calling thread and are answered there, without a hop through the I/O thread;
    everything else (registration, process responses, pings) uses the one registered connection.
    """

    def __init__(self, url: str) -> None:
        from sawtooth_sdk.messaging.future import FutureCollection

        self._url = url
        self._identity = _new_id()[:16]
        self._futures = FutureCollection()
        self._outbox: queue.Queue[Any] = queue.Queue()
        self._inbox: queue.Queue[Any] = queue.Queue()
        self._waiting: list[concurrent.futures.Future[Any]] = []
        self._inbox_lock = threading.Lock()
        self._ready = threading.Event()
        self._ready.set()
        self._generation = 0  # bumped on every lost connection
        self._closed = threading.Event()
        self._local = threading.local()
        self._direct: list[zmq.Socket] = []
        self._direct_lock = threading.Lock()
        self._context = zmq.Context()
        self._wake_addr = f"inproc://stream-wake-{_new_id().decode()}"
        self._wake_recv = self._context.socket(zmq.PAIR)
        self._wake_recv.bind(self._wake_addr)
        self._wake_send = self._context.socket(zmq.PAIR)
        self._wake_send.connect(self._wake_addr)
        self._wake_lock = threading.Lock()
        started: queue.Queue[BaseException | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, args=(started,), name="sdk-stream", daemon=True)
        self._thread.start()
        error = started.get()
        if error is not None:
            raise error

    # -- the surface the SDK's core.py and context.py use ------------------------------------
    @property
    def url(self) -> str:
        return self._url

    @property
    def zmq_id(self) -> bytes:
        return self._identity

    def send(self, message_type: int, content: bytes) -> Any:
        """Send a request; return the SDK ``Future`` its reply resolves."""
        from sawtooth_sdk.messaging.exceptions import ValidatorConnectionError
        from sawtooth_sdk.messaging.future import Future, FutureCollectionKeyError

        if not self._ready.is_set():
            raise ValidatorConnectionError()
        correlation_id = _new_id().decode()
        if message_type in _CONTEXT_REQUESTS:
            sock = self._direct_socket()
            reply = _DirectReply(stream=self, sock=sock, correlation_id=correlation_id, request_type=message_type,
                                 early=self._local.early)
            sock.send(encode_envelope(message_type, correlation_id, content))
            return reply
        future = Future(correlation_id, request_type=message_type)
        self._futures.put(future)
        if not self._ready.is_set():
            # the connection dropped between the check above and the put: the I/O thread may
            # already have failed every pending future, so this one would never be resolved
            try:
                self._futures.remove(correlation_id)
            except FutureCollectionKeyError:
                pass
            raise ValidatorConnectionError()
        self._enqueue(encode_envelope(message_type, correlation_id, content))
        return future

    def send_back(self, message_type: int, correlation_id: bytes, content: bytes) -> None:
        """Answer a message the validator sent (a process request, a ping)."""
        from sawtooth_sdk.messaging.exceptions import ValidatorConnectionError

        if not self._ready.is_set():
            raise ValidatorConnectionError()
        self._enqueue(encode_envelope(message_type, correlation_id, content))

    def receive(self) -> concurrent.futures.Future[Any]:
        """A future of the next message that is not a reply (or ``RECONNECT_EVENT``)."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._inbox_lock:
            try:
                future.set_result(self._inbox.get_nowait())
            except queue.Empty:
                self._waiting.append(future)
        return future

    def wait_for_ready(self) -> None:
        self._ready.wait()

    def is_ready(self) -> bool:
        return self._ready.is_set()

    def _direct_socket(self) -> zmq.Socket:
        sock = getattr(self._local, "sock", None)
        if sock is None:
            sock = self._context.socket(zmq.DEALER)
            sock.linger = 0
            sock.connect(self._url)
            self._local.sock = sock
            self._local.early = {}
            with self._direct_lock:
                self._direct.append(sock)
        return sock

    def close(self) -> None:
        with self._direct_lock:
            for sock in self._direct:
                sock.close(linger=0)
            self._direct.clear()
        self._closed.set()
        self._wake()
        self._thread.join(timeout=5)
        with self._inbox_lock:
            for future in self._waiting:
                future.cancel()
            self._waiting.clear()

    # -- the I/O thread ------------------------------------------------------------------------
    def _enqueue(self, message: bytes) -> None:
        self._outbox.put(message)
        self._wake()

    def _wake(self) -> None:
        with self._wake_lock:
            try:
                self._wake_send.send(b"", zmq.NOBLOCK)
            except zmq.ZMQError:
                pass

    def _deliver(self, item: Any) -> None:
        with self._inbox_lock:
            while self._waiting:
                future = self._waiting.pop(0)
                if future.set_running_or_notify_cancel():
                    future.set_result(item)
                    return
            self._inbox.put(item)

    def _fail_pending_futures(self) -> None:
        """Resolve every outstanding request with a connection error and forget it.

        The collection is copied and emptied under its own lock: callers on other threads keep
        adding futures, and iterating the live dict here would raise mid-iteration.
        """
        from sawtooth_sdk.messaging.future import FutureError

        with self._futures._lock:  # noqa: SLF001 — the SDK's collection offers no atomic drain
            pending = list(self._futures._futures.values())  # noqa: SLF001
            self._futures._futures.clear()  # noqa: SLF001
        for future in pending:
            future.set_result(FutureError())

    def _run(self, started: queue.Queue[BaseException | None]) -> None:
        try:
            sock = self._context.socket(zmq.DEALER)
            sock.identity = self._identity
            sock.linger = 0
            monitor = sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
            sock.connect(self._url)
        except zmq.ZMQError as exc:
            started.put(exc)
            return
        started.put(None)
        poller = zmq.Poller()
        for s in (sock, monitor, self._wake_recv):
            poller.register(s, zmq.POLLIN)
        was_disconnected = False
        while not self._closed.is_set():
            try:
                was_disconnected = self._step(sock, monitor, poller, was_disconnected)
            except Exception:  # the I/O thread must survive one bad frame or send
                LOGGER.exception("error in the validator stream's I/O loop")
        sock.disable_monitor()
        monitor.close(linger=0)
        sock.close(linger=0)

    def _step(self, sock: zmq.Socket, monitor: zmq.Socket, poller: zmq.Poller, was_disconnected: bool) -> bool:
        """One poll round: wake-ups, connection events, incoming frames, outgoing messages."""
        events = dict(poller.poll(_POLL_MS))
        if self._wake_recv in events:
            while self._wake_recv.poll(0):
                self._wake_recv.recv()
        if monitor in events:
            event = zmq.utils.monitor.recv_monitor_message(monitor)["event"]
            if event == zmq.EVENT_DISCONNECTED:
                LOGGER.info("lost the validator at %s; reconnecting", self._url)
                self._ready.clear()
                self._generation += 1
                was_disconnected = True
                self._fail_pending_futures()
            elif event == zmq.EVENT_CONNECTED and was_disconnected:
                was_disconnected = False
                self._ready.set()
                self._deliver(RECONNECT_EVENT)
        if sock in events:
            while sock.poll(0):
                self._on_frame(sock.recv_multipart())
        while True:
            try:
                message = self._outbox.get_nowait()
            except queue.Empty:
                break
            sock.send(message)
        return was_disconnected

    def _on_frame(self, frames: list[bytes]) -> None:
        from sawtooth_sdk.messaging.future import FutureCollectionKeyError, FutureResult

        try:
            message = decode_envelope(frames[-1])
        except (ValueError, UnicodeDecodeError):
            LOGGER.warning("dropped an undecodable frame from %s", self._url)
            return
        try:
            self._futures.set_result(
                message.correlation_id,
                FutureResult(message_type=message.message_type, content=message.content),
            )
            self._futures.remove(message.correlation_id)
        except FutureCollectionKeyError:
            self._deliver(message)


def install() -> None:
    """Make ``sawtooth_sdk.messaging.stream`` resolve to this module's replacement.

    Idempotent. Must run before ``sawtooth_sdk.processor`` is imported (``import trustmesh`` does it).
    """
    name = "sawtooth_sdk.messaging.stream"
    current = sys.modules.get(name)
    if current is not None and getattr(current, "Stream", None) is Stream:
        return
    module = types.ModuleType(name, __doc__)
    module.Stream = Stream  # type: ignore[attr-defined]
    module.RECONNECT_EVENT = RECONNECT_EVENT  # type: ignore[attr-defined]
    sys.modules[name] = module
