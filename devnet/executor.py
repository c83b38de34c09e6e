"""The TP side of the component endpoint: process requests out, state and event requests in.

Each transaction attempt gets a fresh context and goes to a TP of its family that has room
(round robin); with none registered it waits until one registers. ``INTERNAL_ERROR``, or the TP
vanishing with the request in flight, sends the transaction again (to any TP of the family);
``INVALID_TRANSACTION`` (or any other status) is final for the transaction and fails its batch.
"""
from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import DecodeError
from sawtooth_sdk.protobuf.processor_pb2 import TpProcessResponse
from sawtooth_sdk.protobuf.state_context_pb2 import (
    TpEventAddRequest,
    TpEventAddResponse,
    TpReceiptAddDataRequest,
    TpReceiptAddDataResponse,
    TpStateDeleteRequest,
    TpStateDeleteResponse,
    TpStateEntry,
    TpStateGetRequest,
    TpStateGetResponse,
    TpStateSetRequest,
    TpStateSetResponse,
)
from sawtooth_sdk.protobuf.validator_pb2 import Message

from trustmesh.devnet.execution import AuthorizationError, BatchRun, Reader, TxnContext
from trustmesh.devnet.processors import Family, Processor, ProcessorRegistry

LOGGER = logging.getLogger(__name__)

RETRY_BACKOFF_MAX = 2.0
"""Seconds, the longest pause before re-sending a transaction that keeps failing internally."""

Send = Callable[[bytes, int, bytes, str], None]


@dataclass
class Outcome:
    """The final answer for one transaction attempt."""

    run: BatchRun
    context: TxnContext
    valid: bool
    message: str = ""
    extended_data: bytes = b""


@dataclass
class _Attempt:
    run: BatchRun
    reader: Reader
    context: TxnContext
    retries: int = 0
    not_before: float = 0.0
    correlation_id: str = ""
    processor: bytes = b""


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _field(number: int, data: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def encode_process_request(context: TxnContext, *, raw_header: bool) -> bytes:
    """A serialized TpProcessRequest: the header parsed (field 1) or raw (field 5, RAW style).

    The transaction's own header bytes are a valid encoding of the embedded TransactionHeader, so
    they are spliced in as they are instead of being re-serialized.
    """
    txn = context.txn.txn
    header_field = _field(5 if raw_header else 1, txn.header)
    return (
        header_field
        + _field(2, txn.payload)
        + _field(3, txn.header_signature.encode())
        + _field(4, context.context_id.encode())
    )


class Executor:
    """Sends transactions to TPs and serves their context requests."""

    def __init__(self, *, registry: ProcessorRegistry, send: Send, on_outcome: Callable[[Outcome], None]) -> None:
        self._registry = registry
        self._send = send
        self._on_outcome = on_outcome
        self._ready: dict[Family, deque[_Attempt]] = {}
        self._delayed: list[_Attempt] = []
        self._in_flight: dict[str, _Attempt] = {}
        self._contexts: dict[str, TxnContext] = {}
        self._prefix = uuid.uuid4().hex[:12]
        self._counter = 0

    @property
    def busy(self) -> bool:
        return bool(self._in_flight or self._delayed or any(self._ready.values()))

    def execute(self, run: BatchRun, reader: Reader) -> None:
        """Queue the run's current transaction; :meth:`pump` sends it when a TP has room."""
        context = TxnContext(txn=run.current, reader=reader)
        self._contexts[context.context_id] = context
        self._queue(_Attempt(run=run, reader=reader, context=context))

    def _queue(self, attempt: _Attempt) -> None:
        family = attempt.context.txn.family
        queue = self._ready.get(family)
        if queue is None:
            queue = self._ready[family] = deque()
        queue.append(attempt)

    def pump(self, now: float | None = None) -> None:
        """Send waiting attempts, per family in order, while a TP of the family has room."""
        if self._delayed:
            now = time.monotonic() if now is None else now
            due = [a for a in self._delayed if a.not_before <= now]
            if due:
                self._delayed = [a for a in self._delayed if a.not_before > now]
                for attempt in due:
                    self._queue(attempt)
        for family, queue in self._ready.items():
            while queue:
                processor = self._registry.pick(family)
                if processor is None:
                    break
                self._dispatch(queue.popleft(), processor)

    def _dispatch(self, attempt: _Attempt, processor: Processor) -> None:
        self._counter += 1
        correlation_id = f"{self._prefix}{self._counter:x}"
        attempt.correlation_id = correlation_id
        attempt.processor = processor.identity
        processor.in_flight.add(correlation_id)
        self._in_flight[correlation_id] = attempt
        content = encode_process_request(attempt.context, raw_header=processor.raw_headers)
        self._send(processor.identity, Message.TP_PROCESS_REQUEST, content, correlation_id)

    def _retry(self, attempt: _Attempt, why: str) -> None:
        self._contexts.pop(attempt.context.context_id, None)
        if attempt.run.resolved:
            return
        delay = 0.0 if attempt.retries == 0 else min(0.05 * 2 ** (attempt.retries - 1), RETRY_BACKOFF_MAX)
        LOGGER.info(
            "transaction %s: %s; sending it again%s",
            attempt.context.txn.txn_id[:16], why, f" in {delay:.2f}s" if delay else "",
        )
        context = TxnContext(txn=attempt.context.txn, reader=attempt.reader)
        self._contexts[context.context_id] = context
        retry = _Attempt(
            run=attempt.run,
            reader=attempt.reader,
            context=context,
            retries=attempt.retries + 1,
            not_before=time.monotonic() + delay,
        )
        if delay:
            self._delayed.append(retry)
        else:
            self._queue(retry)

    def processor_gone(self, processor: Processor) -> None:
        """The TP disconnected or stopped answering: its in-flight transactions go out again."""
        for correlation_id in sorted(processor.in_flight):
            attempt = self._in_flight.pop(correlation_id, None)
            if attempt is not None:
                self._retry(attempt, f"transaction processor {processor.identity.hex()[:12]} is gone")
        processor.in_flight.clear()

    # -- messages from TPs ----------------------------------------------------------------------
    def on_process_response(self, identity: bytes, correlation_id: str, content: bytes) -> None:
        attempt = self._in_flight.pop(correlation_id, None)
        if attempt is None:
            LOGGER.debug("ignored a late or unknown process response %s", correlation_id)
            return
        processor = self._registry.get(attempt.processor)
        if processor is not None:
            processor.in_flight.discard(correlation_id)
            processor.processed += 1
        response = TpProcessResponse()
        try:
            response.ParseFromString(content)
        except DecodeError:
            self._retry(attempt, "undecodable process response")
            return
        if response.status == TpProcessResponse.INTERNAL_ERROR:
            self._retry(attempt, f"internal error: {response.message}")
            return
        self._contexts.pop(attempt.context.context_id, None)
        if attempt.run.resolved:
            return
        valid = response.status == TpProcessResponse.OK
        self._on_outcome(
            Outcome(
                run=attempt.run,
                context=attempt.context,
                valid=valid,
                message="" if valid else response.message,
                extended_data=b"" if valid else response.extended_data,
            )
        )

    def on_state_get(self, content: bytes) -> tuple[int, bytes]:
        request = TpStateGetRequest()
        request.ParseFromString(content)
        context = self._contexts.get(request.context_id)
        response = TpStateGetResponse(status=TpStateGetResponse.OK)
        if context is not None:
            try:
                values = context.get(request.addresses)
            except AuthorizationError as exc:
                LOGGER.info("transaction %s may not read %s", context.txn.txn_id[:16], exc)
                response = TpStateGetResponse(status=TpStateGetResponse.AUTHORIZATION_ERROR)
            else:
                response.entries.extend(TpStateEntry(address=a, data=v or b"") for a, v in values)
        return Message.TP_STATE_GET_RESPONSE, response.SerializeToString()

    def on_state_set(self, content: bytes) -> tuple[int, bytes]:
        request = TpStateSetRequest()
        request.ParseFromString(content)
        context = self._contexts.get(request.context_id)
        response = TpStateSetResponse(status=TpStateSetResponse.OK)
        if context is not None:
            entries = [(e.address, e.data) for e in request.entries]
            try:
                context.set(entries)
            except AuthorizationError as exc:
                LOGGER.info("transaction %s may not write %s", context.txn.txn_id[:16], exc)
                response = TpStateSetResponse(status=TpStateSetResponse.AUTHORIZATION_ERROR)
            else:
                response.addresses.extend(a for a, _ in entries)
        return Message.TP_STATE_SET_RESPONSE, response.SerializeToString()

    def on_state_delete(self, content: bytes) -> tuple[int, bytes]:
        request = TpStateDeleteRequest()
        request.ParseFromString(content)
        context = self._contexts.get(request.context_id)
        response = TpStateDeleteResponse(status=TpStateDeleteResponse.OK)
        if context is not None:
            try:
                context.delete(list(request.addresses))
            except AuthorizationError as exc:
                LOGGER.info("transaction %s may not delete %s", context.txn.txn_id[:16], exc)
                response = TpStateDeleteResponse(status=TpStateDeleteResponse.AUTHORIZATION_ERROR)
            else:
                response.addresses.extend(request.addresses)
        return Message.TP_STATE_DELETE_RESPONSE, response.SerializeToString()

    def on_event_add(self, content: bytes) -> tuple[int, bytes]:
        request = TpEventAddRequest()
        request.ParseFromString(content)
        context = self._contexts.get(request.context_id)
        if context is None:
            return Message.TP_EVENT_ADD_RESPONSE, TpEventAddResponse(status=TpEventAddResponse.ERROR).SerializeToString()
        context.events.append(request.event)
        return Message.TP_EVENT_ADD_RESPONSE, TpEventAddResponse(status=TpEventAddResponse.OK).SerializeToString()

    def on_receipt_add_data(self, content: bytes) -> tuple[int, bytes]:
        request = TpReceiptAddDataRequest()
        request.ParseFromString(content)
        context = self._contexts.get(request.context_id)
        status = TpReceiptAddDataResponse.ERROR if context is None else TpReceiptAddDataResponse.OK
        if context is not None:
            context.data.append(request.data)
        return Message.TP_RECEIPT_ADD_DATA_RESPONSE, TpReceiptAddDataResponse(status=status).SerializeToString()
