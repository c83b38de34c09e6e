"""Candidate blocks, batch runs and transaction contexts: the execution model, without I/O.

Batches of a block run in parallel where their declared inputs/outputs allow (as Sawtooth's
parallel scheduler does): a batch starts once no earlier unresolved batch of the block writes
what it reads or writes, or reads what it writes. Inside a batch, transactions run in order. A
transaction reads and writes through a context limited to its declared inputs and outputs; a
batch's writes stay in its own overlay until every transaction of it is valid, and only then join
the block's overlay, so an invalid batch leaves nothing behind.
"""
from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sawtooth_sdk.protobuf.block_info_pb2 import BlockInfo

from trustmesh.devnet import wire
from trustmesh.devnet.checks import CheckedBatch, CheckedTransaction

ADDRESS_RE = re.compile(r"^[0-9a-f]{70}$")
NAMESPACE_RE = re.compile(r"^([0-9a-f]{2}){0,35}$")

Reader = Callable[[str], "bytes | None"]


class AuthorizationError(Exception):
    """A context access outside the transaction's declared inputs/outputs (or not an address)."""


class AccessSet:
    """A set of address prefixes with a fast overlap test (full addresses hash; short ones scan)."""

    __slots__ = ("full", "short")

    def __init__(self, prefixes: Iterable[str] = ()) -> None:
        self.full: set[str] = set()
        self.short: list[str] = []
        self.add_all(prefixes)

    def add_all(self, prefixes: Iterable[str]) -> None:
        for prefix in prefixes:
            if len(prefix) >= 70:
                self.full.add(prefix)
            elif prefix not in self.short:
                self.short.append(prefix)

    def merge(self, other: AccessSet) -> None:
        self.full |= other.full
        for prefix in other.short:
            if prefix not in self.short:
                self.short.append(prefix)

    def overlaps(self, other: AccessSet) -> bool:
        """True if some prefix here and some prefix there name a common address."""
        if not self.full.isdisjoint(other.full):
            return True
        for mine in self.short:
            if any(a.startswith(mine) for a in other.full) or any(
                o.startswith(mine) or mine.startswith(o) for o in other.short
            ):
                return True
        for theirs in other.short:
            if any(a.startswith(theirs) for a in self.full):
                return True
        return False


class TxnContext:
    """The state view of one transaction attempt: reads through ``reader``, writes kept here."""

    def __init__(self, *, txn: CheckedTransaction, reader: Reader) -> None:
        self.context_id = uuid.uuid4().hex
        self.txn = txn
        self._inputs = tuple(txn.header.inputs)
        self._outputs = tuple(txn.header.outputs)
        self._reader = reader
        self.writes: dict[str, bytes | None] = {}
        self.events: list[bytes] = []  # encoded Events, as the TP sent them
        self.data: list[bytes] = []

    def _check(self, address: str, allowed: tuple[str, ...]) -> None:
        if not ADDRESS_RE.match(address) or not any(address.startswith(p) for p in allowed):
            raise AuthorizationError(address)

    def get(self, addresses: Iterable[str]) -> list[tuple[str, bytes | None]]:
        wanted = list(addresses)
        for address in wanted:
            self._check(address, self._inputs)
        return [(a, self.writes[a] if a in self.writes else self._reader(a)) for a in wanted]

    def set(self, entries: list[tuple[str, bytes]]) -> None:
        for address, _ in entries:
            self._check(address, self._outputs)
        for address, value in entries:
            self.writes[address] = value

    def delete(self, addresses: list[str]) -> None:
        for address in addresses:
            self._check(address, self._outputs)
        for address in addresses:
            self.writes[address] = None

    def receipt(self) -> bytes:
        """The encoded TransactionReceipt of this attempt."""
        return wire.encode_receipt(
            transaction_id=self.txn.txn_id, changes=self.writes.items(), events=self.events, data=self.data
        )


def bad_namespace(txn: CheckedTransaction) -> str | None:
    """Why this transaction's declared inputs/outputs cannot make a context, or None if they can."""
    for kind, prefixes in (("inputs", txn.header.inputs), ("outputs", txn.header.outputs)):
        for prefix in prefixes:
            if not NAMESPACE_RE.match(prefix):
                return f"address or namespace {prefix!r} listed in {kind} is not valid"
    return None


class RunState(enum.Enum):
    WAITING = "waiting"  # conflicts with an earlier unresolved batch
    RUNNING = "running"
    VALID = "valid"
    INVALID = "invalid"


@dataclass
class InvalidInfo:
    txn_id: str
    message: str
    extended_data: bytes = b""


@dataclass
class BatchRun:
    """One batch's execution inside a candidate block."""

    checked: CheckedBatch
    reads: AccessSet
    writes: AccessSet
    state: RunState = RunState.WAITING
    index: int = 0  # the transaction to run next
    overlay: dict[str, bytes | None] = field(default_factory=dict)
    receipts: list[bytes] = field(default_factory=list)  # encoded TransactionReceipts
    invalid: InvalidInfo | None = None

    @classmethod
    def of(cls, checked: CheckedBatch) -> BatchRun:
        reads, writes = AccessSet(), AccessSet()
        for t in checked.transactions:
            reads.add_all(t.header.inputs)
            writes.add_all(t.header.outputs)
        return cls(checked=checked, reads=reads, writes=writes)

    @property
    def resolved(self) -> bool:
        return self.state in (RunState.VALID, RunState.INVALID)

    @property
    def current(self) -> CheckedTransaction:
        return self.checked.transactions[self.index]

    def conflicts_with(self, earlier: BatchRun) -> bool:
        return earlier.writes.overlaps(self.reads) or earlier.writes.overlaps(self.writes) or (
            earlier.reads.overlaps(self.writes)
        )

    def accept(self, context: TxnContext) -> bool:
        """Keep a valid transaction's writes; True when the whole batch is now valid."""
        self.overlay.update(context.writes)
        self.receipts.append(context.receipt())
        self.index += 1
        if self.index == len(self.checked.transactions):
            self.state = RunState.VALID
            return True
        return False

    def reject(self, info: InvalidInfo) -> None:
        self.state = RunState.INVALID
        self.invalid = info
        self.overlay.clear()
        self.receipts.clear()


@dataclass
class CandidateBlock:
    """The block being built on top of the head: its BlockInfo writes, batch runs and overlay."""

    block_num: int
    previous_block_id: str
    timestamp: int
    started: float  # monotonic time the block started accepting batches
    info: BlockInfo
    info_writes: dict[str, bytes | None]
    runs: list[BatchRun] = field(default_factory=list)
    overlay: dict[str, bytes | None] = field(default_factory=dict)
    accepting: bool = True

    def __post_init__(self) -> None:
        self.overlay.update(self.info_writes)

    def reader_for(self, run: BatchRun, committed: Reader) -> Reader:
        """Reads for ``run``'s transactions: its own overlay, then the block's, then committed state."""
        batch_overlay, block_overlay = run.overlay, self.overlay

        def read(address: str) -> bytes | None:
            if address in batch_overlay:
                return batch_overlay[address]
            if address in block_overlay:
                return block_overlay[address]
            return committed(address)

        return read

    def merge(self, run: BatchRun) -> None:
        self.overlay.update(run.overlay)

    @property
    def all_resolved(self) -> bool:
        return all(run.resolved for run in self.runs)

    @property
    def valid_runs(self) -> list[BatchRun]:
        return [run for run in self.runs if run.state is RunState.VALID]
