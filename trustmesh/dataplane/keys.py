"""Redis key names (DESIGN §4): the one place they are spelled.

Every key of a round carries the hash tag ``{workflow_id:schedule_id}``, so the Lua append and
the compute node's reads touch one Redis Cluster slot; a workflow's models and heartbeats share
``{workflow_id}``.
"""
from __future__ import annotations

import re

__all__ = [
    "federated_list_key", "federation_state_key", "heartbeat_key", "heartbeat_pattern", "model_key",
    "next_open_key",
    "round_tag", "seen_key", "update_key",
]

_IDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_HEX = re.compile(r"[0-9a-f]{1,256}")


def _ident(what: str, value: str) -> str:
    if not isinstance(value, str) or not _IDENT.fullmatch(value):
        raise ValueError(f"{what} {value!r} is not an identifier (letters, digits, . _ -)")
    return value


def _hex(what: str, value: str) -> str:
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        raise ValueError(f"{what} {value!r} is not lowercase hex")
    return value


def round_tag(workflow_id: str, schedule_id: str) -> str:
    """``{wf:sched}``: the hash tag shared by every key of one round."""
    return f"{{{_ident('workflow_id', workflow_id)}:{_ident('schedule_id', schedule_id)}}}"


def update_key(workflow_id: str, schedule_id: str, update_hash: str) -> str:
    """An update blob sent by reference: ``update:{wf:sched}:<sha512 hex>``."""
    return f"update:{round_tag(workflow_id, schedule_id)}:{_hex('update_hash', update_hash)}"


def federated_list_key(workflow_id: str, schedule_id: str, app_id: str) -> str:
    """The round's LIST of submission records: ``iot_data:{wf:sched}:<app_id>:federated``."""
    return f"iot_data:{round_tag(workflow_id, schedule_id)}:{_ident('app_id', app_id)}:federated"


def seen_key(workflow_id: str, schedule_id: str) -> str:
    """HASH transaction id -> list index: ``iot_data_seen:{wf:sched}`` (append at most once)."""
    return f"iot_data_seen:{round_tag(workflow_id, schedule_id)}"


def federation_state_key(workflow_id: str, schedule_id: str) -> str:
    """HASH mirror of the round for dashboards: ``federation_state:{wf:sched}``."""
    return f"federation_state:{round_tag(workflow_id, schedule_id)}"


def model_key(workflow_id: str, model_hash: str) -> str:
    """A model blob: ``model:{wf}:<sha512 hex>``."""
    return f"model:{{{_ident('workflow_id', workflow_id)}}}:{_hex('model_hash', model_hash)}"


def heartbeat_key(workflow_id: str, public_key: str) -> str:
    """A node's liveness with a TTL: ``heartbeat:{wf}:<public key hex>``."""
    return f"heartbeat:{{{_ident('workflow_id', workflow_id)}}}:{_hex('public_key', public_key)}"


def heartbeat_pattern(workflow_id: str) -> str:
    """SCAN pattern for every heartbeat of a workflow (identifiers hold no glob characters)."""
    return f"heartbeat:{{{_ident('workflow_id', workflow_id)}}}:*"


def next_open_key(workflow_id: str, round_no: int, batcher: str) -> str:
    """The coordinator's signed ``open_round`` of round ``round_no``, made out to one compute node's
    batch: ``next_open:{wf}:<round>:<batcher public key hex>``."""
    return f"next_open:{{{_ident('workflow_id', workflow_id)}}}:{int(round_no)}:{_hex('batcher', batcher)}"
