"""The ledger client: submit batches, wait for their outcome, read state, follow events.

It speaks the Sawtooth 1.2 validator's client protocol on the component endpoint
(``tcp://host:4004``): the same code drives the embedded devnet and a real network. Several
validator URLs are used round-robin; one that refuses connections is skipped at once, one that
does not answer within the timeout is skipped after it, and either is tried last for a while.
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtoMessage
from sawtooth_sdk.protobuf import client_batch_submit_pb2 as submit_pb2
from sawtooth_sdk.protobuf import client_list_control_pb2, client_state_pb2
from sawtooth_sdk.protobuf.batch_pb2 import Batch
from sawtooth_sdk.protobuf.events_pb2 import EventSubscription
from sawtooth_sdk.protobuf.validator_pb2 import Message
from sawtooth_signing import Signer

from trustmesh.errors import LedgerError, LedgerTimeout, TransactionRejected
from trustmesh.ledger.batch import make_batch, make_transaction
from trustmesh.ledger.transport import Connection, ConnectionLost, ConnectionRefused, normalize_url

if TYPE_CHECKING:
    from trustmesh.ledger.events import Events, EventStream

__all__ = [
    "BatchInvalid",
    "BatchStatus",
    "InvalidTransaction",
    "Ledger",
    "LedgerClient",
    "SubmittedTransaction",
]

DEFAULT_TIMEOUT = 10.0
"""Seconds a validator has to answer one request before the next URL is tried."""

STATE_PAGE_SIZE = 1000
"""Entries per CLIENT_STATE_LIST page (the validator's own maximum)."""

_SUSPECT_SECONDS = 30.0
_QUEUE_FULL_BACKOFF = (0.05, 1.0)

_ClientStatus = submit_pb2.ClientBatchStatus


@dataclass(frozen=True)
class InvalidTransaction:
    """A transaction the processor rejected, with its own reason."""

    transaction_id: str
    message: str
    extended_data: bytes = b""


@dataclass(frozen=True)
class BatchStatus:
    """Where a batch stands: COMMITTED, INVALID, PENDING or UNKNOWN."""

    batch_id: str
    status: str
    invalid_transactions: tuple[InvalidTransaction, ...] = field(default=())

    @property
    def committed(self) -> bool:
        return self.status == "COMMITTED"

    @property
    def settled(self) -> bool:
        """True once the outcome is final (COMMITTED or INVALID)."""
        return self.status in ("COMMITTED", "INVALID")

    @classmethod
    def from_proto(cls, proto: submit_pb2.ClientBatchStatus) -> BatchStatus:
        return cls(
            batch_id=proto.batch_id,
            status=_ClientStatus.Status.Name(proto.status),
            invalid_transactions=tuple(
                InvalidTransaction(
                    transaction_id=txn.transaction_id,
                    message=txn.message,
                    extended_data=bytes(txn.extended_data),
                )
                for txn in proto.invalid_transactions
            ),
        )


@dataclass(frozen=True)
class SubmittedTransaction:
    """One transaction sent in its own batch, and that batch's status."""

    transaction_id: str
    batch_id: str
    status: BatchStatus

    @property
    def committed(self) -> bool:
        return self.status.committed


class BatchInvalid(TransactionRejected):
    """A batch came back INVALID; ``reason`` is the processor's own message. Do not retry as is."""

    def __init__(self, status: BatchStatus) -> None:
        self.status = status
        first = status.invalid_transactions[0] if status.invalid_transactions else None
        self.transaction_id = first.transaction_id if first else ""
        self.reason = (first.message if first else "") or "no reason given"
        self.extended_data = first.extended_data if first else b""
        what = f"transaction {self.transaction_id[:16]}…" if first else f"batch {status.batch_id[:16]}…"
        super().__init__(f"{what} rejected: {self.reason}")


class Ledger(Protocol):
    """What code that uses a ledger needs: :class:`LedgerClient`, or ``MemoryLedger`` in unit tests."""

    def submit(self, batches: Iterable[Batch], *, wait: float | None = ...) -> list[BatchStatus]: ...

    def batch_status(
        self, batch_ids: Sequence[str], *, wait: float | None = ..., prefer_url: str | None = ...
    ) -> list[BatchStatus]: ...

    def submit_transaction(
        self,
        signer: Signer,
        family: str,
        version: str,
        payload: bytes,
        inputs: Sequence[str],
        outputs: Sequence[str],
        *,
        dependencies: Sequence[str] = ...,
        wait: float | None = ...,
    ) -> SubmittedTransaction: ...

    def get_state(self, address: str) -> bytes | None: ...

    def list_state(self, prefix: str = ..., *, page_size: int = ...) -> Iterator[tuple[str, bytes]]: ...

    def subscribe(
        self, subscriptions: Sequence[EventSubscription], *, last_known_block_id: str | None = ...
    ) -> Events: ...

    def close(self) -> None: ...


class SingleTransactions:
    """``submit_transaction`` for any ledger with ``submit``: one signed transaction in its own batch."""

    def submit(self, batches: Iterable[Batch], *, wait: float | None = 30.0) -> list[BatchStatus]:
        raise NotImplementedError

    def submit_transaction(
        self,
        signer: Signer,
        family: str,
        version: str,
        payload: bytes,
        inputs: Sequence[str],
        outputs: Sequence[str],
        *,
        dependencies: Sequence[str] = (),
        wait: float | None = 30.0,
    ) -> SubmittedTransaction:
        """Sign one transaction, send it in its own batch, and wait as :meth:`submit` does."""
        transaction = make_transaction(
            signer,
            family_name=family,
            family_version=version,
            payload=payload,
            inputs=inputs,
            outputs=outputs,
            dependencies=dependencies,
        )
        batch = make_batch(signer, [transaction])
        [status] = self.submit([batch], wait=wait)
        return SubmittedTransaction(
            transaction_id=transaction.header_signature,
            batch_id=batch.header_signature,
            status=status,
        )


class LedgerClient(SingleTransactions):
    """Client of one or more validators' component endpoints. Thread-safe; close it when done."""

    def __init__(self, *, urls: Sequence[str], timeout: float = DEFAULT_TIMEOUT) -> None:
        if isinstance(urls, str):
            urls = [urls]
        if not urls:
            raise LedgerError("no validator URL given")
        if timeout <= 0:
            raise LedgerError("timeout must be positive")
        self.urls: tuple[str, ...] = tuple(normalize_url(url) for url in urls)
        self.timeout = timeout
        self._lock = threading.Lock()
        self._connections: dict[str, Connection] = {}
        self._suspect_until: dict[str, float] = {}
        self._cursor = 0
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections, self._connections = list(self._connections.values()), {}
        for connection in connections:
            connection.close()

    def __enter__(self) -> LedgerClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- batches -------------------------------------------------------------------------------
    def submit(self, batches: Iterable[Batch], *, wait: float | None = 30.0) -> list[BatchStatus]:
        """Submit ``batches`` and, unless ``wait`` is None or 0, wait up to ``wait`` s for them.

        Raises TransactionRejected if the validator refuses them at submit, or if one is INVALID
        (carrying the processor's message). Batches still PENDING after ``wait`` come back as such.
        """
        batches = list(batches)
        if not batches:
            return []
        content = submit_pb2.ClientBatchSubmitRequest(batches=batches).SerializeToString()
        Response = submit_pb2.ClientBatchSubmitResponse
        deadline = time.monotonic() + (wait or self.timeout)
        backoff = _QUEUE_FULL_BACKOFF[0]
        while True:
            url, reply = self.request(Message.CLIENT_BATCH_SUBMIT_REQUEST, content)
            response = _parse(reply, Response(), Message.CLIENT_BATCH_SUBMIT_RESPONSE)
            if response.status == Response.OK:
                break
            if response.status == Response.INVALID_BATCH:
                raise TransactionRejected(
                    "batch refused at submit: INVALID_BATCH (a signature, signer key or payload hash "
                    "does not verify)"
                )
            if response.status == Response.QUEUE_FULL and time.monotonic() + backoff < deadline:
                time.sleep(backoff)  # the validator's back-pressure: let its queue drain, then retry
                backoff = min(backoff * 2, _QUEUE_FULL_BACKOFF[1])
                continue
            raise LedgerError(f"batch submit failed: {Response.Status.Name(response.status)}")
        ids = [batch.header_signature for batch in batches]
        if not wait:
            return [BatchStatus(batch_id=batch_id, status="PENDING") for batch_id in ids]
        # Ask the validator that took the batches: another one may not have them yet.
        statuses = self.batch_status(ids, wait=wait, prefer_url=url)
        for status in statuses:
            if status.status == "INVALID":
                raise BatchInvalid(status)
        return statuses

    def batch_status(
        self, batch_ids: Sequence[str], *, wait: float | None = None, prefer_url: str | None = None
    ) -> list[BatchStatus]:
        """Statuses of ``batch_ids`` (INVALID included, not raised); with ``wait``, block up to
        that long while any is PENDING. ``prefer_url`` asks that validator first."""
        batch_ids = list(batch_ids)
        if not batch_ids:
            return []
        Response = submit_pb2.ClientBatchStatusResponse
        deadline = time.monotonic() + (wait or 0.0)
        while True:
            remaining = deadline - time.monotonic()
            # The validator counts whole seconds, and reads 0 as its default of 300 s.
            validator_wait = max(1, math.ceil(remaining)) if remaining > 0 else 0
            request = submit_pb2.ClientBatchStatusRequest(
                batch_ids=batch_ids, wait=validator_wait > 0, timeout=validator_wait
            )
            _, reply = self.request(
                Message.CLIENT_BATCH_STATUS_REQUEST,
                request.SerializeToString(),
                timeout=self.timeout + validator_wait,
                prefer_url=prefer_url,
            )
            response = _parse(reply, Response(), Message.CLIENT_BATCH_STATUS_RESPONSE)
            if response.status != Response.OK:
                raise LedgerError(f"batch status failed: {Response.Status.Name(response.status)}")
            statuses = [BatchStatus.from_proto(proto) for proto in response.batch_statuses]
            if not any(status.status == "PENDING" for status in statuses):
                return statuses
            if time.monotonic() >= deadline:
                return statuses

    # -- state ---------------------------------------------------------------------------------
    def get_state(self, address: str) -> bytes | None:
        """The value at ``address`` at the chain head, or None if nothing is stored there."""
        Response = client_state_pb2.ClientStateGetResponse
        request = client_state_pb2.ClientStateGetRequest(address=address)
        _, reply = self.request(Message.CLIENT_STATE_GET_REQUEST, request.SerializeToString())
        response = _parse(reply, Response(), Message.CLIENT_STATE_GET_RESPONSE)
        if response.status == Response.OK:
            return bytes(response.value)
        if response.status in (Response.NO_RESOURCE, Response.NOT_READY):
            return None  # NOT_READY: no block yet, so no state at all
        raise LedgerError(f"state get {address!r} failed: {Response.Status.Name(response.status)}")

    def list_state(self, prefix: str = "", *, page_size: int = STATE_PAGE_SIZE) -> Iterator[tuple[str, bytes]]:
        """Every (address, value) under ``prefix``, in address order, paged from one state root.

        A ledger that keeps only its head state (devnet) answers NO_ROOT once a block commits
        mid-listing; the listing then goes on at the new head from the same address."""
        state_root = ""
        start = ""
        url: str | None = None  # later pages from the validator that served the first one
        Response = client_state_pb2.ClientStateListResponse
        while True:
            request = client_state_pb2.ClientStateListRequest(
                state_root=state_root,
                address=prefix,
                paging=client_list_control_pb2.ClientPagingControls(start=start, limit=page_size),
            )
            url, reply = self.request(
                Message.CLIENT_STATE_LIST_REQUEST, request.SerializeToString(), prefer_url=url
            )
            response = _parse(reply, Response(), Message.CLIENT_STATE_LIST_RESPONSE)
            if response.status in (Response.NO_RESOURCE, Response.NOT_READY):
                return
            if response.status == Response.NO_ROOT and state_root:
                # A ledger that serves state at its head only (devnet) moved on: go on from there.
                state_root = ""
                continue
            if response.status != Response.OK:
                name = Response.Status.Name(response.status)
                raise LedgerError(f"state list {prefix!r} failed: {name}")
            for entry in response.entries:
                yield entry.address, bytes(entry.data)
            start = response.paging.next
            state_root = response.state_root
            if not start:
                return

    # -- events --------------------------------------------------------------------------------
    def subscribe(
        self,
        subscriptions: Sequence[EventSubscription],
        *,
        last_known_block_id: str | None = None,
    ) -> EventStream:
        """Follow the events matching ``subscriptions`` on a connection of its own.

        With ``last_known_block_id``, the validator first replays the events of every block after
        it. Close the stream when done.
        """
        from trustmesh.ledger.events import EventStream

        return EventStream(
            client=self, subscriptions=subscriptions, last_known_block_id=last_known_block_id
        )

    # -- the exchange --------------------------------------------------------------------------
    def url_order(self) -> list[str]:
        """The URLs for the next request: round-robin, URLs that lately failed last."""
        with self._lock:
            start = self._cursor
            self._cursor = (self._cursor + 1) % len(self.urls)
            now = time.monotonic()
            rotated = [self.urls[(start + i) % len(self.urls)] for i in range(len(self.urls))]
            healthy = [url for url in rotated if self._suspect_until.get(url, 0.0) <= now]
            suspect = [url for url in rotated if url not in healthy]
        return healthy + suspect

    def mark_failed(self, url: str) -> None:
        with self._lock:
            self._suspect_until[url] = time.monotonic() + _SUSPECT_SECONDS

    def mark_ok(self, url: str) -> None:
        with self._lock:
            self._suspect_until.pop(url, None)

    def _connection(self, url: str) -> Connection:
        with self._lock:
            if self._closed:
                raise LedgerError("ledger client is closed")
            connection = self._connections.get(url)
            if connection is None:
                connection = self._connections[url] = Connection(url=url)
            return connection

    def request(
        self,
        message_type: int,
        content: bytes,
        *,
        timeout: float | None = None,
        prefer_url: str | None = None,
    ) -> tuple[str, Message]:
        """Send one raw request, failing over across the URLs; (the URL that answered, its reply)."""
        order = self.url_order()
        if prefer_url in order:
            order.remove(prefer_url)
            order.insert(0, prefer_url)
        errors: list[str] = []
        all_timeouts = True
        # First pass: with several URLs, skip at once any that refuses connections. A second pass
        # when nothing answered but some URL refused or dropped the request (a restart): each then
        # waits up to the timeout for its connection to come back.
        fail_fast = len(order) > 1
        for _ in range(2):
            retry = 0
            for url in order:
                connection = self._connection(url)
                try:
                    reply = connection.request(
                        message_type, content, timeout=timeout or self.timeout, fail_fast=fail_fast
                    )
                except LedgerError as exc:
                    all_timeouts = all_timeouts and isinstance(exc, LedgerTimeout)
                    retry += isinstance(exc, ConnectionLost | ConnectionRefused)
                    errors.append(str(exc))
                    self.mark_failed(url)
                    continue
                self.mark_ok(url)
                return url, reply
            if not retry:
                break
            fail_fast = False
        summary = "; ".join(errors)
        if all_timeouts:
            raise LedgerTimeout(f"no validator answered: {summary}")
        raise LedgerError(f"no validator answered: {summary}")

_Response = TypeVar("_Response", bound=ProtoMessage)


def _parse(reply: Message, response: _Response, response_type: int) -> _Response:
    """Decode ``reply`` into ``response``, checking it is the expected message type."""
    if reply.message_type != response_type:
        raise LedgerError(
            f"expected {Message.MessageType.Name(response_type)}, got message type {reply.message_type}"
        )
    try:
        response.ParseFromString(reply.content)
    except DecodeError as exc:
        raise LedgerError(f"undecodable {Message.MessageType.Name(response_type)}") from exc
    return response
