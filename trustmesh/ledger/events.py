"""Event subscriptions that survive reconnects without missing a block.

A stream always subscribes to ``sawtooth/block-commit`` too, so it knows the last block it has
seen. When the connection drops, it resubscribes with ``last_known_block_ids=[that block]`` and the
validator replays every later block's events first; blocks already seen are dropped. Only events
matching the caller's own subscriptions are handed out.
"""
from __future__ import annotations

import collections
import logging
import queue
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from sawtooth_sdk.protobuf import client_event_pb2
from sawtooth_sdk.protobuf.events_pb2 import Event, EventFilter, EventList, EventSubscription
from sawtooth_sdk.protobuf.validator_pb2 import Message

from trustmesh.errors import LedgerError
from trustmesh.ledger.transport import Connection

if TYPE_CHECKING:
    from trustmesh.ledger.client import LedgerClient

__all__ = ["BLOCK_COMMIT", "EventStream", "Events", "attribute", "event_matches", "subscription"]

LOGGER = logging.getLogger(__name__)

BLOCK_COMMIT = "sawtooth/block-commit"
_SEEN_BLOCKS = 1024
_CLOSE_TIMEOUT = 2.0


def subscription(
    event_type: str, filters: Mapping[str, str] | None = None, *, kind: int = EventFilter.SIMPLE_ALL
) -> EventSubscription:
    """A subscription to ``event_type`` whose attributes must match ``filters`` (key → value or regex)."""
    return EventSubscription(
        event_type=event_type,
        filters=[
            EventFilter(key=key, match_string=value, filter_type=kind) for key, value in (filters or {}).items()
        ],
    )


def attribute(event: Event, key: str) -> str | None:
    """The first value of attribute ``key`` on ``event``, or None."""
    for attr in event.attributes:
        if attr.key == key:
            return str(attr.value)
    return None


def _filter_passes(event_filter: EventFilter, event: Event) -> bool:
    values = [attr.value for attr in event.attributes if attr.key == event_filter.key]
    kind = event_filter.filter_type
    if kind == EventFilter.SIMPLE_ANY:
        return event_filter.match_string in values
    if kind == EventFilter.SIMPLE_ALL:
        return all(value == event_filter.match_string for value in values)
    pattern = re.compile(event_filter.match_string)
    if kind == EventFilter.REGEX_ANY:
        return any(pattern.search(value) for value in values)
    if kind == EventFilter.REGEX_ALL:
        return all(pattern.search(value) for value in values)
    return False


def event_matches(subscriptions: Sequence[EventSubscription], event: Event) -> bool:
    """True if ``event`` belongs to one of ``subscriptions``, by the validator's own rules."""
    return any(
        sub.event_type == event.event_type and all(_filter_passes(f, event) for f in sub.filters)
        for sub in subscriptions
    )


class Events(Protocol):
    """An event stream: :class:`EventStream`, or the in-memory ledger's."""

    @property
    def last_block_id(self) -> str | None: ...

    def get(self, timeout: float | None = None) -> Event | None: ...

    def __iter__(self) -> Iterator[Event]: ...

    def close(self) -> None: ...


class _Closed:
    """Queue sentinel: the stream was closed."""


class EventStream:
    """Events from a validator, in block order, resumed from the last block after a reconnect.

    Read with :meth:`get` or by iterating; :meth:`close` unsubscribes.
    """

    def __init__(
        self,
        *,
        client: LedgerClient,
        subscriptions: Sequence[EventSubscription],
        last_known_block_id: str | None = None,
    ) -> None:
        for sub in subscriptions:
            for event_filter in sub.filters:
                if event_filter.filter_type in (EventFilter.REGEX_ANY, EventFilter.REGEX_ALL):
                    try:
                        re.compile(event_filter.match_string)
                    except re.error as exc:
                        raise LedgerError(f"bad event filter {event_filter.match_string!r}: {exc}") from exc
        self._client = client
        self._subscriptions = [EventSubscription.FromString(s.SerializeToString()) for s in subscriptions]
        wire = list(self._subscriptions)
        if not any(sub.event_type == BLOCK_COMMIT and not sub.filters for sub in wire):
            wire.append(EventSubscription(event_type=BLOCK_COMMIT))
        self._wire_subscriptions = wire
        self._events: queue.Queue[Event | _Closed] = queue.Queue()
        self._lock = threading.Lock()
        self._last_block_id = last_known_block_id
        self._seen: collections.deque[str] = collections.deque(maxlen=_SEEN_BLOCKS)
        self._signals: queue.Queue[tuple[object, bool] | None] = queue.Queue()
        self._token: object = None
        self._closed = threading.Event()
        self._connection: Connection | None = None
        self._connect_and_subscribe(first=True)
        self._supervisor = threading.Thread(target=self._supervise, name="ledger-events", daemon=True)
        self._supervisor.start()

    # -- reading -------------------------------------------------------------------------------
    @property
    def last_block_id(self) -> str | None:
        """The last block whose events this stream has received (where a resume starts)."""
        with self._lock:
            return self._last_block_id

    @property
    def url(self) -> str | None:
        connection = self._connection
        return connection.url if connection is not None else None

    def get(self, timeout: float | None = None) -> Event | None:
        """The next event, waiting up to ``timeout`` s (None: until one comes); None on timeout or close."""
        if self._closed.is_set() and self._events.empty():
            return None
        try:
            item = self._events.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, _Closed):
            self._events.put(item)  # keep later readers from blocking
            return None
        return item

    def __iter__(self) -> Iterator[Event]:
        while True:
            event = self.get()
            if event is None:
                return
            yield event

    def close(self) -> None:
        """Unsubscribe and drop the connection."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._signals.put(None)
        self._supervisor.join(timeout=5)
        connection = self._connection
        if connection is not None:
            if connection.is_up:
                try:
                    connection.request(
                        Message.CLIENT_EVENTS_UNSUBSCRIBE_REQUEST,
                        client_event_pb2.ClientEventsUnsubscribeRequest().SerializeToString(),
                        timeout=_CLOSE_TIMEOUT,
                    )
                except LedgerError as exc:
                    LOGGER.debug("unsubscribe from %s failed: %s", connection.url, exc)
            connection.close()
        self._events.put(_Closed())

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- subscribing ---------------------------------------------------------------------------
    def _connect_and_subscribe(self, *, first: bool) -> None:
        """Open a connection to the first validator that accepts the subscription.

        With several URLs, the first pass skips at once any that refuses connections."""
        errors: list[str] = []
        urls = self._client.url_order()
        for fail_fast in ([True, False] if len(urls) > 1 else [False]):
            for url in urls:
                token = object()
                connection = Connection(
                    url=url,
                    on_message=self._on_message,
                    on_state=lambda up, token=token: self._signals.put((token, up)),  # type: ignore[misc]
                )
                try:
                    self._subscribe(connection, first=first, fail_fast=fail_fast)
                except LedgerError as exc:
                    connection.close()
                    if isinstance(exc, _Refused):
                        raise
                    errors.append(str(exc))
                    self._client.mark_failed(url)
                    continue
                old, self._connection, self._token = self._connection, connection, token
                if old is not None:
                    old.close()
                return
        raise LedgerError(f"no validator took the event subscription: {'; '.join(errors)}")

    def _subscribe(self, connection: Connection, *, first: bool, fail_fast: bool = False) -> None:
        Response = client_event_pb2.ClientEventsSubscribeResponse
        last = self.last_block_id
        request = client_event_pb2.ClientEventsSubscribeRequest(
            subscriptions=self._wire_subscriptions, last_known_block_ids=[last] if last else []
        )
        reply = connection.request(
            Message.CLIENT_EVENTS_SUBSCRIBE_REQUEST,
            request.SerializeToString(),
            timeout=self._client.timeout,
            fail_fast=fail_fast,
        )
        response = Response()
        response.ParseFromString(reply.content)
        if response.status == Response.UNKNOWN_BLOCK and not first:
            # The chain no longer holds our last block (a fork or a rebuilt ledger): follow from now.
            LOGGER.warning("%s does not know block %s; events resume from its head", connection.url, last)
            with self._lock:
                self._last_block_id = None
            self._subscribe(connection, first=first, fail_fast=fail_fast)
            return
        if response.status != Response.OK:
            name = Response.Status.Name(response.status)
            raise _Refused(f"event subscription refused: {name} {response.response_message}".strip())

    def _supervise(self) -> None:
        """Resubscribe after every reconnect; move to another validator if one stays down."""
        resubscribe = False
        down_since: float | None = None
        while not self._closed.is_set():
            try:
                signal = self._signals.get(timeout=0.5)
            except queue.Empty:
                signal = (self._token, True)
            if signal is None or self._closed.is_set():
                return
            token, up = signal
            if token is not self._token:
                continue  # from a connection already replaced
            if not up:
                resubscribe = True
            connection = self._connection
            if connection is None:
                continue
            if connection.is_up:
                down_since = None
                if resubscribe:
                    try:
                        self._subscribe(connection, first=False)
                        resubscribe = False
                        LOGGER.info("events resumed at %s after block %s", connection.url, self.last_block_id)
                    except LedgerError as exc:
                        LOGGER.warning("resubscribing at %s failed: %s", connection.url, exc)
                continue
            resubscribe = True
            now = time.monotonic()
            if down_since is None:
                down_since = now
            elif now - down_since > self._client.timeout and len(self._client.urls) > 1:
                self._client.mark_failed(connection.url)
                try:
                    self._connect_and_subscribe(first=False)
                    resubscribe, down_since = False, None
                except LedgerError as exc:
                    LOGGER.warning("%s; retrying", exc)
                    down_since = time.monotonic()

    # -- receiving (on the connection's I/O thread) --------------------------------------------
    def _on_message(self, message: Message) -> None:
        if message.message_type != Message.CLIENT_EVENTS:
            return
        event_list = EventList()
        event_list.ParseFromString(message.content)
        events = list(event_list.events)
        commit = next((event for event in events if event.event_type == BLOCK_COMMIT), None)
        if commit is not None:
            block_id = attribute(commit, "block_id") or ""
            with self._lock:
                if block_id in self._seen:
                    return  # replayed after a resubscribe: delivered already
                self._seen.append(block_id)
                self._last_block_id = block_id
        for event in events:
            if event_matches(self._subscriptions, event):
                self._events.put(event)


class _Refused(LedgerError):
    """The validator answered the subscription with a refusal; trying elsewhere will not help."""
