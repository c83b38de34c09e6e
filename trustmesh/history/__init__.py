"""CouchDB round history (DESIGN §4): documents, views, a CouchDB client, an outbox, a fake."""
from trustmesh.history.couch import CouchHistory
from trustmesh.history.documents import (
    DATABASES,
    ExcludedSubmission,
    MissingNode,
    ModelVersion,
    ParticipantEntry,
    RoundHistory,
)
from trustmesh.history.errors import (
    HistoryConflict,
    HistoryError,
    HistoryNotFound,
    HistoryRejected,
    HistoryUnavailable,
)
from trustmesh.history.memory import MemoryHistory
from trustmesh.history.ops import HistoryReader, HistoryWriter
from trustmesh.history.outbox import HistoryOutbox

__all__ = [
    "DATABASES", "CouchHistory", "ExcludedSubmission", "HistoryConflict", "HistoryError", "HistoryNotFound",
    "HistoryOutbox", "HistoryReader", "HistoryRejected", "HistoryUnavailable", "HistoryWriter", "MemoryHistory",
    "MissingNode", "ModelVersion", "ParticipantEntry", "RoundHistory",
]
