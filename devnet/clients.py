"""Client batch requests on the component endpoint: submit (checked in slices) and status (with wait).

Statuses follow the validator's batch tracker: PENDING while queued or in the candidate block,
COMMITTED, INVALID with the failing transaction and the TP's message, UNKNOWN otherwise. A status
request with ``wait`` is answered once none of its batches is PENDING or its timeout passes.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError
from sawtooth_sdk.protobuf.client_batch_submit_pb2 import (
    ClientBatchStatus,
    ClientBatchStatusRequest,
    ClientBatchStatusResponse,
    ClientBatchSubmitResponse,
)
from sawtooth_sdk.protobuf.validator_pb2 import Message

from trustmesh.devnet import wire
from trustmesh.devnet.checks import BatchRejected, CheckedBatch, check_batch
from trustmesh.devnet.publisher import Publisher
from trustmesh.devnet.queries import ID_RE
from trustmesh.devnet.store import ChainStore

LOGGER = logging.getLogger(__name__)

DEFAULT_WAIT = 300
MAX_QUEUE = 20_000
"""Pending batches beyond which a submit is answered QUEUE_FULL (back pressure)."""

Response = tuple[int, bytes]


@dataclass
class _SubmitJob:
    identity: bytes
    correlation_id: str
    content: bytes
    encoded: list[bytes] | None = None
    index: int = 0
    accepted: list[CheckedBatch] = field(default_factory=list)
    seen_batches: set[str] = field(default_factory=set)
    seen_txns: set[str] = field(default_factory=set)


@dataclass
class _Waiter:
    identity: bytes
    correlation_id: str
    batch_ids: list[str]
    deadline: float
    done: bool = field(default=False)


class ClientHandlers:
    """Answers client requests; a batch-status request with ``wait`` is answered later."""

    def __init__(
        self,
        *,
        store: ChainStore,
        publisher: Publisher,
        answer: Callable[[bytes, str, int, bytes], None],
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._answer = answer
        self._waiters: dict[str, list[_Waiter]] = {}
        self._waiting: list[_Waiter] = []
        self._submits: deque[_SubmitJob] = deque()

    # -- batches ----------------------------------------------------------------------------------
    def enqueue_submit(self, identity: bytes, correlation_id: str, content: bytes) -> None:
        """Queue a batch submit; :meth:`work_submits` checks it (signatures are the costly part)."""
        self._submits.append(_SubmitJob(identity=identity, correlation_id=correlation_id, content=content))

    @property
    def has_submits(self) -> bool:
        return bool(self._submits)

    def work_submits(self, deadline: float) -> None:
        """Check queued submits in order, batch by batch, until done or ``deadline`` (monotonic) passes.

        Slicing keeps TP state requests answered promptly while large submits are verified; the
        answer to a submit goes out once all its batches are checked.
        """
        while self._submits:
            job = self._submits[0]
            status = self._advance_job(job, deadline)
            if status is None:
                return
            self._submits.popleft()
            if status == ClientBatchSubmitResponse.OK:
                for checked in job.accepted:
                    self._publisher.add(checked)
            self._answer(
                job.identity,
                job.correlation_id,
                Message.CLIENT_BATCH_SUBMIT_RESPONSE,
                ClientBatchSubmitResponse(status=status).SerializeToString(),
            )
            if time.monotonic() >= deadline:
                return

    def _advance_job(self, job: _SubmitJob, deadline: float) -> int | None:
        """Check more of ``job``'s batches; its final status, or None if time ran out first."""
        if job.encoded is None:
            try:
                job.encoded = wire.split_submit_request(job.content)
            except wire.WireError:
                return ClientBatchSubmitResponse.INTERNAL_ERROR
            if self._publisher.queue_length + len(job.encoded) > MAX_QUEUE:
                return ClientBatchSubmitResponse.QUEUE_FULL
        try:
            while job.index < len(job.encoded):
                if job.index and time.monotonic() >= deadline:
                    return None
                checked = check_batch(job.encoded[job.index])
                job.index += 1
                if checked.batch_id in job.seen_batches or self._already_known(checked.batch_id):
                    continue  # a batch submitted again is not queued twice
                txn_ids = [t.txn_id for t in checked.transactions]
                if job.seen_txns.intersection(txn_ids) or any(self._publisher.is_pending_txn(t) for t in txn_ids):
                    raise BatchRejected(f"batch {checked.batch_id[:16]} repeats a pending transaction id")
                if self._store.committed_transactions(txn_ids):
                    raise BatchRejected(f"batch {checked.batch_id[:16]} repeats a committed transaction id")
                job.seen_batches.add(checked.batch_id)
                job.seen_txns.update(txn_ids)
                job.accepted.append(checked)
        except BatchRejected as exc:
            LOGGER.info("refused a batch at submit: %s", exc)
            return ClientBatchSubmitResponse.INVALID_BATCH
        return ClientBatchSubmitResponse.OK

    def _already_known(self, batch_id: str) -> bool:
        if self._publisher.is_pending(batch_id):
            return True
        outcome = self._store.batch_outcome(batch_id)
        return outcome is not None and outcome[0] == ClientBatchStatus.COMMITTED

    def _status(self, batch_id: str) -> bytes:
        """The encoded ``ClientBatchStatus`` of one batch (an INVALID one as recorded, with its reason)."""
        if self._publisher.is_pending(batch_id):
            return wire.encode_batch_status(batch_id, ClientBatchStatus.PENDING)
        outcome = self._store.batch_outcome(batch_id)
        if outcome is None:
            return wire.encode_batch_status(batch_id, ClientBatchStatus.UNKNOWN)
        status, blob = outcome
        if status == ClientBatchStatus.INVALID and blob:
            return blob
        return wire.encode_batch_status(batch_id, status)

    def _statuses_response(self, batch_ids: list[str]) -> bytes:
        if not batch_ids:
            return ClientBatchStatusResponse(status=ClientBatchStatusResponse.NO_RESOURCE).SerializeToString()
        return wire.encode_batch_status_response(ClientBatchStatusResponse.OK, [self._status(b) for b in batch_ids])

    def batch_status(self, identity: bytes, correlation_id: str, content: bytes) -> Response | None:
        """The response now, or None when it will be sent once the batches settle or time runs out."""
        kind = Message.CLIENT_BATCH_STATUS_RESPONSE
        request = ClientBatchStatusRequest()
        try:
            request.ParseFromString(content)
        except DecodeError:
            return kind, ClientBatchStatusResponse(status=ClientBatchStatusResponse.INTERNAL_ERROR).SerializeToString()
        ids = list(request.batch_ids)
        if any(not ID_RE.match(b) for b in ids):
            return kind, ClientBatchStatusResponse(status=ClientBatchStatusResponse.INVALID_ID).SerializeToString()
        if request.wait and any(self._publisher.is_pending(b) for b in ids):
            waiter = _Waiter(
                identity=identity,
                correlation_id=correlation_id,
                batch_ids=ids,
                deadline=time.monotonic() + (request.timeout or DEFAULT_WAIT),
            )
            self._waiting.append(waiter)
            for batch_id in ids:
                self._waiters.setdefault(batch_id, []).append(waiter)
            return None
        return kind, self._statuses_response(ids)

    def on_resolved(self, batch_ids: list[str]) -> None:
        """Batches left PENDING: answer the waiters that now have no pending batch."""
        touched: list[_Waiter] = []
        for batch_id in batch_ids:
            touched.extend(self._waiters.pop(batch_id, []))
        for waiter in touched:
            if not waiter.done and not any(self._publisher.is_pending(b) for b in waiter.batch_ids):
                self._finish(waiter)

    def expire(self, now: float) -> None:
        if not self._waiting:
            return
        for waiter in self._waiting:
            if not waiter.done and waiter.deadline <= now:
                self._finish(waiter)
        self._waiting = [w for w in self._waiting if not w.done]

    @property
    def has_waiters(self) -> bool:
        return bool(self._waiting)

    def _finish(self, waiter: _Waiter) -> None:
        waiter.done = True
        self._answer(
            waiter.identity,
            waiter.correlation_id,
            Message.CLIENT_BATCH_STATUS_RESPONSE,
            self._statuses_response(waiter.batch_ids),
        )
        for batch_id in waiter.batch_ids:
            others = self._waiters.get(batch_id)
            if others and waiter in others:
                others.remove(waiter)
                if not others:
                    del self._waiters[batch_id]
