"""Every state address of TrustMesh-FL: one function per record, all built by ``make_address``.

An address is 70 hex digits: the family namespace, then the first 64 hex digits of sha512 of the key
parts joined by ``/`` (a record-type tag first, so two record types never share an address).
"""
from __future__ import annotations

import hashlib

from trustmesh.contracts.blockinfo import NAMESPACE as BLOCKINFO_NAMESPACE
from trustmesh.contracts.families import FEDERATION, IOT_DATA, Family

__all__ = [
    "BLOCKINFO_NAMESPACE",
    "make_address",
    "node_address",
    "round_address",
    "schedule_address",
    "secagg_address",
    "submission_index_address",
    "workflow_address",
]

SEPARATOR = "/"


def make_address(family: Family, *key_parts: str) -> str:
    """Namespace of ``family`` + 64 hex of sha512 over the parts joined by ``/``.

    Parts must be non-empty and free of ``/`` so that the join is unambiguous.
    """
    if not key_parts:
        raise ValueError("an address needs at least one key part")
    for part in key_parts:
        if not isinstance(part, str) or not part or SEPARATOR in part:
            raise ValueError(f"bad address key part {part!r}")
    digest = hashlib.sha512(SEPARATOR.join(key_parts).encode("utf-8")).hexdigest()
    return family.namespace + digest[:64]


def workflow_address(workflow_id: str) -> str:
    """The workflow record (spec, members, current model, round counter, status)."""
    return make_address(FEDERATION, "workflow", workflow_id)


def round_address(workflow_id: str, round_no: int) -> str:
    """Round ``round_no`` of a workflow (schedule_id, deadline, status, lease, result, evaluation)."""
    return make_address(FEDERATION, "round", workflow_id, str(int(round_no)))


def schedule_address(workflow_id: str, schedule_id: str) -> str:
    """Which round a ``schedule_id`` names; its existence makes schedule ids unique in a workflow."""
    return make_address(FEDERATION, "schedule", workflow_id, schedule_id)


def secagg_address(workflow_id: str, round_no: int) -> str:
    """A secure-aggregation round's phases: advertised keys, members, survivors, reveals."""
    return make_address(FEDERATION, "secagg", workflow_id, str(int(round_no)))


def node_address(workflow_id: str, public_key: str) -> str:
    """A node's record in a workflow (enrolment, last heartbeat)."""
    return make_address(FEDERATION, "node", workflow_id, public_key)


def submission_index_address(workflow_id: str, round_no: int) -> str:
    """The round's submission index (iot-data family): signer key -> update hash, samples, metrics."""
    return make_address(IOT_DATA, "index", workflow_id, str(int(round_no)))
