"""Client requests on the component endpoint: batch submit and status, state, blocks, receipts.

Statuses, paging limits and error codes follow the validator's client handlers: state and block
lists page 100 entries by default (at most 1000), an empty result is NO_RESOURCE, ids must be 128
hex digits, addresses and prefixes an even number of hex digits (at most 70). State is served at
the head only: any other state root is NO_ROOT.
"""
from __future__ import annotations

import logging
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError
from sawtooth_sdk.protobuf.client_batch_pb2 import ClientBatchGetRequest, ClientBatchGetResponse
from sawtooth_sdk.protobuf.client_batch_submit_pb2 import (
    ClientBatchStatus,
    ClientBatchStatusRequest,
    ClientBatchStatusResponse,
    ClientBatchSubmitResponse,
)
from sawtooth_sdk.protobuf.client_block_pb2 import (
    ClientBlockGetByBatchIdRequest,
    ClientBlockGetByIdRequest,
    ClientBlockGetByNumRequest,
    ClientBlockGetByTransactionIdRequest,
    ClientBlockGetResponse,
    ClientBlockListRequest,
    ClientBlockListResponse,
)
from sawtooth_sdk.protobuf.client_list_control_pb2 import ClientPagingResponse
from sawtooth_sdk.protobuf.client_receipt_pb2 import ClientReceiptGetRequest, ClientReceiptGetResponse
from sawtooth_sdk.protobuf.client_state_pb2 import (
    ClientStateGetRequest,
    ClientStateGetResponse,
    ClientStateListRequest,
    ClientStateListResponse,
)
from sawtooth_sdk.protobuf.client_status_pb2 import ClientStatusGetResponse
from sawtooth_sdk.protobuf.client_transaction_pb2 import (
    ClientTransactionGetRequest,
    ClientTransactionGetResponse,
)
from sawtooth_sdk.protobuf.transaction_receipt_pb2 import TransactionReceipt
from sawtooth_sdk.protobuf.validator_pb2 import Message

from trustmesh.devnet import wire
from trustmesh.devnet.checks import BatchRejected, CheckedBatch, check_batch
from trustmesh.devnet.publisher import Publisher
from trustmesh.devnet.store import ChainStore, StoredBlock

LOGGER = logging.getLogger(__name__)

DEFAULT_WAIT = 300
DEFAULT_PAGE = 100
MAX_PAGE = 1000
MAX_QUEUE = 20_000
"""Pending batches beyond which a submit is answered QUEUE_FULL (back pressure)."""

_ID_RE = re.compile(r"^[0-9a-f]{128}$")
_NAMESPACE_RE = re.compile(r"^([0-9a-f]{2}){0,35}$")

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
        endpoint: str,
        answer: Callable[[bytes, str, int, bytes], None],
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._endpoint = endpoint
        self._answer = answer
        self._waiters: dict[str, list[_Waiter]] = {}
        self._waiting: list[_Waiter] = []
        self._submits: deque[_SubmitJob] = deque()

    @property
    def _head(self) -> StoredBlock:
        return self._publisher.head

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

    def _status(self, batch_id: str) -> ClientBatchStatus:
        if self._publisher.is_pending(batch_id):
            return ClientBatchStatus(batch_id=batch_id, status=ClientBatchStatus.PENDING)
        outcome = self._store.batch_outcome(batch_id)
        if outcome is None:
            return ClientBatchStatus(batch_id=batch_id, status=ClientBatchStatus.UNKNOWN)
        status, blob = outcome
        result = ClientBatchStatus()
        if status == ClientBatchStatus.INVALID and blob:
            result.ParseFromString(blob)
        result.batch_id = batch_id
        result.status = status
        return result

    def _statuses_response(self, batch_ids: list[str]) -> bytes:
        statuses = [self._status(b) for b in batch_ids]
        if not statuses:
            return ClientBatchStatusResponse(status=ClientBatchStatusResponse.NO_RESOURCE).SerializeToString()
        return ClientBatchStatusResponse(
            status=ClientBatchStatusResponse.OK, batch_statuses=statuses
        ).SerializeToString()

    def batch_status(self, identity: bytes, correlation_id: str, content: bytes) -> Response | None:
        """The response now, or None when it will be sent once the batches settle or time runs out."""
        kind = Message.CLIENT_BATCH_STATUS_RESPONSE
        request = ClientBatchStatusRequest()
        try:
            request.ParseFromString(content)
        except DecodeError:
            return kind, ClientBatchStatusResponse(status=ClientBatchStatusResponse.INTERNAL_ERROR).SerializeToString()
        ids = list(request.batch_ids)
        if any(not _ID_RE.match(b) for b in ids):
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

    # -- state ------------------------------------------------------------------------------------
    def _root_ok(self, state_root: str) -> bool:
        return not state_root or state_root == self._head.header.state_root_hash

    def state_get(self, content: bytes) -> Response:
        kind, proto = Message.CLIENT_STATE_GET_RESPONSE, ClientStateGetResponse
        request = ClientStateGetRequest()
        try:
            request.ParseFromString(content)
        except DecodeError:
            return kind, proto(status=proto.INTERNAL_ERROR).SerializeToString()
        if request.state_root and not re.fullmatch(r"[0-9a-f]{64}", request.state_root):
            return kind, proto(status=proto.INVALID_ROOT).SerializeToString()
        if not self._root_ok(request.state_root):
            return kind, proto(status=proto.NO_ROOT).SerializeToString()
        root = self._head.header.state_root_hash
        if not _NAMESPACE_RE.match(request.address) or len(request.address) != 70:
            return kind, proto(status=proto.INVALID_ADDRESS).SerializeToString()
        value = self._store.get(request.address)
        if value is None:
            return kind, proto(status=proto.NO_RESOURCE).SerializeToString()
        return kind, proto(status=proto.OK, value=value, state_root=root).SerializeToString()

    def state_list(self, content: bytes) -> Response:
        kind, proto = Message.CLIENT_STATE_LIST_RESPONSE, ClientStateListResponse
        request = ClientStateListRequest()
        try:
            request.ParseFromString(content)
        except DecodeError:
            return kind, proto(status=proto.INTERNAL_ERROR).SerializeToString()
        if request.state_root and not re.fullmatch(r"[0-9a-f]{64}", request.state_root):
            return kind, proto(status=proto.INVALID_ROOT).SerializeToString()
        if not self._root_ok(request.state_root):
            return kind, proto(status=proto.NO_ROOT).SerializeToString()
        root = self._head.header.state_root_hash
        if not _NAMESPACE_RE.match(request.address):
            return kind, proto(status=proto.INVALID_ADDRESS).SerializeToString()
        if request.sorting and (list(request.sorting[0].keys) != ["default"] or request.sorting[0].reverse):
            return kind, proto(status=proto.INVALID_SORT).SerializeToString()
        limit = min(request.paging.limit, MAX_PAGE) or DEFAULT_PAGE
        start = request.paging.start
        if start and (not start.startswith(request.address) or not self._store.state_exists(start)):
            return kind, proto(status=proto.INVALID_PAGING).SerializeToString()
        rows = self._store.list_state(prefix=request.address, start=start, limit=limit + 1)
        if not rows:
            return kind, proto(status=proto.NO_RESOURCE, state_root=root,
                               paging=ClientPagingResponse()).SerializeToString()
        paging = ClientPagingResponse(start=rows[0][0], limit=limit)
        if len(rows) > limit:
            paging.next = rows[limit][0]
        entries = [ClientStateListResponse.Entry(address=a, data=v) for a, v in rows[:limit]]
        return kind, proto(status=proto.OK, entries=entries, state_root=root, paging=paging).SerializeToString()

    # -- blocks, batches, transactions, receipts --------------------------------------------------
    def _block_response(self, stored: StoredBlock | None) -> Response:
        proto = ClientBlockGetResponse
        if stored is None:
            return Message.CLIENT_BLOCK_GET_RESPONSE, proto(status=proto.NO_RESOURCE).SerializeToString()
        # status OK (field 1) + the stored block bytes as field 2: no re-encoding of the block
        return Message.CLIENT_BLOCK_GET_RESPONSE, wire.varint(1 << 3) + wire.varint(proto.OK) + wire.bytes_field(
            2, stored.raw
        )

    def block_get(self, message_type: int, content: bytes) -> Response:
        proto = ClientBlockGetResponse
        try:
            if message_type == Message.CLIENT_BLOCK_GET_BY_NUM_REQUEST:
                by_num = ClientBlockGetByNumRequest.FromString(content)
                return self._block_response(self._store.block_by_num(by_num.block_num))
            if message_type == Message.CLIENT_BLOCK_GET_BY_ID_REQUEST:
                block_id = ClientBlockGetByIdRequest.FromString(content).block_id
                num = self._store.block_num_of(block_id) if _ID_RE.match(block_id) else -2
            elif message_type == Message.CLIENT_BLOCK_GET_BY_BATCH_ID_REQUEST:
                batch_id = ClientBlockGetByBatchIdRequest.FromString(content).batch_id
                num = self._store.block_num_of_batch(batch_id) if _ID_RE.match(batch_id) else -2
            else:
                txn_id = ClientBlockGetByTransactionIdRequest.FromString(content).transaction_id
                num = self._store.block_num_of_transaction(txn_id) if _ID_RE.match(txn_id) else -2
        except DecodeError:
            return Message.CLIENT_BLOCK_GET_RESPONSE, proto(status=proto.INTERNAL_ERROR).SerializeToString()
        if num == -2:
            return Message.CLIENT_BLOCK_GET_RESPONSE, proto(status=proto.INVALID_ID).SerializeToString()
        return self._block_response(None if num is None else self._store.block_by_num(num))

    def block_list(self, content: bytes) -> Response:
        kind, proto = Message.CLIENT_BLOCK_LIST_RESPONSE, ClientBlockListResponse
        try:
            request = ClientBlockListRequest.FromString(content)
        except DecodeError:
            return kind, proto(status=proto.INTERNAL_ERROR).SerializeToString()
        head = self._head
        if request.head_id and request.head_id != head.block_id:
            num = self._store.block_num_of(request.head_id)
            if num is None:
                return kind, proto(status=proto.NO_ROOT).SerializeToString()
            top = num
        else:
            top = head.block_num
        head_id = request.head_id or head.block_id
        if request.block_ids:
            if any(not _ID_RE.match(b) for b in request.block_ids):
                return kind, proto(status=proto.INVALID_ID).SerializeToString()
            found = [self._store.block_by_id(b) for b in request.block_ids]
            blocks = [s.block for s in found if s is not None and s.block_num <= top]
            status = proto.OK if blocks else proto.NO_RESOURCE
            return kind, proto(status=status, blocks=blocks, head_id=head_id,
                               paging=ClientPagingResponse()).SerializeToString()
        reverse = False
        if request.sorting:
            if list(request.sorting[0].keys) != ["block_num"]:
                return kind, proto(status=proto.INVALID_SORT).SerializeToString()
            reverse = request.sorting[0].reverse
        limit = min(request.paging.limit, MAX_PAGE) or DEFAULT_PAGE
        if request.paging.start:
            try:
                start = int(request.paging.start, 16)
            except ValueError:
                return kind, proto(status=proto.INVALID_PAGING).SerializeToString()
            if start > top or start < 0:
                return kind, proto(status=proto.INVALID_PAGING).SerializeToString()
        else:
            start = 0 if reverse else top
        if reverse:
            rows = [s for s in self._store.blocks_ascending(start_num=start, limit=limit + 1) if s.block_num <= top]
        else:
            rows = self._store.blocks_descending(start_num=start, limit=limit + 1)
        if not rows:
            return kind, proto(status=proto.NO_RESOURCE, head_id=head_id).SerializeToString()
        paging = ClientPagingResponse(start=_hex_num(rows[0].block_num), limit=limit)
        if len(rows) > limit:
            paging.next = _hex_num(rows[limit].block_num)
        return kind, proto(status=proto.OK, blocks=[s.block for s in rows[:limit]], head_id=head_id,
                           paging=paging).SerializeToString()

    def batch_get(self, content: bytes) -> Response:
        kind, proto = Message.CLIENT_BATCH_GET_RESPONSE, ClientBatchGetResponse
        try:
            batch_id = ClientBatchGetRequest.FromString(content).batch_id
        except DecodeError:
            return kind, proto(status=proto.INTERNAL_ERROR).SerializeToString()
        if not _ID_RE.match(batch_id):
            return kind, proto(status=proto.INVALID_ID).SerializeToString()
        num = self._store.block_num_of_batch(batch_id)
        stored = self._store.block_by_num(num) if num is not None else None
        for batch in stored.block.batches if stored else []:
            if batch.header_signature == batch_id:
                return kind, proto(status=proto.OK, batch=batch).SerializeToString()
        return kind, proto(status=proto.NO_RESOURCE).SerializeToString()

    def transaction_get(self, content: bytes) -> Response:
        kind, proto = Message.CLIENT_TRANSACTION_GET_RESPONSE, ClientTransactionGetResponse
        try:
            txn_id = ClientTransactionGetRequest.FromString(content).transaction_id
        except DecodeError:
            return kind, proto(status=proto.INTERNAL_ERROR).SerializeToString()
        if not _ID_RE.match(txn_id):
            return kind, proto(status=proto.INVALID_ID).SerializeToString()
        num = self._store.block_num_of_transaction(txn_id)
        stored = self._store.block_by_num(num) if num is not None else None
        for batch in stored.block.batches if stored else []:
            for txn in batch.transactions:
                if txn.header_signature == txn_id:
                    return kind, proto(status=proto.OK, transaction=txn).SerializeToString()
        return kind, proto(status=proto.NO_RESOURCE).SerializeToString()

    def receipt_get(self, content: bytes) -> Response:
        kind, proto = Message.CLIENT_RECEIPT_GET_RESPONSE, ClientReceiptGetResponse
        try:
            ids = list(ClientReceiptGetRequest.FromString(content).transaction_ids)
        except DecodeError:
            return kind, proto(status=proto.INTERNAL_ERROR).SerializeToString()
        if any(not _ID_RE.match(t) for t in ids):
            return kind, proto(status=proto.INVALID_ID).SerializeToString()
        receipts = []
        for txn_id in ids:
            blob = self._store.receipt(txn_id)
            if blob is None:
                return kind, proto(status=proto.NO_RESOURCE).SerializeToString()
            receipts.append(TransactionReceipt.FromString(blob))
        return kind, proto(status=proto.OK, receipts=receipts).SerializeToString()

    def status_get(self) -> Response:
        response = ClientStatusGetResponse(status=ClientStatusGetResponse.OK, endpoint=self._endpoint)
        return Message.CLIENT_STATUS_GET_RESPONSE, response.SerializeToString()


def _hex_num(block_num: int) -> str:
    return f"0x{block_num:016x}"
