"""Submission records in the round's Redis list: canonical CBOR maps, decoded strictly.

Written by the iot-data TP (through the Lua append), read by compute nodes and verify-round. A
record only counts when the chain's submission index names its hash; this module just carries it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import cbor2

from trustmesh.errors import DataPlaneError

__all__ = ["MAX_RECORD_BYTES", "RECORD_VERSION", "RecordError", "SubmissionRecord", "sha512_hex"]

RECORD_VERSION = 1
MAX_RECORD_BYTES = 16 * 1024 * 1024
_FIELDS = {"schema_version", "signer", "update_hash", "inline", "num_samples", "metrics", "txn_id"}


class RecordError(DataPlaneError):
    """A list entry is not a valid submission record. Skip that entry; the others stay usable."""


def sha512_hex(data: bytes) -> str:
    """The content hash used for update and model blobs."""
    return hashlib.sha512(data).hexdigest()


@dataclass(frozen=True, kw_only=True)
class SubmissionRecord:
    """One submission as the TP appended it: who, which update (inline bytes or by hash), how much."""

    signer: str
    update_hash: str
    num_samples: int
    txn_id: str
    inline: bytes | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    def encode(self) -> bytes:
        """Canonical CBOR bytes (the list entry)."""
        return cbor2.dumps({
            "schema_version": RECORD_VERSION,
            "signer": self.signer,
            "update_hash": self.update_hash,
            "inline": self.inline,
            "num_samples": self.num_samples,
            "metrics": {str(k): float(v) for k, v in self.metrics.items()},
            "txn_id": self.txn_id,
        }, canonical=True)

    @classmethod
    def decode(cls, data: bytes) -> SubmissionRecord:
        """Parse one list entry, or raise RecordError naming what is wrong."""
        if len(data) > MAX_RECORD_BYTES:
            raise RecordError(f"record of {len(data)} bytes is too large")
        try:
            obj: Any = cbor2.loads(data)
        except Exception as exc:  # hostile bytes: any decoder failure means "not a record"
            raise RecordError(f"undecodable record: {type(exc).__name__}") from exc
        if not isinstance(obj, dict) or set(obj) != _FIELDS:
            raise RecordError("record is not a map with the expected fields")
        if obj["schema_version"] != RECORD_VERSION:
            raise RecordError(f"unknown record schema_version {obj['schema_version']!r}")
        checks = (
            isinstance(obj["signer"], str), isinstance(obj["update_hash"], str),
            isinstance(obj["txn_id"], str), obj["inline"] is None or isinstance(obj["inline"], bytes),
            type(obj["num_samples"]) is int and obj["num_samples"] > 0,
            isinstance(obj["metrics"], dict)
            and all(isinstance(k, str) and isinstance(v, int | float) for k, v in obj["metrics"].items()),
        )
        if not all(checks):
            raise RecordError("record field has the wrong type")
        return cls(signer=obj["signer"], update_hash=obj["update_hash"], num_samples=obj["num_samples"],
                   txn_id=obj["txn_id"], inline=obj["inline"],
                   metrics={k: float(v) for k, v in obj["metrics"].items()})

    @property
    def inline_matches(self) -> bool:
        """True when the record carries its update inline and the bytes hash to ``update_hash``."""
        return self.inline is not None and sha512_hex(self.inline) == self.update_hash
