"""Run a devnet as a child process: for tests, benchmarks and ``trustmesh run``.

``DevnetProcess`` starts ``python -m trustmesh.devnet`` on a free port (kept across restarts, so a
restarted devnet on the same data directory answers at the same URL), waits until it answers a
ping, and stops it by PID: SIGTERM for :meth:`stop`, SIGKILL for :meth:`kill`.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import TracebackType

import zmq
from sawtooth_sdk.protobuf.network_pb2 import PingRequest
from sawtooth_sdk.protobuf.validator_pb2 import Message

from trustmesh.devnet.store import ChainStore
from trustmesh.errors import LedgerError, LedgerTimeout
from trustmesh.net import free_port

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def ping(url: str, *, timeout: float = 1.0) -> bool:
    """True if a validator (or devnet) at ``url`` answers a PING_REQUEST within ``timeout`` seconds."""
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    try:
        sock.connect(url)
        correlation_id = uuid.uuid4().hex
        request = Message(
            message_type=Message.PING_REQUEST, correlation_id=correlation_id, content=PingRequest().SerializeToString()
        )
        sock.send(request.SerializeToString())
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not sock.poll(int(left * 1000) + 1):
                return False
            reply = Message.FromString(sock.recv())
            if reply.correlation_id == correlation_id and reply.message_type == Message.PING_RESPONSE:
                return True
        return False
    finally:
        sock.close(linger=0)


class DevnetProcess:
    """A devnet child process on ``data_dir``; restartable, usable as a context manager."""

    def __init__(
        self,
        *,
        data_dir: Path,
        port: int | None = None,
        max_batches_per_block: int | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port if port is not None else free_port()
        self._max_batches = max_batches_per_block
        self._extra = list(extra_args or [])
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "devnet.log"

    def stats(self) -> dict[str, int]:
        """Counts read from the chain database (a second, read-only SQLite reader; safe while running).

        ``blocks`` includes genesis; ``transactions`` and ``batches_committed`` include each block's
        injected BlockInfo transaction and batch.
        """
        path = self.data_dir / "chain.sqlite"
        if not path.exists():
            return {}
        store = ChainStore(path=path, read_only=True)
        try:
            return store.counts()
        finally:
            store.close()

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, *, timeout: float = START_TIMEOUT) -> DevnetProcess:
        """Start the child and wait until it answers a ping; raise LedgerTimeout/LedgerError if not."""
        if self.is_running():
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "trustmesh.devnet", "--bind", self.url, "--data", str(self.data_dir)]
        if self._max_batches is not None:
            command += ["--max-batches-per-block", str(self._max_batches)]
        command += self._extra
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise LedgerError(
                    f"devnet exited with code {self._process.returncode} at start; see {self.log_path}"
                )
            if ping(self.url, timeout=0.5):
                return self
        self.kill()
        raise LedgerTimeout(f"devnet did not answer a ping within {timeout:g}s; see {self.log_path}")

    def stop(self, *, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM by PID and wait; SIGKILL if it does not exit within ``timeout`` seconds."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL by PID (a crash, for tests) and reap it."""
        self._signal(signal.SIGKILL, STOP_TIMEOUT)

    def _signal(self, signum: int, timeout: float) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            try:
                os.kill(process.pid, signum)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(STOP_TIMEOUT)
        self._process = None

    def __enter__(self) -> DevnetProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
