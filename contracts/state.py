"""Typed reads of state records for clients and processors (compute nodes, dashboards, verify-round).

Give any object with ``get(address) -> bytes | None`` (a ``MappingView`` over fetched state, or an
adapter over the ledger client) and get validated records back.
"""
from __future__ import annotations

from typing import TypeVar

from trustmesh.contracts import cbor
from trustmesh.contracts.addresses import node_address
from trustmesh.contracts.errors import SchemaError, StateCorrupt
from trustmesh.contracts.records import NodeRecord
from trustmesh.contracts.rules.common import (
    MAX_STATE_BYTES,
    load_index,
    load_round,
    load_workflow,
    read_record,
)
from trustmesh.contracts.schema import Record
from trustmesh.contracts.view import StateView

__all__ = ["decode_record", "load_index", "load_node", "load_round", "load_workflow", "read_record"]

R = TypeVar("R", bound=Record)


def decode_record(cls: type[R], data: bytes) -> R:
    """A state record from its bytes; StateCorrupt if they do not match the schema."""
    try:
        return cls.from_obj(cbor.decode(data, max_bytes=MAX_STATE_BYTES))
    except SchemaError as exc:
        raise StateCorrupt(f"{cls.__name__}: {exc}") from exc


def load_node(view: StateView, workflow_id: str, public_key: str) -> NodeRecord | None:
    """A node's record in a workflow (None if it never enrolled nor sent a heartbeat)."""
    return read_record(view, node_address(workflow_id, public_key), NodeRecord)
