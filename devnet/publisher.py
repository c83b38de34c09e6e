"""Builds, executes and commits blocks, as a Sawtooth 1.2 validator's publisher does on one node.

A block starts as soon as a batch is pending and keeps taking pending batches (in submit order)
until it holds ``max_batches`` or ``accept_window`` seconds have passed; it is finalized once every
batch in it is resolved. A block whose user batches are all invalid is not published: their
INVALID outcomes are recorded and block time does not move. A batch whose dependencies are not
yet committed waits for a later block.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from sawtooth_sdk.protobuf.block_pb2 import BlockHeader
from sawtooth_sdk.protobuf.client_batch_submit_pb2 import ClientBatchStatus
from sawtooth_signing import Signer

from trustmesh.devnet import injector, wire
from trustmesh.devnet.checks import CheckedBatch
from trustmesh.devnet.execution import (
    AccessSet,
    BatchRun,
    CandidateBlock,
    InvalidInfo,
    RunState,
    bad_namespace,
)
from trustmesh.devnet.executor import Executor, Outcome
from trustmesh.devnet.state_root import StateRoot
from trustmesh.devnet.store import BlockWrite, ChainStore, StoredBlock

LOGGER = logging.getLogger(__name__)

GENESIS_PREVIOUS_ID = "0000000000000000"
CONSENSUS = b"Devmode"


@dataclass(frozen=True)
class Committed:
    """What observers learn about a newly committed block."""

    block: StoredBlock
    receipts: list[bytes]  # encoded TransactionReceipts, in block order


class Publisher:
    """Owns the pending queue, the candidate block and the chain head."""

    def __init__(
        self,
        *,
        store: ChainStore,
        signer: Signer,
        max_batches: int,
        accept_window: float = 0.5,
        on_resolved: Callable[[list[str]], None],
        on_committed: Callable[[Committed], None],
    ) -> None:
        self._store = store
        self._signer = signer
        self._public_key = signer.get_public_key().as_hex()
        self._max_batches = max(1, max_batches)
        self._accept_window = accept_window
        self._on_resolved = on_resolved
        self._on_committed = on_committed
        self.executor: Executor | None = None
        self._queue: deque[CheckedBatch] = deque()
        self._deferred: list[CheckedBatch] = []
        self._pending: dict[str, CheckedBatch] = {}
        self._pending_txns: set[str] = set()
        self._block: CandidateBlock | None = None
        self._reschedule = False
        self._unresolved = 0
        head = store.head()
        self.head: StoredBlock = head if head is not None else self._genesis()
        self._last_timestamp = injector.last_timestamp(store.get)

    # -- the queue ------------------------------------------------------------------------------
    def is_pending(self, batch_id: str) -> bool:
        return batch_id in self._pending

    def is_pending_txn(self, txn_id: str) -> bool:
        return txn_id in self._pending_txns

    @property
    def queue_length(self) -> int:
        return len(self._pending)

    @property
    def working(self) -> bool:
        return self._block is not None or bool(self._queue)

    def add(self, checked: CheckedBatch) -> None:
        self._pending[checked.batch_id] = checked
        self._pending_txns.update(t.txn_id for t in checked.transactions)
        self._queue.append(checked)

    # -- the loop's step ------------------------------------------------------------------------
    def advance(self, now: float | None = None) -> None:
        """Start, feed, schedule and finalize blocks as far as possible without waiting."""
        now = time.monotonic() if now is None else now
        while True:
            if self._block is None:
                if not self._queue:
                    return
                self._block = self._start_block(now)
                self._unresolved = 0
            block = self._block
            if block.accepting:
                if self._queue and len(block.runs) < self._max_batches:
                    self._take_pending(block)
                if len(block.runs) >= self._max_batches or now - block.started >= self._accept_window:
                    block.accepting = False
            if not block.runs:
                # every queued batch waits on a dependency: nothing to build yet
                self._block = None
                return
            if self._reschedule:
                self._reschedule = False
                self._schedule(block)
            if self._unresolved:
                return
            self._finalize(block)
            self._block = None

    def _take_pending(self, block: CandidateBlock) -> None:
        while self._queue and len(block.runs) < self._max_batches:
            checked = self._queue.popleft()
            deps = checked.dependencies
            if deps and len(self._store.committed_transactions(deps)) < len(set(deps)):
                self._deferred.append(checked)
                continue
            block.runs.append(BatchRun.of(checked))
            self._unresolved += 1
            self._reschedule = True

    def _schedule(self, block: CandidateBlock) -> None:
        """Start every waiting batch that no earlier unresolved batch conflicts with."""
        earlier_reads, earlier_writes = AccessSet(), AccessSet()
        for run in block.runs:
            if run.resolved:
                continue
            if run.state is RunState.WAITING and not (
                earlier_writes.overlaps(run.reads)
                or earlier_writes.overlaps(run.writes)
                or earlier_reads.overlaps(run.writes)
            ):
                run.state = RunState.RUNNING
                self._run_next(block, run)
                if run.resolved:
                    continue
            earlier_reads.merge(run.reads)
            earlier_writes.merge(run.writes)

    def _run_next(self, block: CandidateBlock, run: BatchRun) -> None:
        assert self.executor is not None
        problem = bad_namespace(run.current)
        if problem is not None:
            run.reject(InvalidInfo(txn_id=run.current.txn_id, message=problem))
            self._resolved()
            return
        self.executor.execute(run, block.reader_for(run, self._store.get))

    def on_outcome(self, outcome: Outcome) -> None:
        """A transaction finished: keep its writes and go on, or fail its batch."""
        block = self._block
        run = outcome.run
        if block is None or run.resolved:
            return
        if not outcome.valid:
            txn_id = outcome.context.txn.txn_id
            LOGGER.info("batch %s invalid: transaction %s: %s", run.checked.batch_id[:16], txn_id[:16], outcome.message)
            run.reject(InvalidInfo(txn_id=txn_id, message=outcome.message, extended_data=outcome.extended_data))
            self._resolved()
            return
        if run.accept(outcome.context):
            block.merge(run)
            self._resolved()
        else:
            self._run_next(block, run)

    def _resolved(self) -> None:
        self._unresolved -= 1
        self._reschedule = True

    # -- blocks ---------------------------------------------------------------------------------
    def _genesis(self) -> StoredBlock:
        accumulator = StateRoot.EMPTY
        header = BlockHeader(
            block_num=0,
            previous_block_id=GENESIS_PREVIOUS_ID,
            signer_public_key=self._public_key,
            consensus=b"Genesis",
            state_root_hash=StateRoot.root_hash(accumulator),
        )
        genesis = self._signed_block(header, [], accumulator)
        self._store.commit_block(
            BlockWrite(block=genesis, batch_ids=[], state_changes={}, transactions=[], receipts=[], invalid_batches=[])
        )
        LOGGER.info("created genesis block %s", genesis.block_id[:16])
        return genesis

    def _signed_block(self, header: BlockHeader, batches: list[bytes], accumulator: int) -> StoredBlock:
        header_bytes = header.SerializeToString()
        block_id = self._signer.sign(header_bytes)
        raw = wire.encode_block(header_bytes, block_id, batches)
        return StoredBlock(raw=raw, header=header, block_id=block_id, accumulator=accumulator)

    def _start_block(self, now: float) -> CandidateBlock:
        timestamp = max(int(time.time()), self._last_timestamp)
        info = injector.block_info_for(self.head.header, self.head.block_id, timestamp=timestamp)
        return CandidateBlock(
            block_num=self.head.block_num + 1,
            previous_block_id=self.head.block_id,
            timestamp=timestamp,
            started=now,
            info=info,
            info_writes=injector.block_info_writes(info, self._store.get),
        )

    def _finalize(self, block: CandidateBlock) -> None:
        valid = block.valid_runs
        invalid = [
            (run.checked.batch_id, _invalid_status(run.checked.batch_id, run.invalid))
            for run in block.runs
            if run.state is RunState.INVALID
        ]
        resolved = [run.checked.batch_id for run in block.runs]
        if not valid:
            LOGGER.info("block %d not published: all %d batches invalid", block.block_num, len(block.runs))
            self._store.record_invalid(invalid)
            self._release(block)
            self._on_resolved(resolved)
            return
        injected = injector.injected_batch(block.info, self._signer)
        injected_txn = injected.transactions[0].header_signature
        receipts = [(injected_txn, wire.encode_receipt(transaction_id=injected_txn, changes=block.info_writes.items()))]
        transactions = [(injected_txn, injected.header_signature)]
        for run in valid:
            receipts.extend(zip((t.txn_id for t in run.checked.transactions), run.receipts, strict=True))
            transactions.extend((t.txn_id, run.checked.batch_id) for t in run.checked.transactions)
        previous = self._store.get_many(block.overlay.keys())
        accumulator = StateRoot.update(self.head.accumulator, old=previous, new=block.overlay)
        batch_ids = [injected.header_signature] + [run.checked.batch_id for run in valid]
        header = BlockHeader(
            block_num=block.block_num,
            previous_block_id=block.previous_block_id,
            signer_public_key=self._public_key,
            batch_ids=batch_ids,
            consensus=CONSENSUS,
            state_root_hash=StateRoot.root_hash(accumulator),
        )
        stored = self._signed_block(
            header, [injected.SerializeToString()] + [run.checked.raw for run in valid], accumulator
        )
        self._store.commit_block(
            BlockWrite(
                block=stored,
                batch_ids=batch_ids,
                state_changes=block.overlay,
                transactions=transactions,
                receipts=receipts,
                invalid_batches=invalid,
            )
        )
        self.head = stored
        self._last_timestamp = block.timestamp
        LOGGER.info(
            "committed block %d %s: %d batches, %d invalid",
            block.block_num, stored.block_id[:16], len(valid), len(invalid),
        )
        self._release(block)
        if self._deferred:
            self._queue.extendleft(reversed(self._deferred))
            self._deferred.clear()
        self._on_resolved(resolved)
        self._on_committed(Committed(block=stored, receipts=[blob for _, blob in receipts]))

    def _release(self, block: CandidateBlock) -> None:
        for run in block.runs:
            self._pending.pop(run.checked.batch_id, None)
            self._pending_txns.difference_update(t.txn_id for t in run.checked.transactions)


def _invalid_status(batch_id: str, info: InvalidInfo | None) -> bytes:
    status = ClientBatchStatus(batch_id=batch_id, status=ClientBatchStatus.INVALID)
    if info is not None:
        status.invalid_transactions.add(
            transaction_id=info.txn_id, message=info.message, extended_data=info.extended_data
        )
    return status.SerializeToString()
