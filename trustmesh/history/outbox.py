"""A persistent outbox in front of the history: writes never block and are never lost.

Each write is first committed to a SQLite file, then replayed in order by a background thread,
retried with exponential backoff while CouchDB is away. A process that dies and restarts on the
same file resumes where it stopped; replays are idempotent, so a write applied twice is harmless.
"""
from __future__ import annotations

import logging
import os
import random
import sqlite3
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from trustmesh.history.documents import RoundHistory
from trustmesh.history.errors import HistoryConflict, HistoryRejected, HistoryUnavailable
from trustmesh.history.ops import HistoryOp, OpWriter

__all__ = ["BASE_DELAY", "MAX_DELAY", "HistoryOutbox"]

log = logging.getLogger(__name__)

BASE_DELAY = 0.5
MAX_DELAY = 30.0
IDLE_POLL = 1.0
BATCH = 64
"""Queued writes replayed together (one ``_bulk_docs`` per database): a round is about fourteen."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, header TEXT NOT NULL, data BLOB,
    attempts INTEGER NOT NULL DEFAULT 0, enqueued_at REAL NOT NULL, last_error TEXT);
CREATE TABLE IF NOT EXISTS dead (
    id INTEGER PRIMARY KEY, header TEXT NOT NULL, data BLOB, error TEXT, failed_at REAL NOT NULL);
"""


def lower_thread_priority(by: int = 10) -> None:
    """Run the calling thread ``by`` steps nicer (Linux keeps niceness per thread): replaying history
    is background work that must not slow the node's round work on a busy machine."""
    try:
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + by))
    except (AttributeError, OSError):  # not Linux, or not allowed: run at the normal priority
        pass


class _Backend(Protocol):
    def apply(self, op: HistoryOp) -> None: ...

    def apply_many(self, ops: list[HistoryOp]) -> None: ...

    def get_workflow(self, workflow_id: str) -> dict[str, Any] | None: ...

    def get_round(self, workflow_id: str, round_no: int) -> RoundHistory | None: ...

    def list_rounds(self, workflow_id: str) -> list[RoundHistory]: ...

    def node_participation(self, public_key: str) -> list[dict[str, Any]]: ...

    def list_models(self, workflow_id: str) -> list[dict[str, Any]]: ...

    def get_model_attachment(self, workflow_id: str, model_hash: str) -> bytes | None: ...


class HistoryOutbox(OpWriter):
    """HistoryWriter that queues to ``path`` and replays into ``client`` (CouchHistory or MemoryHistory).

    Reads go straight to ``client``: they show what has been flushed so far.
    """

    def __init__(self, path: str | Path, client: _Backend, *, base_delay: float = BASE_DELAY,
                 max_delay: float = MAX_DELAY, start: bool = True) -> None:
        self.path = Path(path)
        self.client = client
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        if start:
            self.start()

    # ---------------------------------------------------------------- writer side (never blocks on CouchDB)

    def _submit(self, ops: list[HistoryOp]) -> None:
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO outbox (header, data, enqueued_at) VALUES (?, ?, ?)",
                    [(op.header_json(), op.data, now) for op in ops])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        self._wake.set()

    def pending(self) -> int:
        """Writes not yet applied to the history."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def dead_letters(self) -> list[tuple[HistoryOp, str]]:
        """Writes CouchDB refused outright (HistoryRejected), with the error; kept for inspection."""
        with self._lock:
            rows = self._db.execute("SELECT header, data, error FROM dead ORDER BY id").fetchall()
        return [(HistoryOp.from_row(h, d), e) for h, d, e in rows]

    # ---------------------------------------------------------------- the replay thread

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"history-outbox:{self.path.name}", daemon=True)
        self._thread.start()

    def kick(self) -> None:
        """Retry now instead of after the current backoff (e.g. when CouchDB is known to be back)."""
        self._wake.set()

    def _oldest(self, limit: int) -> list[tuple[int, str, bytes | None, int]]:
        with self._lock:
            rows = self._db.execute("SELECT id, header, data, attempts FROM outbox ORDER BY id LIMIT ?",
                                    (limit,)).fetchall()
        return [(int(r[0]), str(r[1]), r[2], int(r[3])) for r in rows]

    def _run(self) -> None:
        lower_thread_priority()
        try:
            self._loop()
        except sqlite3.ProgrammingError:
            if not self._stop.is_set():  # the file was closed under us while stopping: nothing lost
                raise

    def _loop(self) -> None:
        one_at_a_time = False  # after a batch was refused: find the refused write by replaying singly
        while not self._stop.is_set():
            self._wake.clear()  # a wake-up set from here on is seen by the waits below
            rows = self._oldest(1 if one_at_a_time else BATCH)
            if not rows:
                one_at_a_time = False
                with self._idle:
                    self._idle.notify_all()
                self._wake.wait(IDLE_POLL)
                continue
            if len(rows) > 1:
                one_at_a_time = not self._replay_batch(rows)
            else:
                one_at_a_time = False
                self._replay_one(*rows[0])

    def _replay_batch(self, rows: list[tuple[int, str, bytes | None, int]]) -> bool:
        """Apply ``rows`` together; False when the batch was refused (some write in it is bad)."""
        row_id, _, _, attempts = rows[0]
        try:
            self.client.apply_many([HistoryOp.from_row(header, data) for _, header, data, _ in rows])
        except (HistoryUnavailable, HistoryConflict) as exc:
            self._retry_later(row_id, attempts, exc)
            return True
        except Exception as exc:  # refused, or an unexpected client failure: go one by one
            log.info("history outbox: a batch of %d was refused (%s); replaying one at a time", len(rows), exc)
            return False
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM outbox WHERE id = ?", [(r[0],) for r in rows])
            self._db.execute("COMMIT")
        self.last_error = None
        return True

    def _replay_one(self, row_id: int, header: str, data: bytes | None, attempts: int) -> None:
        try:
            self.client.apply(HistoryOp.from_row(header, data))
        except (HistoryUnavailable, HistoryConflict) as exc:
            self._retry_later(row_id, attempts, exc)
            return
        except HistoryRejected as exc:
            self._bury(row_id, header, data, exc)
            return
        except Exception as exc:  # an unexpected client failure must not kill the thread
            log.exception("history outbox: unexpected error; will retry")
            self._retry_later(row_id, attempts, exc)
            return
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))
        self.last_error = None

    def _retry_later(self, row_id: int, attempts: int, exc: Exception) -> None:
        self.last_error = str(exc)
        with self._lock:
            self._db.execute("UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                             (str(exc)[:500], row_id))
        delay = min(self.max_delay, self.base_delay * (2 ** min(attempts, 20)))
        delay *= random.uniform(0.8, 1.0)
        if attempts in (0, 5) or attempts % 20 == 0:
            log.warning("history outbox: %s; %d pending, retrying in %.1f s", exc, self.pending(), delay)
        self._wake.wait(delay)

    def _bury(self, row_id: int, header: str, data: bytes | None, exc: Exception) -> None:
        log.error("history outbox: write refused, kept in the dead-letter table: %s", exc)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT INTO dead (id, header, data, error, failed_at) VALUES (?, ?, ?, ?, ?)",
                             (row_id, header, data, str(exc)[:2000], time.time()))
            self._db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))
            self._db.execute("COMMIT")

    def flush(self, timeout: float = 30.0) -> bool:
        """Retry now and wait up to ``timeout`` s until every queued write is applied; True if so."""
        deadline = time.monotonic() + timeout
        self.kick()
        while self.pending():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._thread is None or not self._thread.is_alive():
                return False
            with self._idle:
                self._idle.wait(min(remaining, 0.2))
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (what is still queued stays in the file for the next start)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():  # stuck in a slow HTTP call: it exits after it; keep the file open
                log.warning("history outbox: replay thread still busy after %.0f s; leaving it", timeout)
                return
        with self._lock:
            self._db.close()

    def __enter__(self) -> HistoryOutbox:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ---------------------------------------------------------------- reads (what has been flushed)

    def get_workflow(self, workflow_id: str) -> dict[str, Any] | None:
        return self.client.get_workflow(workflow_id)

    def get_round(self, workflow_id: str, round_no: int) -> RoundHistory | None:
        return self.client.get_round(workflow_id, round_no)

    def list_rounds(self, workflow_id: str) -> list[RoundHistory]:
        return self.client.list_rounds(workflow_id)

    def node_participation(self, public_key: str) -> list[dict[str, Any]]:
        return self.client.node_participation(public_key)

    def list_models(self, workflow_id: str) -> list[dict[str, Any]]:
        return self.client.list_models(workflow_id)

    def get_model_attachment(self, workflow_id: str, model_hash: str) -> bytes | None:
        return self.client.get_model_attachment(workflow_id, model_hash)
