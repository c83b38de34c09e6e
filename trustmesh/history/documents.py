"""What the round history records, as typed values and their CouchDB documents (pure, no I/O).

One document a round in ``fl_rounds`` (id ``<workflow_id>:<round>``); one participation document
per node and round in ``fl_nodes``; a version registry in ``fl_models`` with the weights attached.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "DATABASES", "ExcludedSubmission", "MissingNode", "MissingReason", "ModelVersion", "ParticipantEntry",
    "RoundHistory", "model_doc_id", "node_doc_id", "participation_docs", "round_doc_id", "sanitize",
]

DATABASES = ("fl_workflows", "fl_rounds", "fl_nodes", "fl_models")
MissingReason = Literal["no_heartbeat", "late", "rejected"]


def sanitize(value: Any) -> Any:
    """JSON-safe copy: tuples become lists, non-finite floats become None (CouchDB refuses NaN)."""
    if isinstance(value, dict):
        return {str(k): sanitize(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [sanitize(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def round_doc_id(workflow_id: str, round_no: int) -> str:
    return f"{workflow_id}:{int(round_no)}"


def node_doc_id(workflow_id: str, round_no: int, public_key: str) -> str:
    return f"{workflow_id}:{int(round_no)}:{public_key}"


def model_doc_id(workflow_id: str, model_hash: str) -> str:
    return f"{workflow_id}:{model_hash}"


@dataclass(frozen=True, kw_only=True)
class ParticipantEntry:
    """A node whose submission is in the round's on-chain index."""

    public_key: str
    num_samples: int
    update_hash: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class MissingNode:
    """An expected node with no usable submission, and why."""

    public_key: str
    reason: MissingReason
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class ExcludedSubmission:
    """An indexed submission left out of the aggregate, with the on-chain reason code."""

    update_hash: str
    reason: str
    public_key: str | None = None


@dataclass(frozen=True, kw_only=True)
class RoundHistory:
    """Everything worth keeping about one round, written once the round is settled (or failed)."""

    workflow_id: str
    round: int
    schedule_id: str
    status: str
    participants: tuple[ParticipantEntry, ...] = ()
    missing: tuple[MissingNode, ...] = ()
    included: tuple[str, ...] = ()
    excluded: tuple[ExcludedSubmission, ...] = ()
    base_model_hash: str | None = None
    model_version: int | None = None
    model_hash: str | None = None
    accuracy: float | None = None
    loss: float | None = None
    timings: dict[str, float] = field(default_factory=dict)
    epsilon_spent: float | None = None
    aggregator: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def doc_id(self) -> str:
        return round_doc_id(self.workflow_id, self.round)

    def to_doc(self) -> dict[str, Any]:
        doc = {
            "type": "round",
            "workflow_id": self.workflow_id,
            "round": int(self.round),
            "schedule_id": self.schedule_id,
            "status": self.status,
            "participants": [vars(p) for p in self.participants],
            "missing": [vars(m) for m in self.missing],
            "included": list(self.included),
            "excluded": [vars(e) for e in self.excluded],
            "base_model_hash": self.base_model_hash,
            "model_version": self.model_version,
            "model_hash": self.model_hash,
            "accuracy": self.accuracy,
            "loss": self.loss,
            "timings": dict(self.timings),
            "epsilon_spent": self.epsilon_spent,
            "aggregator": self.aggregator,
            "extra": dict(self.extra),
        }
        return sanitize(doc)  # type: ignore[no-any-return]

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> RoundHistory:
        return cls(
            workflow_id=doc["workflow_id"], round=int(doc["round"]), schedule_id=doc["schedule_id"],
            status=doc["status"],
            participants=tuple(ParticipantEntry(**p) for p in doc.get("participants", [])),
            missing=tuple(MissingNode(**m) for m in doc.get("missing", [])),
            included=tuple(doc.get("included", [])),
            excluded=tuple(ExcludedSubmission(**e) for e in doc.get("excluded", [])),
            base_model_hash=doc.get("base_model_hash"), model_version=doc.get("model_version"),
            model_hash=doc.get("model_hash"), accuracy=doc.get("accuracy"), loss=doc.get("loss"),
            timings=dict(doc.get("timings") or {}), epsilon_spent=doc.get("epsilon_spent"),
            aggregator=doc.get("aggregator"), extra=dict(doc.get("extra") or {}),
        )


def participation_docs(history: RoundHistory) -> list[tuple[str, dict[str, Any]]]:
    """One ``fl_nodes`` document per node named by the round: submitted (included or not) or missing."""
    excluded = {e.update_hash: e.reason for e in history.excluded}
    included = set(history.included)
    docs: list[tuple[str, dict[str, Any]]] = []
    base = {"type": "participation", "workflow_id": history.workflow_id, "round": int(history.round),
            "schedule_id": history.schedule_id}
    for p in history.participants:
        doc = {**base, "public_key": p.public_key, "status": "submitted", "num_samples": p.num_samples,
               "update_hash": p.update_hash, "metrics": dict(p.metrics),
               "included": p.update_hash in included if p.update_hash else False,
               "reason": excluded.get(p.update_hash or "")}
        docs.append((node_doc_id(history.workflow_id, history.round, p.public_key), sanitize(doc)))
    for m in history.missing:
        doc = {**base, "public_key": m.public_key, "status": "missing", "num_samples": 0,
               "update_hash": None, "metrics": {}, "included": False, "reason": m.reason, "detail": m.detail}
        docs.append((node_doc_id(history.workflow_id, history.round, m.public_key), sanitize(doc)))
    return docs


@dataclass(frozen=True, kw_only=True)
class ModelVersion:
    """An entry of the model registry; the weights travel beside it as an attachment."""

    workflow_id: str
    model_hash: str
    version: int
    round: int | None = None
    status: str = "accepted"
    accuracy: float | None = None
    loss: float | None = None
    filename: str = "model.bin"
    content_type: str = "application/octet-stream"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def doc_id(self) -> str:
        return model_doc_id(self.workflow_id, self.model_hash)

    def to_doc(self) -> dict[str, Any]:
        return sanitize({  # type: ignore[no-any-return]
            "type": "model", "workflow_id": self.workflow_id, "model_hash": self.model_hash,
            "version": int(self.version), "round": self.round, "status": self.status,
            "accuracy": self.accuracy, "loss": self.loss, "attachment": self.filename,
            "content_type": self.content_type, "extra": dict(self.extra),
        })
