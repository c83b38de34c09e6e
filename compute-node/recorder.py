"""The compute node's round history writer: CouchDB behind a persistent outbox.

Writes never block the round: they land in a local SQLite outbox first and are replayed into
CouchDB with backoff, so a CouchDB outage or a compute-node crash loses no history.
"""
from __future__ import annotations

from pathlib import Path

from trustmesh.contracts.records import WorkflowRecord
from trustmesh.history.couch import CouchHistory
from trustmesh.history.documents import ModelVersion, RoundHistory
from trustmesh.history.ops import ops_for_model, ops_for_round, ops_for_workflow
from trustmesh.history.outbox import HistoryOutbox


class HistoryRecorder:
    """Turns settled rounds into history writes (round, participation, accepted model)."""

    def __init__(self, outbox: HistoryOutbox) -> None:
        self.outbox = outbox

    def record_round(self, doc: RoundHistory, *, model_blob: bytes | None, workflow: WorkflowRecord) -> None:
        """The workflow, the round (with its participation documents) and the accepted model, queued
        in one outbox commit."""
        ops = ops_for_workflow(workflow.workflow_id, {
            "coordinator": workflow.coordinator, "participants": list(workflow.participants),
            "compute_nodes": list(workflow.compute_nodes), "model": workflow.spec.model,
            "rounds": workflow.spec.rounds, "privacy_cap": workflow.privacy_cap,
            "status": workflow.status, "last_round": workflow.last_round,
        })
        ops += ops_for_round(doc)
        if model_blob is not None and doc.model_hash is not None:
            version = ModelVersion(
                workflow_id=doc.workflow_id, model_hash=doc.model_hash, version=doc.model_version or 0,
                round=doc.round, status=doc.status, accuracy=doc.accuracy, loss=doc.loss,
                filename="model.cbor", content_type="application/cbor",
            )
            ops += ops_for_model(version, model_blob)
        self.outbox.record_ops(ops)

    def close(self) -> None:
        self.outbox.flush(timeout=10.0)
        self.outbox.close()


def open_recorder(couchdb_url: str, outbox_path: Path) -> HistoryRecorder:
    # CouchHistory creates its databases and design documents before its first write.
    return HistoryRecorder(HistoryOutbox(outbox_path, CouchHistory(couchdb_url)))
