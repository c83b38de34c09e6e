"""History writes as small idempotent operations, so they can wait in an outbox and be replayed.

``doc``: put a whole document (overwrite; attachments kept). ``attachment``: put bytes on a
document. Replaying an operation any number of times leaves the same state.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from trustmesh.history.documents import ModelVersion, RoundHistory, participation_docs, sanitize

__all__ = ["HistoryOp", "HistoryReader", "HistoryStore", "HistoryWriter", "OpWriter", "ops_for_model",
           "ops_for_round", "ops_for_workflow"]


@dataclass(frozen=True, kw_only=True)
class HistoryOp:
    kind: Literal["doc", "attachment"]
    db: str
    doc_id: str
    doc: dict[str, Any] | None = None
    name: str | None = None
    content_type: str | None = None
    data: bytes | None = None

    def header_json(self) -> str:
        """Everything but the attachment bytes, as JSON (the outbox row)."""
        return json.dumps({"kind": self.kind, "db": self.db, "doc_id": self.doc_id, "doc": self.doc,
                           "name": self.name, "content_type": self.content_type}, sort_keys=True)

    @classmethod
    def from_row(cls, header: str, data: bytes | None) -> HistoryOp:
        fields = json.loads(header)
        return cls(data=data, **fields)


def ops_for_workflow(workflow_id: str, info: Mapping[str, Any]) -> list[HistoryOp]:
    doc = sanitize({**dict(info), "type": "workflow", "workflow_id": workflow_id})
    return [HistoryOp(kind="doc", db="fl_workflows", doc_id=workflow_id, doc=doc)]


def ops_for_round(history: RoundHistory) -> list[HistoryOp]:
    ops = [HistoryOp(kind="doc", db="fl_rounds", doc_id=history.doc_id, doc=history.to_doc())]
    ops += [HistoryOp(kind="doc", db="fl_nodes", doc_id=doc_id, doc=doc)
            for doc_id, doc in participation_docs(history)]
    return ops


def ops_for_model(version: ModelVersion, data: bytes) -> list[HistoryOp]:
    return [
        HistoryOp(kind="doc", db="fl_models", doc_id=version.doc_id, doc=version.to_doc()),
        HistoryOp(kind="attachment", db="fl_models", doc_id=version.doc_id, name=version.filename,
                  content_type=version.content_type, data=bytes(data)),
    ]


@runtime_checkable
class HistoryWriter(Protocol):
    """What compute nodes and `trustmesh run` write. Never blocks on CouchDB through the outbox."""

    def record_workflow(self, workflow_id: str, info: Mapping[str, Any]) -> None: ...

    def record_round(self, history: RoundHistory) -> None: ...

    def record_model(self, version: ModelVersion, data: bytes) -> None: ...


@runtime_checkable
class HistoryReader(Protocol):
    """What verification, `trustmesh run` and tests read back."""

    def get_workflow(self, workflow_id: str) -> dict[str, Any] | None: ...

    def get_round(self, workflow_id: str, round_no: int) -> RoundHistory | None: ...

    def list_rounds(self, workflow_id: str) -> list[RoundHistory]: ...

    def node_participation(self, public_key: str) -> list[dict[str, Any]]: ...

    def list_models(self, workflow_id: str) -> list[dict[str, Any]]: ...

    def get_model_attachment(self, workflow_id: str, model_hash: str) -> bytes | None: ...


class HistoryStore(Protocol):
    """A place that applies operations right now (CouchDB or memory); the outbox replays into it."""

    def apply(self, op: HistoryOp) -> None: ...


class OpWriter:
    """HistoryWriter on top of ``_submit(ops)``: the record_* methods only build operations."""

    def _submit(self, ops: list[HistoryOp]) -> None:
        raise NotImplementedError

    def record_workflow(self, workflow_id: str, info: Mapping[str, Any]) -> None:
        """The workflow's spec and membership (any JSON-able mapping), one document per workflow."""
        self._submit(ops_for_workflow(workflow_id, info))

    def record_round(self, history: RoundHistory) -> None:
        """The round document and one participation document per node it names."""
        self._submit(ops_for_round(history))

    def record_model(self, version: ModelVersion, data: bytes) -> None:
        """A registry entry and the weights (safetensors or envelope bytes) attached to it."""
        self._submit(ops_for_model(version, data))

    def record_ops(self, ops: list[HistoryOp]) -> None:
        """Several writes (``ops_for_*``) as one step: one durable outbox commit for all of them."""
        self._submit(list(ops))
