"""An in-memory ledger with the client's surface, for unit tests that need no devnet process.

It runs the SDK's own ``TransactionHandler`` objects in-process against a dict of state, with
the checks that matter to rule code: signatures and payload hashes at submit, declared inputs and
outputs, atomic batches, one block per ``submit`` call (none if every batch in it is invalid),
BlockInfo records from an injectable clock, and block-commit, state-delta and processor events.
Not a validator: no ZMQ, no persistence, no concurrency between transactions.
"""
from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sawtooth_sdk.processor.exceptions import AuthorizationException, InternalError, InvalidTransaction
from sawtooth_sdk.protobuf.batch_pb2 import Batch, BatchHeader
from sawtooth_sdk.protobuf.block_info_pb2 import BlockInfo, BlockInfoConfig
from sawtooth_sdk.protobuf.events_pb2 import Event, EventSubscription
from sawtooth_sdk.protobuf.processor_pb2 import TpProcessRequest
from sawtooth_sdk.protobuf.state_context_pb2 import TpStateEntry
from sawtooth_sdk.protobuf.transaction_pb2 import TransactionHeader
from sawtooth_sdk.protobuf.transaction_receipt_pb2 import StateChange, StateChangeList

from trustmesh.contracts.blockinfo import (
    CONFIG_ADDRESS,
    DEFAULT_SYNC_TOLERANCE,
    DEFAULT_TARGET_COUNT,
    block_address,
)
from trustmesh.errors import LedgerError, TransactionRejected
from trustmesh.ledger.client import BatchInvalid, BatchStatus, SingleTransactions
from trustmesh.ledger.client import InvalidTransaction as InvalidTxnInfo
from trustmesh.ledger.events import BLOCK_COMMIT, attribute, event_matches
from trustmesh.ledger.keys import verify

__all__ = ["MemoryLedger"]

GENESIS_PREVIOUS_ID = "0000000000000000"
STATE_DELTA = "sawtooth/state-delta"
_INTERNAL_RETRIES = 3


def _allowed(address: str, prefixes: Sequence[str]) -> bool:
    return any(address.startswith(prefix) for prefix in prefixes)


class _Context:
    """The SDK ``Context`` surface over one transaction's view of state; writes stay here until kept."""

    def __init__(self, *, reads: Callable[[str], bytes | None], header: TransactionHeader) -> None:
        self._reads = reads
        self._header = header
        self.writes: dict[str, bytes | None] = {}
        self.events: list[Event] = []
        self.receipt_data: list[bytes] = []

    def _value(self, address: str) -> bytes | None:
        return self.writes[address] if address in self.writes else self._reads(address)

    def get_state(self, addresses: Sequence[str], timeout: float | None = None) -> list[TpStateEntry]:
        if not all(_allowed(a, self._header.inputs) for a in addresses):
            raise AuthorizationException(f"Tried to get unauthorized address: {list(addresses)}")
        found = ((a, self._value(a)) for a in addresses)
        return [TpStateEntry(address=a, data=v) for a, v in found if v]

    def set_state(self, entries: dict[str, bytes], timeout: float | None = None) -> list[str]:
        if not all(_allowed(a, self._header.outputs) for a in entries):
            raise AuthorizationException(f"Tried to set unauthorized address: {list(entries)}")
        self.writes.update(entries)
        return list(entries)

    def delete_state(self, addresses: Sequence[str], timeout: float | None = None) -> list[str]:
        if not all(_allowed(a, self._header.outputs) for a in addresses):
            raise AuthorizationException(f"Tried to delete unauthorized address: {list(addresses)}")
        deleted = [a for a in addresses if self._value(a) is not None]
        self.writes.update(dict.fromkeys(addresses))
        return deleted

    def add_event(
        self, event_type: str, attributes: Iterable[tuple[str, str]] | None = None, data: bytes | None = None,
        timeout: float | None = None,
    ) -> None:
        self.events.append(
            Event(
                event_type=event_type,
                attributes=[Event.Attribute(key=k, value=v) for k, v in attributes or []],
                data=data or b"",
            )
        )

    def add_receipt_data(self, data: bytes, timeout: float | None = None) -> None:
        self.receipt_data.append(data)


@dataclass
class _Block:
    num: int
    block_id: str
    events: list[Event] = field(default_factory=list)


class MemoryLedger(SingleTransactions):
    """A ledger in a dict, driven like :class:`~trustmesh.ledger.client.LedgerClient`."""

    urls = ("memory://",)

    def __init__(self, *, handlers: Sequence[Any], clock: Callable[[], float] = time.time) -> None:
        self._handlers = list(handlers)
        self._clock = clock
        self._lock = threading.RLock()
        self.state: dict[str, bytes] = {}
        self._statuses: dict[str, BatchStatus] = {}
        self._streams: list[_MemoryStream] = []
        genesis = hashlib.sha512(b"memory-ledger-genesis").hexdigest()
        self._blocks: list[_Block] = [_Block(num=0, block_id=genesis)]

    # -- the client surface --------------------------------------------------------------------
    def close(self) -> None:
        for stream in list(self._streams):
            stream.close()

    def __enter__(self) -> MemoryLedger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def head_block_num(self) -> int:
        return self._blocks[-1].num

    def submit(self, batches: Iterable[Batch], *, wait: float | None = 30.0) -> list[BatchStatus]:
        """Check, run and (if any batch is valid) commit ``batches`` as one block, at once."""
        batches = list(batches)
        for batch in batches:
            self._check(batch)
        with self._lock:
            self._publish(batches)
            statuses = [self._statuses[b.header_signature] for b in batches]
        for status in statuses:
            if status.status == "INVALID":
                raise BatchInvalid(status)
        return statuses

    def batch_status(
        self, batch_ids: Sequence[str], *, wait: float | None = None, prefer_url: str | None = None
    ) -> list[BatchStatus]:
        with self._lock:
            return [self._statuses.get(b, BatchStatus(batch_id=b, status="UNKNOWN")) for b in batch_ids]

    def get_state(self, address: str) -> bytes | None:
        with self._lock:
            return self.state.get(address)

    def list_state(self, prefix: str = "", *, page_size: int = 1000) -> Iterator[tuple[str, bytes]]:
        with self._lock:
            entries = sorted((a, v) for a, v in self.state.items() if a.startswith(prefix))
        yield from entries

    def subscribe(
        self, subscriptions: Sequence[EventSubscription], *, last_known_block_id: str | None = None
    ) -> _MemoryStream:
        with self._lock:
            stream = _MemoryStream(ledger=self, subscriptions=subscriptions)
            if last_known_block_id is not None:
                known = [b.block_id for b in self._blocks]
                if last_known_block_id not in known:
                    raise LedgerError("event subscription refused: UNKNOWN_BLOCK")
                for block in self._blocks[known.index(last_known_block_id) + 1 :]:
                    stream.deliver(block.events)
            self._streams.append(stream)
            return stream

    # -- submit-time checks --------------------------------------------------------------------
    def _check(self, batch: Batch) -> None:
        def refuse(why: str) -> TransactionRejected:
            return TransactionRejected(f"batch refused at submit: INVALID_BATCH ({why})")

        header = BatchHeader.FromString(batch.header)
        if not verify(batch.header_signature, batch.header, header.signer_public_key):
            raise refuse("batch signature")
        if list(header.transaction_ids) != [t.header_signature for t in batch.transactions]:
            raise refuse("transaction ids")
        for txn in batch.transactions:
            txn_header = TransactionHeader.FromString(txn.header)
            if not verify(txn.header_signature, txn.header, txn_header.signer_public_key):
                raise refuse("transaction signature")
            if txn_header.batcher_public_key != header.signer_public_key:
                raise refuse("batcher key")
            if hashlib.sha512(txn.payload).hexdigest() != txn_header.payload_sha512:
                raise refuse("payload sha512")

    # -- blocks --------------------------------------------------------------------------------
    def _publish(self, batches: list[Batch]) -> None:
        previous = self._blocks[-1]
        overlay: dict[str, bytes | None] = dict(self._block_info_writes(previous))
        events: list[Event] = []
        valid: list[Batch] = []
        for batch in batches:
            if batch.header_signature in self._statuses and self._statuses[batch.header_signature].committed:
                continue
            outcome = self._run_batch(batch, overlay)
            if isinstance(outcome, BatchStatus):
                self._statuses[batch.header_signature] = outcome
                continue
            batch_writes, batch_events = outcome
            overlay.update(batch_writes)
            events.extend(batch_events)
            valid.append(batch)
        if not valid:
            return  # as Sawtooth 1.2: no block without a valid user batch
        for address, value in overlay.items():
            if value is None:
                self.state.pop(address, None)
            else:
                self.state[address] = value
        num = previous.num + 1
        block_id = hashlib.sha512(
            previous.block_id.encode() + b"".join(b.header_signature.encode() for b in valid)
        ).hexdigest()
        commit = Event(
            event_type=BLOCK_COMMIT,
            attributes=[
                Event.Attribute(key="block_id", value=block_id),
                Event.Attribute(key="block_num", value=str(num)),
                Event.Attribute(key="state_root_hash", value=hashlib.sha256(repr(sorted(self.state.items())).encode()).hexdigest()),
                Event.Attribute(key="previous_block_id", value=previous.block_id),
            ],
        )
        changes = [
            StateChange(address=a, value=v, type=StateChange.SET) if v is not None
            else StateChange(address=a, type=StateChange.DELETE)
            for a, v in sorted(overlay.items())
        ]
        delta = Event(
            event_type=STATE_DELTA,
            attributes=[Event.Attribute(key="address", value=c.address) for c in changes],
            data=StateChangeList(state_changes=changes).SerializeToString(),
        )
        block = _Block(num=num, block_id=block_id, events=[commit, *events, delta])
        self._blocks.append(block)
        for batch in valid:
            self._statuses[batch.header_signature] = BatchStatus(batch_id=batch.header_signature, status="COMMITTED")
        for stream in self._streams:
            stream.deliver(block.events)

    def _block_info_writes(self, previous: _Block) -> dict[str, bytes | None]:
        """The BlockInfo record of the previous block, stamped with this block's start time."""
        writes: dict[str, bytes | None] = {
            block_address(previous.num): BlockInfo(
                block_num=previous.num,
                previous_block_id=self._blocks[-2].block_id if len(self._blocks) > 1 else GENESIS_PREVIOUS_ID,
                signer_public_key="00" * 33,
                header_signature=previous.block_id,
                timestamp=int(self._clock()),
            ).SerializeToString()
        }
        oldest = max(0, previous.num - DEFAULT_TARGET_COUNT + 1)
        if oldest > 0:
            writes[block_address(oldest - 1)] = None
        writes[CONFIG_ADDRESS] = BlockInfoConfig(
            latest_block=previous.num,
            oldest_block=oldest,
            target_count=DEFAULT_TARGET_COUNT,
            sync_tolerance=DEFAULT_SYNC_TOLERANCE,
        ).SerializeToString()
        return writes

    def _run_batch(
        self, batch: Batch, overlay: dict[str, bytes | None]
    ) -> tuple[dict[str, bytes | None], list[Event]] | BatchStatus:
        writes: dict[str, bytes | None] = {}
        events: list[Event] = []

        def read(address: str) -> bytes | None:
            if address in writes:
                return writes[address]
            if address in overlay:
                return overlay[address]
            return self.state.get(address)

        for txn in batch.transactions:
            header = TransactionHeader.FromString(txn.header)
            handler = self._handler(header)
            request = TpProcessRequest(header=header, payload=txn.payload, signature=txn.header_signature)
            for attempt in range(_INTERNAL_RETRIES):
                context = _Context(reads=read, header=header)
                try:
                    handler.apply(request, context)
                    break
                except InvalidTransaction as exc:
                    info = InvalidTxnInfo(
                        transaction_id=txn.header_signature, message=str(exc),
                        extended_data=bytes(exc.extended_data or b""),
                    )
                    return BatchStatus(batch_id=batch.header_signature, status="INVALID", invalid_transactions=(info,))
                except InternalError as exc:
                    if attempt == _INTERNAL_RETRIES - 1:
                        raise LedgerError(f"processor kept failing internally: {exc}") from exc
                except AuthorizationException as exc:
                    raise LedgerError(f"processor bug: {exc}") from exc
            writes.update(context.writes)
            events.extend(context.events)
        return writes, events

    def _handler(self, header: TransactionHeader) -> Any:
        for handler in self._handlers:
            if handler.family_name == header.family_name and header.family_version in handler.family_versions:
                return handler
        raise LedgerError(f"no processor for {header.family_name} {header.family_version}")


class _MemoryStream:
    """An event stream fed synchronously by :class:`MemoryLedger` as blocks commit."""

    def __init__(self, *, ledger: MemoryLedger, subscriptions: Sequence[EventSubscription]) -> None:
        self._ledger = ledger
        self._subscriptions = list(subscriptions)
        self._events: queue.Queue[Event | None] = queue.Queue()
        self._closed = False
        self.last_block_id: str | None = None

    def deliver(self, events: Sequence[Event]) -> None:
        for event in events:
            if event.event_type == BLOCK_COMMIT:
                self.last_block_id = attribute(event, "block_id")
            if event_matches(self._subscriptions, event):
                self._events.put(event)

    def get(self, timeout: float | None = None) -> Event | None:
        """The next matching event, or None on timeout or once closed."""
        try:
            event = self._events.get(timeout=timeout)
        except queue.Empty:
            return None
        if event is None:
            self._events.put(None)  # closed: keep later readers from blocking
        return event

    def __iter__(self) -> Iterator[Event]:
        while (event := self.get()) is not None:
            yield event

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self in self._ledger._streams:  # noqa: SLF001 — the ledger's own registry
                self._ledger._streams.remove(self)  # noqa: SLF001
            self._events.put(None)
