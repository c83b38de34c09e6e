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
from collections.abc import Iterable
from typing import Any

from sawtooth_sdk.messaging.future import FutureTimeoutError
from sawtooth_sdk.processor.core import TransactionProcessor
from sawtooth_sdk.processor.exceptions import AuthorizationException, InternalError, InvalidTransaction

from trustmesh.contracts import blockinfo

LOGGER = logging.getLogger(__name__)

ADDRESS_LENGTH = 70
"""Hex digits of a full state address (a declared input may also be a shorter namespace prefix)."""

STATE_TIMEOUT = 5.0
"""Seconds a state get/set may take before the transaction is handed back as an internal error."""


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
        if any(blockinfo.CONFIG_ADDRESS.startswith(prefix) for prefix in inputs):
            wanted.append(blockinfo.CONFIG_ADDRESS)
        view.prefetch(wanted)
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
    sets = {address: value for address, value in changes.items() if value is not None}
    deletes = [address for address, value in changes.items() if value is None]
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
