"""SQLite persistence of the devnet chain: blocks, batch outcomes, transaction index, receipts, state.

One connection, used only by the ledger's loop thread. A block is written in one SQLite
transaction (WAL, ``synchronous=FULL``): after ``kill -9`` the database holds every block that was
reported committed and nothing of a block that was not.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from sawtooth_sdk.protobuf.block_pb2 import Block, BlockHeader
from sawtooth_sdk.protobuf.client_batch_submit_pb2 import ClientBatchStatus

from trustmesh.devnet.state_root import StateRoot

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    num INTEGER PRIMARY KEY,
    block_id TEXT NOT NULL UNIQUE,
    block BLOB NOT NULL,
    accumulator BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    status INTEGER NOT NULL,
    block_num INTEGER,
    invalid BLOB
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS transactions (
    txn_id TEXT PRIMARY KEY,
    block_num INTEGER NOT NULL,
    batch_id TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS receipts (
    block_num INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    txn_id TEXT NOT NULL,
    receipt BLOB NOT NULL,
    PRIMARY KEY (block_num, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS receipts_by_txn ON receipts (txn_id);
CREATE TABLE IF NOT EXISTS state (
    address TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
"""

_CHUNK = 500  # stays under SQLite's bound-parameter limit


class StoredBlock:
    """A committed block: its encoded bytes, parsed header and the state-root accumulator after it."""

    __slots__ = ("raw", "header", "block_id", "accumulator", "_block")

    def __init__(self, *, raw: bytes, header: BlockHeader, block_id: str, accumulator: int) -> None:
        self.raw = raw
        self.header = header
        self.block_id = block_id
        self.accumulator = accumulator
        self._block: Block | None = None

    @property
    def block_num(self) -> int:
        return int(self.header.block_num)

    @property
    def block(self) -> Block:
        """The parsed ``Block`` (decoded on first use: only the cold client paths need it)."""
        if self._block is None:
            self._block = Block.FromString(self.raw)
        return self._block


@dataclass(frozen=True)
class BlockWrite:
    """Everything one committed block changes, written in one SQLite transaction."""

    block: StoredBlock
    batch_ids: list[str]
    state_changes: Mapping[str, bytes | None]
    transactions: list[tuple[str, str]]  # (txn_id, batch_id)
    receipts: list[tuple[str, bytes]]  # (txn_id, encoded TransactionReceipt)
    invalid_batches: list[tuple[str, bytes]]  # (batch_id, encoded ClientBatchStatus)


def _parse_block(data: bytes, accumulator: bytes) -> StoredBlock:
    block = Block.FromString(data)
    stored = StoredBlock(
        raw=data,
        header=BlockHeader.FromString(block.header),
        block_id=block.header_signature,
        accumulator=int.from_bytes(accumulator, "big"),
    )
    stored._block = block  # noqa: SLF001 — already parsed
    return stored


class ChainStore:
    """The chain on disk. Reads see only committed blocks; writes happen once per block."""

    def __init__(self, *, path: Path, read_only: bool = False) -> None:
        if read_only:
            self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
            return
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # -- blocks -------------------------------------------------------------------------------
    def head(self) -> StoredBlock | None:
        row = self._db.execute("SELECT block, accumulator FROM blocks ORDER BY num DESC LIMIT 1").fetchone()
        return _parse_block(row[0], row[1]) if row else None

    def block_by_num(self, num: int) -> StoredBlock | None:
        row = self._db.execute("SELECT block, accumulator FROM blocks WHERE num = ?", (num,)).fetchone()
        return _parse_block(row[0], row[1]) if row else None

    def block_by_id(self, block_id: str) -> StoredBlock | None:
        row = self._db.execute(
            "SELECT block, accumulator FROM blocks WHERE block_id = ?", (block_id,)
        ).fetchone()
        return _parse_block(row[0], row[1]) if row else None

    def block_num_of(self, block_id: str) -> int | None:
        row = self._db.execute("SELECT num FROM blocks WHERE block_id = ?", (block_id,)).fetchone()
        return int(row[0]) if row else None

    def blocks_descending(self, *, start_num: int, limit: int) -> list[StoredBlock]:
        rows = self._db.execute(
            "SELECT block, accumulator FROM blocks WHERE num <= ? ORDER BY num DESC LIMIT ?",
            (start_num, limit),
        ).fetchall()
        return [_parse_block(b, a) for b, a in rows]

    def blocks_ascending(self, *, start_num: int, limit: int) -> list[StoredBlock]:
        rows = self._db.execute(
            "SELECT block, accumulator FROM blocks WHERE num >= ? ORDER BY num ASC LIMIT ?",
            (start_num, limit),
        ).fetchall()
        return [_parse_block(b, a) for b, a in rows]

    def block_num_of_batch(self, batch_id: str) -> int | None:
        row = self._db.execute(
            "SELECT block_num FROM batches WHERE batch_id = ? AND status = ?",
            (batch_id, ClientBatchStatus.COMMITTED),
        ).fetchone()
        return int(row[0]) if row else None

    def block_num_of_transaction(self, txn_id: str) -> int | None:
        row = self._db.execute("SELECT block_num FROM transactions WHERE txn_id = ?", (txn_id,)).fetchone()
        return int(row[0]) if row else None

    # -- batches and transactions -------------------------------------------------------------
    def batch_outcome(self, batch_id: str) -> tuple[int, bytes | None] | None:
        """(ClientBatchStatus status, serialized invalid ClientBatchStatus or None), or None if unknown."""
        row = self._db.execute("SELECT status, invalid FROM batches WHERE batch_id = ?", (batch_id,)).fetchone()
        return (int(row[0]), row[1]) if row else None

    def committed_transactions(self, txn_ids: Iterable[str]) -> set[str]:
        """The subset of ``txn_ids`` already in the chain."""
        found: set[str] = set()
        ids = list(txn_ids)
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            found.update(
                row[0]
                for row in self._db.execute(f"SELECT txn_id FROM transactions WHERE txn_id IN ({marks})", chunk)
            )
        return found

    def record_invalid(self, invalid_batches: list[tuple[str, bytes]]) -> None:
        """Persist INVALID outcomes of batches whose block was not published."""
        with self._transaction():
            self._write_invalid(invalid_batches)

    def _write_invalid(self, invalid_batches: list[tuple[str, bytes]]) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO batches (batch_id, status, block_num, invalid) VALUES (?, ?, NULL, ?)",
            [(batch_id, ClientBatchStatus.INVALID, blob) for batch_id, blob in invalid_batches],
        )

    # -- receipts -----------------------------------------------------------------------------
    def receipts_of_block(self, block_num: int) -> list[bytes]:
        rows = self._db.execute(
            "SELECT receipt FROM receipts WHERE block_num = ? ORDER BY seq", (block_num,)
        ).fetchall()
        return [row[0] for row in rows]

    def receipt(self, txn_id: str) -> bytes | None:
        row = self._db.execute("SELECT receipt FROM receipts WHERE txn_id = ?", (txn_id,)).fetchone()
        return row[0] if row else None

    # -- state --------------------------------------------------------------------------------
    def get(self, address: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM state WHERE address = ?", (address,)).fetchone()
        return row[0] if row else None

    def get_many(self, addresses: Iterable[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        ids = list(addresses)
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            found.update(self._db.execute(f"SELECT address, value FROM state WHERE address IN ({marks})", chunk))
        return found

    def list_state(self, *, prefix: str, start: str, limit: int) -> list[tuple[str, bytes]]:
        """Entries under ``prefix`` in address order, from ``start`` (inclusive) on, at most ``limit``."""
        low = max(prefix, start)
        high = prefix + "g"  # every hex digit sorts below "g"
        rows = self._db.execute(
            "SELECT address, value FROM state WHERE address >= ? AND address < ? ORDER BY address LIMIT ?",
            (low, high, limit),
        ).fetchall()
        return [(row[0], row[1]) for row in rows]

    def state_exists(self, address: str) -> bool:
        return self._db.execute("SELECT 1 FROM state WHERE address = ?", (address,)).fetchone() is not None

    def counts(self) -> dict[str, int]:
        """Blocks, committed transactions, committed and invalid batches, state entries."""
        one = self._db.execute
        return {
            "blocks": int(one("SELECT COUNT(*) FROM blocks").fetchone()[0]),
            "transactions": int(one("SELECT COUNT(*) FROM transactions").fetchone()[0]),
            "batches_committed": int(
                one("SELECT COUNT(*) FROM batches WHERE status = ?", (ClientBatchStatus.COMMITTED,)).fetchone()[0]
            ),
            "batches_invalid": int(
                one("SELECT COUNT(*) FROM batches WHERE status = ?", (ClientBatchStatus.INVALID,)).fetchone()[0]
            ),
            "state_entries": int(one("SELECT COUNT(*) FROM state").fetchone()[0]),
        }

    def iter_state(self) -> Iterator[tuple[str, bytes]]:
        yield from self._db.execute("SELECT address, value FROM state ORDER BY address")

    # -- writing a block ----------------------------------------------------------------------
    def commit_block(self, write: BlockWrite) -> None:
        num = write.block.block_num
        sets = [(a, v) for a, v in write.state_changes.items() if v is not None]
        deletes = [(a,) for a, v in write.state_changes.items() if v is None]
        with self._transaction():
            self._db.execute(
                "INSERT INTO blocks (num, block_id, block, accumulator) VALUES (?, ?, ?, ?)",
                (num, write.block.block_id, write.block.raw, StateRoot.encode(write.block.accumulator)),
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO batches (batch_id, status, block_num, invalid) VALUES (?, ?, ?, NULL)",
                [(batch_id, ClientBatchStatus.COMMITTED, num) for batch_id in write.batch_ids],
            )
            self._db.executemany(
                "INSERT INTO transactions (txn_id, block_num, batch_id) VALUES (?, ?, ?)",
                [(txn_id, num, batch_id) for txn_id, batch_id in write.transactions],
            )
            self._db.executemany(
                "INSERT INTO receipts (block_num, seq, txn_id, receipt) VALUES (?, ?, ?, ?)",
                [(num, seq, txn_id, blob) for seq, (txn_id, blob) in enumerate(write.receipts)],
            )
            if sets:
                self._db.executemany("INSERT OR REPLACE INTO state (address, value) VALUES (?, ?)", sets)
            if deletes:
                self._db.executemany("DELETE FROM state WHERE address = ?", deletes)
            self._write_invalid(write.invalid_batches)

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
