"""An in-memory history with CouchDB's write semantics, for unit tests (and a switch to go away)."""
from __future__ import annotations

import copy
import threading
from typing import Any

from trustmesh.history.documents import RoundHistory, model_doc_id, round_doc_id
from trustmesh.history.errors import HistoryUnavailable
from trustmesh.history.ops import HistoryOp, OpWriter

__all__ = ["MemoryHistory"]


class MemoryHistory(OpWriter):
    """Documents and attachments in dicts. Set ``available = False`` to act like CouchDB is away."""

    def __init__(self) -> None:
        self.available = True
        self.writes = 0  # documents or attachments actually changed (an idempotent replay adds none)
        self._lock = threading.Lock()
        self._docs: dict[str, dict[str, dict[str, Any]]] = {}
        self._attachments: dict[tuple[str, str, str], bytes] = {}

    def _check(self) -> None:
        if not self.available:
            raise HistoryUnavailable("memory history: unavailable (test switch)")

    def apply(self, op: HistoryOp) -> None:
        self._check()
        with self._lock:
            if op.kind == "doc":
                docs = self._docs.setdefault(op.db, {})
                if docs.get(op.doc_id) != op.doc:
                    docs[op.doc_id] = copy.deepcopy(op.doc or {})
                    self.writes += 1
            else:
                key = (op.db, op.doc_id, op.name or "data")
                if self._attachments.get(key) != op.data:
                    self._attachments[key] = bytes(op.data or b"")
                    self._docs.setdefault(op.db, {}).setdefault(op.doc_id, {})
                    self.writes += 1

    def apply_many(self, ops: list[HistoryOp]) -> None:
        self._check()
        for op in ops:
            self.apply(op)

    def _submit(self, ops: list[HistoryOp]) -> None:
        self.apply_many(ops)

    def get_doc(self, db: str, doc_id: str) -> dict[str, Any] | None:
        self._check()
        with self._lock:
            doc = self._docs.get(db, {}).get(doc_id)
            return copy.deepcopy(doc) if doc is not None else None

    def _all(self, db: str, doc_type: str) -> list[dict[str, Any]]:
        self._check()
        with self._lock:
            return [copy.deepcopy(d) for d in self._docs.get(db, {}).values() if d.get("type") == doc_type]

    def get_workflow(self, workflow_id: str) -> dict[str, Any] | None:
        return self.get_doc("fl_workflows", workflow_id)

    def get_round(self, workflow_id: str, round_no: int) -> RoundHistory | None:
        doc = self.get_doc("fl_rounds", round_doc_id(workflow_id, round_no))
        return RoundHistory.from_doc(doc) if doc else None

    def list_rounds(self, workflow_id: str) -> list[RoundHistory]:
        docs = [d for d in self._all("fl_rounds", "round") if d["workflow_id"] == workflow_id]
        return [RoundHistory.from_doc(d) for d in sorted(docs, key=lambda d: d["round"])]

    def node_participation(self, public_key: str) -> list[dict[str, Any]]:
        docs = [d for d in self._all("fl_nodes", "participation") if d["public_key"] == public_key]
        return sorted(docs, key=lambda d: (d["workflow_id"], d["round"]))

    def list_models(self, workflow_id: str) -> list[dict[str, Any]]:
        docs = [d for d in self._all("fl_models", "model") if d["workflow_id"] == workflow_id]
        return sorted(docs, key=lambda d: d["version"])

    def get_model_attachment(self, workflow_id: str, model_hash: str) -> bytes | None:
        doc = self.get_doc("fl_models", model_doc_id(workflow_id, model_hash))
        if not doc or not doc.get("attachment"):
            return None
        with self._lock:
            return self._attachments.get(("fl_models", model_doc_id(workflow_id, model_hash), doc["attachment"]))

    def close(self) -> None:
        pass
