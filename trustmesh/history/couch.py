"""CouchDB round history over HTTP with ibmcloudant (Apache CouchDB 3 or PouchDB Server).

Every request authenticates and asks for JSON (PouchDB Server answers text/plain otherwise and
crashes on an anonymous ``PUT /db``). Request bodies are sent uncompressed: PouchDB Server stores
gzip-encoded attachment bodies as they come, undecoded.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from ibm_cloud_sdk_core.api_exception import ApiException
from ibm_cloud_sdk_core.authenticators import BasicAuthenticator, NoAuthAuthenticator
from ibmcloudant.cloudant_v1 import BulkDocs, CloudantV1

from trustmesh.errors import ConfigError
from trustmesh.history.bulk import attachment_digest, body_of, group_by_db, plan_writes
from trustmesh.history.designs import DESIGN_DOCS
from trustmesh.history.documents import DATABASES, RoundHistory, model_doc_id, round_doc_id
from trustmesh.history.errors import (
    HistoryConflict,
    HistoryNotFound,
    HistoryRejected,
    HistoryUnavailable,
    mapped_errors,
)
from trustmesh.history.ops import HistoryOp, OpWriter

__all__ = ["CONFLICT_RETRIES", "DEFAULT_TIMEOUT", "CouchHistory", "split_credentials"]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
CONFLICT_RETRIES = 8
_DESIGN = "_design/"


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """``http://user:pass@host:port`` -> (``http://host:port``, (user, pass)); no user -> None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"CouchDB URL must be http(s)://user:password@host:port, got {url!r}")
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    bare = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    if parts.username is None:
        return bare, None
    return bare, (unquote(parts.username), unquote(parts.password or ""))


class CouchHistory(OpWriter):
    """Writes apply at once (use HistoryOutbox to make them durable and non-blocking); reads as well."""

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url, credentials = split_credentials(url)
        if credentials is None:
            log.warning("CouchDB URL without credentials: PouchDB Server crashes on anonymous writes")
            authenticator: Any = NoAuthAuthenticator()
        else:
            authenticator = BasicAuthenticator(*credentials)
        self.service = CloudantV1(authenticator=authenticator)
        self.service.set_service_url(self.url)
        self.service.set_enable_gzip_compression(False)
        self.service.set_default_headers({"Accept": "application/json"})
        self.service.set_http_config({"timeout": timeout})
        self._ensured = False

    # ---------------------------------------------------------------- setup

    def ensure_databases(self) -> None:
        """Create the four databases and their design documents (idempotent)."""
        for db in DATABASES:
            with mapped_errors(f"create {db}"):
                existing = self.service.get_all_dbs().get_result()
                if db not in existing:
                    try:
                        self.service.put_database(db=db).get_result()
                    except ApiException as exc:  # lost a race with another creator: fine, it exists
                        if exc.code != 412:
                            raise
            design = DESIGN_DOCS[db]
            self.put_doc(db, design["_id"], design)
        self._ensured = True

    # ---------------------------------------------------------------- primitive reads and writes

    def get_doc(self, db: str, doc_id: str) -> dict[str, Any] | None:
        """The document with ``_rev`` (and attachment stubs), or None when it does not exist."""
        with mapped_errors(f"get {db}/{doc_id}"):
            try:
                if doc_id.startswith(_DESIGN):
                    reply = self.service.get_design_document(db=db, ddoc=doc_id[len(_DESIGN):])
                else:
                    reply = self.service.get_document(db=db, doc_id=doc_id)
                return dict(reply.get_result())
            except ApiException as exc:
                if exc.code == 404:
                    return None
                raise

    def put_doc(self, db: str, doc_id: str, doc: Mapping[str, Any]) -> bool:
        """Overwrite ``doc_id`` with ``doc`` (keeping its attachments); False if it already held it."""
        wanted = body_of(doc)
        for _attempt in range(CONFLICT_RETRIES):
            current = self.get_doc(db, doc_id)
            body: dict[str, Any] = {**wanted, "_id": doc_id}
            if current is not None:
                if body_of(current) == wanted:
                    return False
                body["_rev"] = current["_rev"]
                if current.get("_attachments"):
                    body["_attachments"] = {name: {"stub": True, "content_type": stub.get("content_type"),
                                                   "digest": stub.get("digest"), "length": stub.get("length")}
                                            for name, stub in current["_attachments"].items()}
            try:
                with mapped_errors(f"put {db}/{doc_id}"):
                    if doc_id.startswith(_DESIGN):
                        self.service.put_design_document(db=db, ddoc=doc_id[len(_DESIGN):],
                                                         design_document=body).get_result()
                    else:
                        self.service.put_document(db=db, doc_id=doc_id, document=body).get_result()
                return True
            except HistoryConflict:
                continue
        raise HistoryConflict(f"couchdb: {db}/{doc_id} kept changing over {CONFLICT_RETRIES} attempts")

    def put_attachment(self, db: str, doc_id: str, name: str, data: bytes, content_type: str) -> bool:
        """Attach ``data`` as ``name`` (creating the document if needed); False if already identical."""
        for _attempt in range(CONFLICT_RETRIES):
            current = self.get_doc(db, doc_id)
            stub = (current or {}).get("_attachments", {}).get(name)
            if stub is not None and stub.get("digest") == attachment_digest(data) and stub.get("length") == len(data):
                return False
            try:
                with mapped_errors(f"attach {db}/{doc_id}/{name}"):
                    self.service.put_attachment(
                        db=db, doc_id=doc_id, attachment_name=name, attachment=data,
                        content_type=content_type, rev=current["_rev"] if current else None,
                    ).get_result()
                return True
            except HistoryConflict:
                continue
        raise HistoryConflict(f"couchdb: {db}/{doc_id}/{name} kept changing over {CONFLICT_RETRIES} attempts")

    def get_attachment(self, db: str, doc_id: str, name: str) -> bytes | None:
        with mapped_errors(f"get {db}/{doc_id}/{name}"):
            try:
                reply = self.service.get_attachment(db=db, doc_id=doc_id, attachment_name=name,
                                                    headers={"Accept": "*/*"}).get_result()
            except ApiException as exc:
                if exc.code == 404:
                    return None
                raise
        return bytes(reply.content)

    def view(self, db: str, ddoc: str, view: str, *, start_key: Any, end_key: Any,
             include_docs: bool = False) -> list[dict[str, Any]]:
        """Rows of a design-doc view between two keys (reduce off)."""
        with mapped_errors(f"view {db}/{ddoc}/{view}"):
            result = self.service.post_view(db=db, ddoc=ddoc, view=view, start_key=start_key, end_key=end_key,
                                            include_docs=include_docs, reduce=False).get_result()
        return list(result.get("rows", []))

    # ---------------------------------------------------------------- HistoryStore / OpWriter

    def apply(self, op: HistoryOp) -> None:
        """Apply one outbox operation now (idempotent); creates the databases first if needed."""
        if not self._ensured:
            self.ensure_databases()
        try:
            self._apply(op)
        except HistoryNotFound:  # the server lost its databases (in-memory restart, wiped volume)
            self.ensure_databases()
            self._apply(op)

    def _apply(self, op: HistoryOp) -> None:
        if op.kind == "doc":
            self.put_doc(op.db, op.doc_id, op.doc or {})
        elif op.kind == "attachment":
            self.put_attachment(op.db, op.doc_id, op.name or "data", op.data or b"",
                                op.content_type or "application/octet-stream")
        else:  # pragma: no cover - rows are written by this package only
            raise HistoryUnavailable(f"unknown history operation {op.kind!r}")

    def apply_many(self, ops: Sequence[HistoryOp]) -> None:
        """Apply operations in order, as one ``_all_docs`` read and one ``_bulk_docs`` write per
        database (same end state as ``apply`` one by one). A document that changed under us between
        the read and the write (409) is applied alone, with ``apply``'s conflict retries."""
        if not self._ensured:
            self.ensure_databases()
        for db, wanted in group_by_db(ops).items():
            try:
                conflicted = self._bulk_write(db, wanted)
            except HistoryNotFound:  # the server lost its databases
                self.ensure_databases()
                conflicted = self._bulk_write(db, wanted)
            for op in ops:
                if op.db == db and op.doc_id in conflicted:
                    self._apply(op)

    def _bulk_write(self, db: str, wanted: Mapping[str, Any]) -> set[str]:
        """Write one database's part of a batch; the ids that conflicted."""
        with mapped_errors(f"read {len(wanted)} documents of {db}"):
            rows = self.service.post_all_docs(db=db, keys=list(wanted), include_docs=True).get_result()["rows"]
        current = {row["key"]: row.get("doc") for row in rows if "error" not in row}
        docs = plan_writes(wanted, current)
        if not docs:
            return set()
        with mapped_errors(f"write {len(docs)} documents of {db}"):
            results = self.service.post_bulk_docs(db=db, bulk_docs=BulkDocs.from_dict({"docs": docs})).get_result()
        conflicted = set()
        for result in results:
            if result.get("error") == "conflict":
                conflicted.add(result["id"])
            elif result.get("error"):
                raise HistoryRejected(f"couchdb: write {db}/{result.get('id')}: {result['error']}: "
                                      f"{result.get('reason')}")
        return conflicted

    def _submit(self, ops: list[HistoryOp]) -> None:
        self.apply_many(ops)

    # ---------------------------------------------------------------- HistoryReader

    def get_workflow(self, workflow_id: str) -> dict[str, Any] | None:
        doc = self.get_doc("fl_workflows", workflow_id)
        return body_of(doc) if doc else None

    def get_round(self, workflow_id: str, round_no: int) -> RoundHistory | None:
        doc = self.get_doc("fl_rounds", round_doc_id(workflow_id, round_no))
        return RoundHistory.from_doc(doc) if doc else None

    def list_rounds(self, workflow_id: str) -> list[RoundHistory]:
        rows = self.view("fl_rounds", "rounds", "by_workflow", start_key=[workflow_id],
                         end_key=[workflow_id, {}], include_docs=True)
        return [RoundHistory.from_doc(row["doc"]) for row in rows]

    def node_participation(self, public_key: str) -> list[dict[str, Any]]:
        rows = self.view("fl_nodes", "participation", "by_node", start_key=[public_key],
                         end_key=[public_key, {}], include_docs=True)
        return [body_of(row["doc"]) for row in rows]

    def list_models(self, workflow_id: str) -> list[dict[str, Any]]:
        rows = self.view("fl_models", "models", "by_workflow", start_key=[workflow_id],
                         end_key=[workflow_id, {}], include_docs=True)
        return [body_of(row["doc"]) for row in rows]

    def get_model_attachment(self, workflow_id: str, model_hash: str) -> bytes | None:
        doc = self.get_doc("fl_models", model_doc_id(workflow_id, model_hash))
        if doc is None or not doc.get("attachment"):
            return None
        return self.get_attachment("fl_models", doc["_id"], doc["attachment"])

    def close(self) -> None:
        pass
