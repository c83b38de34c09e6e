"""What both transaction processors share: a read-only state view over the SDK's ``Context``,
writing a rule's outcome back, and running the SDK's own processor core.

A handler decodes, calls a pure rule from ``trustmesh.contracts`` and writes what it returns.
``InvalidTransaction`` means the transaction is wrong (deterministic); ``InternalError`` means
this processor is in trouble and the validator must send the transaction again.
"""
from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterable
from typing import Any

from sawtooth_sdk.messaging.future import FutureTimeoutError
from sawtooth_sdk.processor.core import TransactionProcessor
from sawtooth_sdk.processor.exceptions import AuthorizationException, InternalError, InvalidTransaction
from sawtooth_sdk.protobuf import events_pb2, state_context_pb2
from sawtooth_sdk.protobuf.validator_pb2 import Message

from trustmesh.contracts import blockinfo

LOGGER = logging.getLogger(__name__)

ADDRESS_LENGTH = 70
"""Hex digits of a full state address (a declared input may also be a shorter namespace prefix)."""

STATE_TIMEOUT = 5.0
"""Seconds a state get/set may take before the transaction is handed back as an internal error."""


class _LatestBlockHint:
    """Which block's BlockInfo the next transaction will probably read (the one the last config
    named, or the block after it), so its record rides along in the prefetch. Only a hint: the
    rules still read "now" through the config this very context returns, so a wrong guess costs one
    more request and never a different answer."""

    def __init__(self) -> None:
        self._latest: int | None = None

    def guesses(self) -> list[str]:
        if self._latest is None:
            return []
        return [blockinfo.block_address(self._latest), blockinfo.block_address(self._latest + 1)]

    def learn(self, raw_config: bytes | None) -> None:
        if raw_config:
            try:
                self._latest = blockinfo.decode_config(raw_config).latest_block
            except blockinfo.BlockInfoUnavailable:
                pass


_BLOCK_HINT = _LatestBlockHint()


class ContextStateView:
    """The ``StateView`` of contracts/ over the SDK ``Context``: reads once per address, caches."""

    def __init__(self, context: Any, *, timeout: float = STATE_TIMEOUT) -> None:
        self._context = context
        self._timeout = timeout
        self._cache: dict[str, bytes | None] = {}

    @classmethod
    def for_transaction(cls, transaction: Any, context: Any) -> ContextStateView:
        """A view that reads every address the transaction declares in one round trip up front.

        The rules read most of them anyway (workflow, round, index, BlockInfo), and each separate
        read is a request to the validator and back. Namespace prefixes are not prefetched, except
        the BlockInfo config under a declared BlockInfo prefix.
        """
        view = cls(context)
        inputs = list(transaction.header.inputs)
        wanted = [address for address in inputs if len(address) == ADDRESS_LENGTH]
        reads_block_time = any(blockinfo.CONFIG_ADDRESS.startswith(prefix) for prefix in inputs)
        if reads_block_time:
            wanted.append(blockinfo.CONFIG_ADDRESS)
            wanted += _BLOCK_HINT.guesses()
        view.prefetch(wanted)
        if reads_block_time:
            _BLOCK_HINT.learn(view._cache.get(blockinfo.CONFIG_ADDRESS))
        return view

    def prefetch(self, addresses: Iterable[str]) -> None:
        """Read ``addresses`` in one request; any refusal leaves them to be read one by one."""
        wanted = [address for address in dict.fromkeys(addresses) if address not in self._cache]
        if not wanted:
            return
        try:
            entries = self._context.get_state(wanted, timeout=self._timeout)
        except AuthorizationException:
            return  # a later single read names the undeclared address
        except FutureTimeoutError as exc:
            raise InternalError("state read timed out") from exc
        found = {entry.address: entry.data for entry in entries}
        for address in wanted:
            self._cache[address] = found.get(address) or None

    def get(self, address: str) -> bytes | None:
        if address not in self._cache:
            try:
                entries = self._context.get_state([address], timeout=self._timeout)
            except AuthorizationException as exc:
                raise InvalidTransaction(f"transaction did not declare input {address}") from exc
            except FutureTimeoutError as exc:
                raise InternalError(f"state read of {address} timed out") from exc
            found = {entry.address: entry.data for entry in entries}
            self._cache[address] = found.get(address) or None
        return self._cache[address]


def write_outcome(context: Any, changes: dict[str, bytes | None], events: Iterable[Any]) -> None:
    """Write a rule's state changes (None = delete) and emit its events."""
    send_outcome(context, changes, events)()


def send_outcome(context: Any, changes: dict[str, bytes | None], events: Iterable[Any]) -> Callable[[], None]:
    """Send a rule's state changes and events without waiting; returns ``confirm()``, which waits
    for every reply and raises as the SDK's ``Context`` would. The requests travel together instead
    of one round trip each, and the caller may do its own I/O before confirming; the transaction is
    answered only after ``confirm()``, so the validator has applied them all by then.

    A context without the SDK's stream (the in-memory ledger's) is written one call at a time.
    """
    sets = {address: value for address, value in changes.items() if value is not None}
    deletes = [address for address, value in changes.items() if value is None]
    stream, context_id = getattr(context, "_stream", None), getattr(context, "_context_id", None)
    if stream is None or context_id is None:
        return lambda: _write_in_turn(context, sets, deletes, events)
    requests: list[tuple[int, bytes, Any]] = []
    if sets:
        entries = [state_context_pb2.TpStateEntry(address=a, data=v) for a, v in sets.items()]
        requests.append((Message.TP_STATE_SET_REQUEST, state_context_pb2.TpStateSetRequest(
            context_id=context_id, entries=entries).SerializeToString(), state_context_pb2.TpStateSetResponse))
    if deletes:
        requests.append((Message.TP_STATE_DELETE_REQUEST, state_context_pb2.TpStateDeleteRequest(
            context_id=context_id, addresses=deletes).SerializeToString(), state_context_pb2.TpStateDeleteResponse))
    for event in events:
        message = events_pb2.Event(event_type=event.event_type, data=event.data, attributes=[
            events_pb2.Event.Attribute(key=k, value=v) for k, v in event.attributes])
        requests.append((Message.TP_EVENT_ADD_REQUEST, state_context_pb2.TpEventAddRequest(
            context_id=context_id, event=message).SerializeToString(), state_context_pb2.TpEventAddResponse))
    sent = [(stream.send(kind, body), reply_type) for kind, body, reply_type in requests]

    def confirm() -> None:
        for future, reply_type in sent:
            try:
                reply = reply_type.FromString(future.result(STATE_TIMEOUT).content)
            except FutureTimeoutError as exc:
                raise InternalError("state write timed out") from exc
            if reply_type is state_context_pb2.TpEventAddResponse:
                if reply.status == reply_type.ERROR:
                    raise InternalError("the validator refused an event")
            elif reply.status == reply_type.AUTHORIZATION_ERROR:
                raise InvalidTransaction(f"transaction did not declare an output it writes: {list(reply.addresses)}")
    return confirm


def _write_in_turn(context: Any, sets: dict[str, bytes], deletes: list[str], events: Iterable[Any]) -> None:
    try:
        if sets:
            context.set_state(sets, timeout=STATE_TIMEOUT)
        if deletes:
            context.delete_state(deletes, timeout=STATE_TIMEOUT)
        for event in events:
            context.add_event(
                event_type=event.event_type,
                attributes=list(event.attributes),
                data=event.data,
                timeout=STATE_TIMEOUT,
            )
    except AuthorizationException as exc:
        raise InvalidTransaction(f"transaction did not declare an output it writes: {exc}") from exc
    except FutureTimeoutError as exc:
        raise InternalError("state write timed out") from exc


def run_processor(url: str, handler: Any) -> int:
    """Register ``handler`` with the validator at ``url`` and serve until SIGTERM/SIGINT."""
    processor = TransactionProcessor(url=url)
    processor.add_handler(handler)
    stop = threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        LOGGER.info("signal %s: stopping the %s processor", signum, handler.family_name)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    worker = threading.Thread(target=processor.start, name=f"tp-{handler.family_name}", daemon=True)
    worker.start()
    LOGGER.info("%s processor connected to %s", handler.family_name, url)
    while not stop.wait(0.5):
        if not worker.is_alive():
            LOGGER.error("the processor core stopped")
            return 1
    processor.stop()
    return 0
