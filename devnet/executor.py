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

from sawtooth_sdk.protobuf.processor_pb2 import TpProcessResponse
from sawtooth_sdk.protobuf.state_context_pb2 import (
    TpEventAddResponse,
    TpReceiptAddDataResponse,
    TpStateDeleteResponse,
    TpStateGetResponse,
    TpStateSetResponse,
)
from sawtooth_sdk.protobuf.validator_pb2 import Message

from trustmesh.devnet import wire
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


def encode_process_request(context: TxnContext, *, raw_header: bool) -> bytes:
    txn = context.txn
    return wire.encode_process_request(
        header=txn.header_bytes, raw_header=raw_header, payload=txn.payload, signature=txn.txn_id,
        context_id=context.context_id,
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
        try:
            status, message, extended_data = wire.decode_process_response(content)
        except wire.WireError:
            self._retry(attempt, "undecodable process response")
            return
        if status == TpProcessResponse.INTERNAL_ERROR:
            self._retry(attempt, f"internal error: {message}")
            return
        self._contexts.pop(attempt.context.context_id, None)
        if attempt.run.resolved:
            return
        valid = status == TpProcessResponse.OK
        self._on_outcome(
            Outcome(
                run=attempt.run,
                context=attempt.context,
                valid=valid,
                message="" if valid else message,
                extended_data=b"" if valid else extended_data,
            )
        )

    def on_state_get(self, content: bytes) -> tuple[int, bytes]:
        context_id, addresses = wire.decode_context_addresses(content)
        context = self._contexts.get(context_id)
        kind = Message.TP_STATE_GET_RESPONSE
        if context is None:
            return kind, wire.encode_state_get_response((), TpStateGetResponse.OK)
        try:
            values = context.get(addresses)
        except AuthorizationError as exc:
            LOGGER.info("transaction %s may not read %s", context.txn.txn_id[:16], exc)
            return kind, wire.encode_state_get_response((), TpStateGetResponse.AUTHORIZATION_ERROR)
        return kind, wire.encode_state_get_response(values, TpStateGetResponse.OK)

    def on_state_set(self, content: bytes) -> tuple[int, bytes]:
        context_id, entries = wire.decode_state_set(content)
        context = self._contexts.get(context_id)
        kind = Message.TP_STATE_SET_RESPONSE
        if context is None:
            return kind, wire.encode_addresses_response((), TpStateSetResponse.OK)
        try:
            context.set(entries)
        except AuthorizationError as exc:
            LOGGER.info("transaction %s may not write %s", context.txn.txn_id[:16], exc)
            return kind, wire.encode_addresses_response((), TpStateSetResponse.AUTHORIZATION_ERROR)
        return kind, wire.encode_addresses_response((a for a, _ in entries), TpStateSetResponse.OK)

    def on_state_delete(self, content: bytes) -> tuple[int, bytes]:
        context_id, addresses = wire.decode_context_addresses(content)
        context = self._contexts.get(context_id)
        kind = Message.TP_STATE_DELETE_RESPONSE
        if context is None:
            return kind, wire.encode_addresses_response((), TpStateDeleteResponse.OK)
        try:
            context.delete(addresses)
        except AuthorizationError as exc:
            LOGGER.info("transaction %s may not delete %s", context.txn.txn_id[:16], exc)
            return kind, wire.encode_addresses_response((), TpStateDeleteResponse.AUTHORIZATION_ERROR)
        return kind, wire.encode_addresses_response(addresses, TpStateDeleteResponse.OK)

    def on_event_add(self, content: bytes) -> tuple[int, bytes]:
        context_id, event = wire.decode_event_add(content)
        context = self._contexts.get(context_id)
        if context is not None:
            context.events.append(event)
        status = TpEventAddResponse.OK if context is not None else TpEventAddResponse.ERROR
        return Message.TP_EVENT_ADD_RESPONSE, wire.encode_status_response(status)

    def on_receipt_add_data(self, content: bytes) -> tuple[int, bytes]:
        context_id, data = wire.decode_receipt_add_data(content)
        context = self._contexts.get(context_id)
        if context is not None:
            context.data.append(data)
        status = TpReceiptAddDataResponse.OK if context is not None else TpReceiptAddDataResponse.ERROR
        return Message.TP_RECEIPT_ADD_DATA_RESPONSE, wire.encode_status_response(status)
