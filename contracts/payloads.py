"""Builders for clients: validated, canonical payload bytes of both families.

A payload that would be rejected by the schema is refused here already (SchemaError), so clients
never sign a transaction that cannot pass.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from trustmesh.contracts import cbor
from trustmesh.contracts.records import MAX_INLINE_UPDATE, SCHEMA_VERSION
from trustmesh.contracts.rules import parse_federation, parse_submission

__all__ = ["SubmissionPayload", "federation_payload", "submission_payload"]


def federation_payload(action: str, **fields: Any) -> bytes:
    """Canonical CBOR of a federation action, e.g. ``federation_payload("close_round", workflow_id=w, round=1)``."""
    record = parse_federation({"schema_version": SCHEMA_VERSION, "action": action, **fields})
    return cbor.encode(record.to_obj())


@dataclass(frozen=True, kw_only=True)
class SubmissionPayload:
    """A submission ready to sign; ``by_reference`` means the blob must be in Redis (SET NX) first."""

    payload: bytes
    update_hash: str
    by_reference: bool


def submission_payload(
    *,
    workflow_id: str,
    round: int,
    schedule_id: str,
    envelope: bytes,
    num_samples: int,
    metrics: dict[str, float] | None = None,
    inline_limit: int = MAX_INLINE_UPDATE,
) -> SubmissionPayload:
    """An iot-data submission of an update envelope: inline up to ``inline_limit`` bytes, else by hash."""
    update_hash = hashlib.sha512(envelope).hexdigest()
    inline = envelope if len(envelope) <= min(inline_limit, MAX_INLINE_UPDATE) else None
    record = parse_submission(
        {
            "schema_version": SCHEMA_VERSION,
            "workflow_id": workflow_id,
            "round": round,
            "schedule_id": schedule_id,
            "update_hash": update_hash,
            "inline": inline,
            "num_samples": num_samples,
            "metrics": dict(metrics or {}),
        }
    )
    return SubmissionPayload(payload=cbor.encode(record.to_obj()), update_hash=update_hash, by_reference=inline is None)
