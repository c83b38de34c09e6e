"""Design documents with the views Fauxton shows (JavaScript map functions, CouchDB and PouchDB)."""
from __future__ import annotations

from typing import Any

__all__ = ["DESIGN_DOCS"]

DESIGN_DOCS: dict[str, dict[str, Any]] = {
    "fl_workflows": {
        "_id": "_design/workflows",
        "language": "javascript",
        "views": {
            "by_status": {"map": "function (doc) { if (doc.type === 'workflow') "
                                 "{ emit([doc.status || null, doc.workflow_id], null); } }"},
        },
    },
    "fl_rounds": {
        "_id": "_design/rounds",
        "language": "javascript",
        "views": {
            "by_workflow": {
                "map": "function (doc) { if (doc.type === 'round') { emit([doc.workflow_id, doc.round], "
                       "{status: doc.status, accuracy: doc.accuracy, loss: doc.loss, "
                       "model_hash: doc.model_hash, participants: doc.participants.length, "
                       "missing: doc.missing.length}); } }",
                "reduce": "_count",
            },
        },
    },
    "fl_nodes": {
        "_id": "_design/participation",
        "language": "javascript",
        "views": {
            "by_node": {
                "map": "function (doc) { if (doc.type === 'participation') { "
                       "emit([doc.public_key, doc.workflow_id, doc.round], {status: doc.status, "
                       "included: doc.included, reason: doc.reason, num_samples: doc.num_samples}); } }",
                "reduce": "_count",
            },
            "by_round": {
                "map": "function (doc) { if (doc.type === 'participation') { "
                       "emit([doc.workflow_id, doc.round, doc.status], doc.public_key); } }",
                "reduce": "_count",
            },
        },
    },
    "fl_models": {
        "_id": "_design/models",
        "language": "javascript",
        "views": {
            "by_workflow": {
                "map": "function (doc) { if (doc.type === 'model') { emit([doc.workflow_id, doc.version], "
                       "{model_hash: doc.model_hash, round: doc.round, status: doc.status, "
                       "accuracy: doc.accuracy}); } }",
            },
        },
    },
}
