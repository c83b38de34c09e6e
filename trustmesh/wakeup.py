"""Wake a node's reconcile loop when its workflow's ledger events arrive, or after a timeout.

Nodes decide from chain state, never from events alone (an event can be missed, state cannot);
events only cut the wait between two reads of the chain.
"""
from __future__ import annotations

import logging
import time

from trustmesh.errors import LedgerError
from trustmesh.ledger.client import LedgerClient
from trustmesh.ledger.events import EventStream, subscription

LOGGER = logging.getLogger(__name__)

EVENT_TYPES = (
    "federation/workflow-registered", "federation/round-opened", "federation/round-ready",
    "federation/round-failed", "federation/task-claimed", "federation/result-posted",
    "federation/result-verified", "federation/result-disputed", "federation/model-accepted",
    "federation/model-rejected", "iot-data/submitted",
)


class Waker:
    """``wait(timeout)`` returns early when an event of ``workflow_id`` commits."""

    def __init__(self, client: LedgerClient, workflow_id: str | None) -> None:
        filters = {"workflow_id": workflow_id} if workflow_id else None
        self._stream: EventStream | None = None
        try:
            self._stream = client.subscribe([subscription(t, filters) for t in EVENT_TYPES])
        except LedgerError as exc:
            LOGGER.warning("no event subscription (%s); polling the chain instead", exc)

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds; True if an event arrived."""
        if self._stream is None:
            time.sleep(timeout)
            return False
        started = time.monotonic()
        try:
            if self._stream.get(timeout=timeout) is not None:
                return True
        except LedgerError:
            pass
        time.sleep(max(0.0, timeout - (time.monotonic() - started)))  # a closed stream returns at once
        return False

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
