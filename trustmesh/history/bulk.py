"""Many history operations as one CouchDB ``_bulk_docs`` write per database (pure: no I/O).

A settled round is about fourteen operations (workflow, round, one participation document per
node, the model and its weights). Applied one at a time each costs a read for ``_rev`` and a write;
planned together they cost one ``_all_docs`` read and one ``_bulk_docs`` write per database. The
plan has the same end state as applying the operations in order: a later operation on a document
wins, attachments not named are kept (as stubs), and a document that already holds what is wanted is
not written again, so replaying a batch adds no revision.
"""
from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from trustmesh.history.ops import HistoryOp

__all__ = ["PendingDoc", "attachment_digest", "body_of", "group_by_db", "plan_writes"]

META_FIELDS = ("_id", "_rev", "_attachments", "_conflicts", "_revs_info", "_deleted")


def attachment_digest(data: bytes) -> str:
    """CouchDB's digest of an attachment body: ``md5-`` + base64 of its MD5."""
    return "md5-" + base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324 - CouchDB's digest


def body_of(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A document without CouchDB's metadata fields."""
    return {k: v for k, v in doc.items() if k not in META_FIELDS}


@dataclass
class PendingDoc:
    """What a batch wants one document to hold: a body (None: keep the current one) and attachments."""

    body: dict[str, Any] | None = None
    attachments: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # name -> (content type, bytes)


def group_by_db(ops: Iterable[HistoryOp]) -> dict[str, dict[str, PendingDoc]]:
    """Fold operations in order into the final wish per document, per database."""
    grouped: dict[str, dict[str, PendingDoc]] = {}
    for op in ops:
        pending = grouped.setdefault(op.db, {}).setdefault(op.doc_id, PendingDoc())
        if op.kind == "doc":
            pending.body = body_of(op.doc or {})
        elif op.kind == "attachment":
            pending.attachments[op.name or "data"] = (op.content_type or "application/octet-stream", op.data or b"")
        else:
            raise ValueError(f"unknown history operation {op.kind!r}")
    return grouped


def _stub(stub: Mapping[str, Any]) -> dict[str, Any]:
    return {"stub": True, "content_type": stub.get("content_type"), "digest": stub.get("digest"),
            "length": stub.get("length")}


def plan_writes(wanted: Mapping[str, PendingDoc], current: Mapping[str, dict[str, Any] | None]) -> list[dict[str, Any]]:
    """The ``_bulk_docs`` documents that bring ``current`` (doc id -> document with ``_rev`` and
    attachment stubs, or None) to ``wanted``; documents already there are left out."""
    docs: list[dict[str, Any]] = []
    for doc_id, pending in wanted.items():
        now = current.get(doc_id)
        stubs: Mapping[str, Any] = (now or {}).get("_attachments") or {}
        body = pending.body if pending.body is not None else body_of(now or {})
        attachments: dict[str, Any] = {name: _stub(stub) for name, stub in stubs.items()}
        changed = now is None or body != body_of(now)
        for name, (content_type, data) in pending.attachments.items():
            stub = stubs.get(name)
            if stub is not None and stub.get("digest") == attachment_digest(data) and stub.get("length") == len(data):
                continue
            attachments[name] = {"content_type": content_type, "data": base64.b64encode(data).decode()}
            changed = True
        if not changed:
            continue
        doc: dict[str, Any] = {**body, "_id": doc_id}
        if now is not None:
            doc["_rev"] = now["_rev"]
        if attachments:
            doc["_attachments"] = attachments
        docs.append(doc)
    return docs
