"""The iot-data TP's idempotent append: one Lua script, loaded once, run with EVALSHA.

All three keys carry the round's hash tag, so the script runs unchanged on Redis Cluster.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis

from trustmesh.dataplane.errors import mapped_errors
from trustmesh.dataplane.keys import federated_list_key, federation_state_key, seen_key

__all__ = ["APPEND_SCRIPT", "AppendResult", "ROUND_KEY_TTL", "append_submission", "mirror_status", "round_key_ttl"]

log = logging.getLogger(__name__)

ROUND_KEY_TTL = 7 * 24 * 3600
"""Seconds a round's Redis keys (submission list, seen hash, mirror) live after its last append, as
long as participants' update blobs: rounds settle in minutes, the chain keeps every hash and CouchDB
the models. ``TRUSTMESH_ROUND_KEY_TTL`` overrides it (0: never expire)."""

ROUND_KEY_TTL_ENV = "TRUSTMESH_ROUND_KEY_TTL"

APPEND_SCRIPT = resources.files("trustmesh.dataplane").joinpath("append.lua").read_text()
_SCRIPT: Any = None
_STATUSES_THE_APPEND_MAY_SET = (None, "open", "collecting")
_warned_no_expire = False


def round_key_ttl() -> int | None:
    """The round keys' TTL: ``TRUSTMESH_ROUND_KEY_TTL`` seconds if set (0 or less: none), else 7 days."""
    raw = os.environ.get(ROUND_KEY_TTL_ENV, "").strip()
    if not raw:
        return ROUND_KEY_TTL
    try:
        seconds = int(raw)
    except ValueError as exc:
        raise ValueError(f"{ROUND_KEY_TTL_ENV}={raw!r} is not a whole number of seconds") from exc
    return seconds if seconds > 0 else None


@dataclass(frozen=True)
class AppendResult:
    """``new``: appended by this call; ``index``: its place in the list; ``submitted``: seen so far;
    ``expiring``: how many of the round's three keys carry a TTL now."""

    new: bool
    index: int
    submitted: int
    expiring: int = 0


def mirror_status(current: str | None, submitted: int, expected: int) -> str | None:
    """The mirror status after an append (the Lua script does the same; the in-memory fake uses this)."""
    if current not in _STATUSES_THE_APPEND_MAY_SET:
        return current
    return "all_submitted" if expected > 0 and submitted >= expected else "collecting"


def _script() -> Any:
    """One Script object for every client: it only hashes the text; the client is given per call."""
    global _SCRIPT
    if _SCRIPT is None:
        _SCRIPT = redis.Redis().register_script(APPEND_SCRIPT)  # the constructor does not connect
    return _SCRIPT


def append_submission(client: redis.Redis | redis.RedisCluster, workflow_id: str, schedule_id: str,
                      app_id: str, txn_id: str, record_bytes: bytes, expected_nodes: int,
                      now: int, ttl: int | None = None) -> AppendResult:
    """Append ``record_bytes`` to the round's list unless ``txn_id`` was appended before; the round's
    keys then expire ``ttl`` seconds later (None: never).

    Raises DataPlaneError when Redis fails (the TP turns it into InternalError, so it is retried).
    """
    global _warned_no_expire
    keys = [federated_list_key(workflow_id, schedule_id, app_id), seen_key(workflow_id, schedule_id),
            federation_state_key(workflow_id, schedule_id)]
    with mapped_errors("append submission"):
        appended, index, submitted, expiring = _script()(
            keys=keys, args=[txn_id, record_bytes, int(expected_nodes), int(now), int(ttl or 0)], client=client)
    if ttl and int(expiring) < len(keys) and not _warned_no_expire:
        _warned_no_expire = True
        log.warning("this Redis user may not EXPIRE the round's keys: they will never expire")
    return AppendResult(new=bool(appended), index=int(index), submitted=int(submitted), expiring=int(expiring))
