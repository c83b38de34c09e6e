"""The Redis data plane (DESIGN §4): key names, submission records, the idempotent append, blobs."""
from trustmesh.dataplane import keys
from trustmesh.dataplane.append import AppendResult, append_submission
from trustmesh.dataplane.client import connect
from trustmesh.dataplane.errors import BlobHashMismatch, DataPlaneError
from trustmesh.dataplane.records import RecordError, SubmissionRecord, sha512_hex
from trustmesh.dataplane.store import Blob, DataPlane, MemoryDataPlane, RedisDataPlane, RoundMirror

__all__ = [
    "AppendResult", "Blob", "BlobHashMismatch", "DataPlane", "DataPlaneError", "MemoryDataPlane",
    "RecordError", "RedisDataPlane", "RoundMirror", "SubmissionRecord", "append_submission", "connect",
    "keys", "sha512_hex",
]
