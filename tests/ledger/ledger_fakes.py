"""An in-process fake validator: a real ZMQ ROUTER answering client messages from canned handlers.

It checks the client's side of the exchange (framing, correlation ids, message types, paging,
resubscription) without a ledger behind it.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import zmq
from sawtooth_sdk.protobuf.validator_pb2 import Message

from trustmesh.net import free_port


@dataclass
class Received:
    identity: bytes
    message: Message


Reply = tuple[int, bytes]
Handler = Callable[[Received], "Reply | list[Reply] | None"]


class FakeValidator:
    """ROUTER on a free port; ``on(type, fn)`` sets the answer for a message type."""

    def __init__(self, *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.handlers: dict[int, Handler] = {}
        self.received: list[Received] = []
        self._outbox: queue.Queue[tuple[bytes, bytes]] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bound = threading.Event()

    def on(self, message_type: int, handler: Handler) -> None:
        self.handlers[message_type] = handler

    def of_type(self, message_type: int) -> list[Received]:
        return [r for r in self.received if r.message.message_type == message_type]

    def identities(self) -> list[bytes]:
        seen: list[bytes] = []
        for r in self.received:
            if r.identity not in seen:
                seen.append(r.identity)
        return seen

    def push(self, identity: bytes, message_type: int, content: bytes, correlation_id: str = "") -> None:
        """Send an unsolicited message (an event list, a ping) to one client."""
        frame = Message(message_type=message_type, correlation_id=correlation_id or "push", content=content)
        self._outbox.put((identity, frame.SerializeToString()))

    def start(self) -> FakeValidator:
        self._stop.clear()
        self._bound.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._bound.wait(10), "fake validator did not bind"
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        context = zmq.Context.instance()
        sock = context.socket(zmq.ROUTER)
        sock.linger = 0
        for _ in range(100):  # a just-closed socket on the same port may not have let go yet
            try:
                sock.bind(self.url)
                break
            except zmq.ZMQError:
                time.sleep(0.05)
        else:
            sock.close(linger=0)
            return
        self._bound.set()
        try:
            while not self._stop.is_set():
                if sock.poll(20):
                    identity, frame = sock.recv_multipart()
                    message = Message()
                    message.ParseFromString(frame)
                    received = Received(identity, message)
                    self.received.append(received)
                    handler = self.handlers.get(message.message_type)
                    answer = handler(received) if handler else None
                    answers = [answer] if isinstance(answer, tuple) else (answer or [])
                    for reply_type, content in answers:
                        reply = Message(
                            message_type=reply_type, correlation_id=message.correlation_id, content=content
                        )
                        sock.send_multipart([identity, reply.SerializeToString()])
                while True:
                    try:
                        identity, frame = self._outbox.get_nowait()
                    except queue.Empty:
                        break
                    sock.send_multipart([identity, frame])
        finally:
            sock.close(linger=0)


class TcpProxy:
    """A TCP forwarder on a free port that can cut every connection and refuse new ones for a while."""

    def __init__(self, *, target_port: int) -> None:
        import socket

        self.target_port = target_port
        self.port = free_port()
        self.url = f"tcp://127.0.0.1:{self.port}"
        self._socket = socket
        self._open = threading.Event()
        self._stop = threading.Event()
        self._conns: list = []
        self._lock = threading.Lock()
        self._listener = None
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    def start(self) -> TcpProxy:
        self.resume()
        self._thread.start()
        return self

    def cut(self) -> None:
        """Drop every connection and refuse new ones until :meth:`resume`."""
        self._open.clear()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.shutdown(self._socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def resume(self) -> None:
        listener = self._socket.socket(self._socket.AF_INET, self._socket.SOCK_STREAM)
        listener.setsockopt(self._socket.SOL_SOCKET, self._socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        listener.settimeout(0.1)
        self._listener = listener
        self._open.set()

    def stop(self) -> None:
        self._stop.set()
        self.cut()
        self._thread.join(5)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            listener = self._listener
            if not self._open.is_set() or listener is None:
                self._stop.wait(0.05)
                continue
            try:
                client, _ = listener.accept()
            except OSError:
                continue
            try:
                upstream = self._socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source, sink) -> None:  # type: ignore[no-untyped-def]
        try:
            source.settimeout(None)
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.close()
                except OSError:
                    pass
