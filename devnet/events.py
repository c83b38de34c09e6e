"""Event subscriptions and the events of a committed block, as the validator's broadcaster makes them.

A subscription names an event type and filters; an event belongs to it when the type matches and
every filter passes (SIMPLE_ANY / SIMPLE_ALL compare attribute values, REGEX_ANY / REGEX_ALL
search them). A block yields ``sawtooth/block-commit`` (attributes block_id, block_num,
state_root_hash, previous_block_id), the events its transactions added, and one
``sawtooth/state-delta`` whose data is the block's squashed StateChangeList.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from sawtooth_sdk.protobuf.block_pb2 import BlockHeader
from sawtooth_sdk.protobuf.events_pb2 import Event, EventFilter, EventSubscription
from sawtooth_sdk.protobuf.transaction_receipt_pb2 import StateChangeList, TransactionReceipt

BLOCK_COMMIT = "sawtooth/block-commit"
STATE_DELTA = "sawtooth/state-delta"
NULL_BLOCK_ID = "0000000000000000"


class InvalidFilter(Exception):
    """A filter of unknown type or with a regular expression that does not compile."""


@dataclass(frozen=True)
class _Filter:
    key: str
    kind: int
    match: str
    regex: re.Pattern[str] | None

    def passes(self, event: Event) -> bool:
        values = [a.value for a in event.attributes if a.key == self.key]
        if self.kind == EventFilter.SIMPLE_ANY:
            return any(v == self.match for v in values)
        if self.kind == EventFilter.SIMPLE_ALL:
            return all(v == self.match for v in values)
        assert self.regex is not None
        if self.kind == EventFilter.REGEX_ANY:
            return any(self.regex.search(v) for v in values)
        return all(self.regex.search(v) for v in values)


def _make_filter(proto: EventFilter) -> _Filter:
    if proto.filter_type in (EventFilter.SIMPLE_ANY, EventFilter.SIMPLE_ALL):
        return _Filter(key=proto.key, kind=proto.filter_type, match=proto.match_string, regex=None)
    if proto.filter_type in (EventFilter.REGEX_ANY, EventFilter.REGEX_ALL):
        try:
            regex = re.compile(proto.match_string)
        except re.error as exc:
            raise InvalidFilter(f"Invalid regular expression: {proto.match_string}: {exc}") from exc
        return _Filter(key=proto.key, kind=proto.filter_type, match=proto.match_string, regex=regex)
    raise InvalidFilter(f"Unknown filter type: {proto.filter_type}")


@dataclass(frozen=True)
class Subscription:
    event_type: str
    filters: tuple[_Filter, ...] = ()

    def matches(self, event: Event) -> bool:
        return event.event_type == self.event_type and all(f.passes(event) for f in self.filters)


def parse_subscriptions(protos: Sequence[EventSubscription]) -> list[Subscription]:
    """Raise :class:`InvalidFilter` on a bad filter, as the validator answers INVALID_FILTER."""
    return [
        Subscription(event_type=s.event_type, filters=tuple(_make_filter(f) for f in s.filters)) for s in protos
    ]


@dataclass
class Subscriber:
    """One client connection's subscriptions (a new subscribe request replaces them)."""

    identity: bytes
    fd: int | None
    subscriptions: list[Subscription] = field(default_factory=list)

    def wants(self, event: Event) -> bool:
        return any(s.matches(event) for s in self.subscriptions)


def block_commit_event(header: BlockHeader, block_id: str) -> Event:
    return Event(
        event_type=BLOCK_COMMIT,
        attributes=[
            Event.Attribute(key="block_id", value=block_id),
            Event.Attribute(key="block_num", value=str(header.block_num)),
            Event.Attribute(key="state_root_hash", value=header.state_root_hash),
            Event.Attribute(key="previous_block_id", value=header.previous_block_id),
        ],
    )


def state_delta_event(receipts: Sequence[TransactionReceipt]) -> Event:
    """The block's final change per address (the last write wins), newest first."""
    seen: set[str] = set()
    attributes = []
    changes = []
    for receipt in reversed(receipts):
        for change in reversed(receipt.state_changes):
            if change.address not in seen:
                seen.add(change.address)
                attributes.append(Event.Attribute(key="address", value=change.address))
                changes.append(change)
    return Event(
        event_type=STATE_DELTA,
        attributes=attributes,
        data=StateChangeList(state_changes=changes).SerializeToString(),
    )


def block_events(
    *, header: BlockHeader, block_id: str, receipts: Sequence[TransactionReceipt], wanted: Sequence[Subscription]
) -> list[Event]:
    """Every event of one block that some subscription in ``wanted`` matches, in the validator's order."""
    if not wanted:
        return []
    events: list[Event] = []
    if any(s.event_type == BLOCK_COMMIT for s in wanted):
        events.append(block_commit_event(header, block_id))
    for receipt in receipts:
        events.extend(e for e in receipt.events if any(s.matches(e) for s in wanted))
    if any(s.event_type == STATE_DELTA for s in wanted):
        delta = state_delta_event(receipts)
        if any(s.matches(delta) for s in wanted):
            events.append(delta)
    return events
