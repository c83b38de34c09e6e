"""The iot-data TP's idempotent append: one Lua script, loaded once, run with EVALSHA.

All three keys carry the round's hash tag, so the script runs unchanged on Redis Cluster.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis

from trustmesh.dataplane.errors import mapped_errors
from trustmesh.dataplane.keys import federated_list_key, federation_state_key, seen_key

__all__ = ["APPEND_SCRIPT", "AppendResult", "append_submission", "mirror_status"]

APPEND_SCRIPT = resources.files("trustmesh.dataplane").joinpath("append.lua").read_text()
_SCRIPT: Any = None
_STATUSES_THE_APPEND_MAY_SET = (None, "open", "collecting")


@dataclass(frozen=True)
class AppendResult:
    """``new``: appended by this call; ``index``: its place in the list; ``submitted``: seen so far."""

    new: bool
    index: int
    submitted: int


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
                      now: int) -> AppendResult:
    """Append ``record_bytes`` to the round's list unless ``txn_id`` was appended before.

    Raises DataPlaneError when Redis fails (the TP turns it into InternalError, so it is retried).
    """
    keys = [federated_list_key(workflow_id, schedule_id, app_id), seen_key(workflow_id, schedule_id),
            federation_state_key(workflow_id, schedule_id)]
    with mapped_errors("append submission"):
        appended, index, submitted = _script()(
            keys=keys, args=[txn_id, record_bytes, int(expected_nodes), int(now)], client=client)
    return AppendResult(new=bool(appended), index=int(index), submitted=int(submitted))
