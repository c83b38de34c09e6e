"""Wake a node's reconcile loop when its workflow's ledger events arrive, or after a timeout.

Nodes decide from chain state, never from events alone (an event can be missed, state cannot);
events only cut the wait between two reads of the chain. A node says which events concern it, so
the ten ``submitted`` events of a round do not make every participant re-read the chain ten times,
and events that arrived together wake it once.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from sawtooth_sdk.protobuf.events_pb2 import Event

from trustmesh.errors import LedgerError
from trustmesh.ledger.client import LedgerClient
from trustmesh.ledger.events import EventStream, subscription

LOGGER = logging.getLogger(__name__)

EVENT_TYPES = (
    "federation/workflow-registered", "federation/round-opened", "federation/round-ready",
    "federation/round-failed", "federation/task-claimed", "federation/result-posted",
    "federation/result-verified", "federation/result-disputed", "federation/model-accepted",
    "federation/model-rejected", "federation/secagg-phase", "federation/secagg-acted", "iot-data/submitted",
)

ROUND_OPENED = "federation/round-opened"
SUBMITTED = "iot-data/submitted"

SETTLED_EVENTS = ("federation/model-accepted", "federation/model-rejected", "federation/round-failed")
"""A round reached its verdict: the coordinator may open the next one."""

PARTICIPANT_EVENTS = ("federation/round-opened", "federation/secagg-phase", *SETTLED_EVENTS)
"""What a participant acts on: a round to train for, a secure-aggregation phase to answer, a verdict
(the accepted model to prefetch, or the end of the workflow). Not ``result-posted``: fetching then
would compete with the attestation, which the round waits on."""

COORDINATOR_EVENTS = ("federation/workflow-registered", *SETTLED_EVENTS)
"""What the coordinator acts on: the workflow on-chain, and each round's verdict."""


class Waker:
    """``wait(timeout)`` returns early when an event of ``workflow_id`` commits (one of ``events``)."""

    def __init__(self, client: LedgerClient, workflow_id: str | None,
                 *, events: Iterable[str] = EVENT_TYPES) -> None:
        self._client = client
        self._filters = {"workflow_id": workflow_id} if workflow_id else None
        self._stream: EventStream | None = None
        self._wake_on: frozenset[str] = frozenset(events)
        self._stream = self._subscribe(self._wake_on)
        self.woken_by: tuple[Event, ...] = ()
        """The events that ended the last wait (none after a timeout)."""

    def _subscribe(self, events: frozenset[str]) -> EventStream | None:
        try:
            return self._client.subscribe([subscription(t, self._filters) for t in sorted(events)])
        except LedgerError as exc:
            LOGGER.warning("no event subscription (%s); polling the chain instead", exc)
            return None

    def wake_on(self, events: Iterable[str]) -> None:
        """Subscribe to these event types only, from now on: the validator no longer sends the others
        (a participant need not decode ten ``submitted`` events a round). Nothing is lost in the
        switch that matters: a node reads the chain after every wait anyway."""
        wanted = frozenset(events)
        if wanted == self._wake_on:
            return
        old, self._wake_on = self._stream, wanted
        self._stream = self._subscribe(wanted)
        if old is not None:
            old.close()

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds; True if an event arrived (with every event queued with it)."""
        self.woken_by = ()
        if self._stream is None:
            time.sleep(timeout)
            return False
        deadline = time.monotonic() + timeout
        try:
            while (left := deadline - time.monotonic()) > 0:
                event = self._stream.get(timeout=left)
                if event is None:
                    break
                if event.event_type in self._wake_on:
                    self.woken_by = (event, *self._drain())
                    return True
        except LedgerError:
            pass
        time.sleep(max(0.0, deadline - time.monotonic()))  # a closed stream returns at once
        return False

    def _drain(self) -> list[Event]:
        """Take the events already queued: one chain read after a burst answers for all of them."""
        assert self._stream is not None
        taken = []
        while (event := self._stream.get(timeout=0)) is not None:
            if event.event_type in self._wake_on:
                taken.append(event)
        return taken

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()


def woken_by(wait: Callable[[float], object]) -> tuple[Event, ...]:
    """The events that ended ``wait``'s last call when it is a :class:`Waker`'s (else none)."""
    waker = getattr(wait, "__self__", None)
    return waker.woken_by if isinstance(waker, Waker) else ()


def wake_only_on(wait: Callable[[float], object], events: Iterable[str]) -> None:
    """Narrow a node's ``wait`` to ``events`` when it is a :class:`Waker`'s (any other wait is kept)."""
    waker = getattr(wait, "__self__", None)
    if isinstance(waker, Waker):
        waker.wake_on(events)
