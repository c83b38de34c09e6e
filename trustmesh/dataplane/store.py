"""The Redis data plane behind one narrow interface, with a real and an in-memory implementation.

Blobs are content-addressed (sha512 hex): storing refuses bytes that do not match their hash, and
every fetch re-checks the hash before returning, so a tampered blob is reported, never used.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from trustmesh.dataplane import keys
from trustmesh.dataplane.append import AppendResult, append_submission, mirror_status, round_key_ttl
from trustmesh.dataplane.client import DEFAULT_TIMEOUT, RedisClient, connect
from trustmesh.dataplane.errors import BlobHashMismatch, mapped_errors
from trustmesh.dataplane.records import RecordError, SubmissionRecord, sha512_hex

__all__ = ["Blob", "BlobReason", "DataPlane", "MemoryDataPlane", "RedisDataPlane", "RoundMirror"]

log = logging.getLogger(__name__)

BlobReason = Literal["ok", "blob_unavailable", "hash_mismatch"]
MODEL_BLOB_TTL = 7 * 24 * 3600
"""Seconds Redis keeps a model blob (initial, aggregated, server state): CouchDB archives accepted
models by hash and the chain keeps every hash, so Redis only caches them."""

_MIRROR_INTS = ("expected_nodes", "submitted_nodes", "round_start_time", "last_submission_time")


@dataclass(frozen=True)
class Blob:
    """A fetched blob: ``data`` only when it hashed right; ``reason`` says why not otherwise."""

    data: bytes | None
    reason: BlobReason

    @property
    def ok(self) -> bool:
        return self.reason == "ok"


@dataclass(frozen=True)
class RoundMirror:
    """The round's dashboard mirror in Redis (the chain stays the truth)."""

    status: str | None = None
    expected_nodes: int | None = None
    submitted_nodes: int | None = None
    round_start_time: int | None = None
    last_submission_time: int | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_hash(cls, raw: dict[str, str]) -> RoundMirror:
        ints: dict[str, int | None] = {}
        for name in _MIRROR_INTS:
            try:
                ints[name] = int(float(raw[name])) if name in raw else None
            except ValueError:
                ints[name] = None
        extra = {k: v for k, v in raw.items() if k not in _MIRROR_INTS and k != "status"}
        return cls(status=raw.get("status"), extra=extra, **ints)


def _check_hash(data: bytes, expected: str) -> None:
    if sha512_hex(data) != expected:
        raise BlobHashMismatch(f"blob does not hash to {expected[:16]}…; refusing to store it")


def _verified(data: bytes | None, expected: str) -> Blob:
    if data is None:
        return Blob(None, "blob_unavailable")
    if sha512_hex(data) != expected:
        return Blob(None, "hash_mismatch")
    return Blob(data, "ok")


def _decode_records(entries: list[bytes], where: str) -> list[SubmissionRecord]:
    records = []
    for index, entry in enumerate(entries):
        try:
            records.append(SubmissionRecord.decode(entry))
        except RecordError as exc:
            log.warning("%s[%d] skipped: %s", where, index, exc)
    return records


@runtime_checkable
class DataPlane(Protocol):
    """What TPs, compute nodes and participants do with Redis; nothing else touches it."""

    def put_update_blob(self, workflow_id: str, schedule_id: str, update_hash: str, data: bytes, *,
                        ttl: int | None = None) -> bool:
        """Store an update blob by its hash (True if written now, False if already there)."""
        ...

    def fetch_update_blob(self, workflow_id: str, schedule_id: str, update_hash: str) -> Blob: ...

    def get_update_blob(self, workflow_id: str, schedule_id: str, update_hash: str) -> bytes | None: ...

    def put_model(self, workflow_id: str, model_hash: str, data: bytes, *, ttl: int | None = None) -> bool: ...

    def fetch_model(self, workflow_id: str, model_hash: str) -> Blob: ...

    def get_model(self, workflow_id: str, model_hash: str) -> bytes | None: ...

    def put_next_open(self, workflow_id: str, round_no: int, batcher: str, transaction: bytes, *, ttl: int) -> None:
        """Hand a compute node the coordinator's signed ``open_round`` for the batch with the verdict."""
        ...

    def get_next_open(self, workflow_id: str, round_no: int, batcher: str) -> bytes | None: ...

    def append_submission(self, workflow_id: str, schedule_id: str, app_id: str, txn_id: str,
                          record_bytes: bytes, expected_nodes: int, now: int) -> AppendResult: ...

    def read_submissions(self, workflow_id: str, schedule_id: str, app_id: str, *,
                         start: int = 0) -> list[SubmissionRecord]:
        """The round's submission records (from list position ``start`` on), committed or not."""
        ...

    def count_submissions(self, workflow_id: str, schedule_id: str, app_id: str) -> int:
        """How many records the round's list holds (a cheap check for new ones)."""
        ...

    def mark_alive(self, workflow_id: str, public_key: str, ttl: int) -> None: ...

    def alive_nodes(self, workflow_id: str) -> set[str]: ...

    def set_round_mirror(self, workflow_id: str, schedule_id: str, *, status: str | None = None,
                         expected_nodes: int | None = None, submitted_nodes: int | None = None,
                         round_start_time: int | None = None, **extra: str | int | float) -> None: ...

    def get_round_mirror(self, workflow_id: str, schedule_id: str) -> RoundMirror | None: ...

    def close(self) -> None: ...


def _mirror_fields(status: str | None, expected_nodes: int | None, submitted_nodes: int | None,
                   round_start_time: int | None, extra: dict[str, str | int | float]) -> dict[str, str]:
    fields: dict[str, str | int | float | None] = {
        "status": status, "expected_nodes": expected_nodes, "submitted_nodes": submitted_nodes,
        "round_start_time": round_start_time, **extra,
    }
    return {k: str(v) for k, v in fields.items() if v is not None}


_FROM_ENV = -1


class RedisDataPlane:
    """The data plane on a Redis server or Redis Cluster (``redis+cluster://`` or ``cluster=True``).

    ``round_ttl``: seconds a round's submission list, seen hash and mirror live after their last
    write (None: forever; default ``TRUSTMESH_ROUND_KEY_TTL`` or 7 days, see ``round_key_ttl``).
    """

    def __init__(self, url: str, *, cluster: bool | None = None, timeout: float = DEFAULT_TIMEOUT,
                 round_ttl: int | None = _FROM_ENV) -> None:
        self.client: RedisClient = connect(url, cluster=cluster, timeout=timeout)
        self.round_ttl = round_key_ttl() if round_ttl == _FROM_ENV else round_ttl

    # ---------------------------------------------------------------- blobs

    def _put_blob(self, key: str, expected_hash: str, data: bytes, ttl: int | None) -> bool:
        _check_hash(data, expected_hash)
        with mapped_errors(f"store {key.split(':', 1)[0]} blob"):
            if self.client.set(key, data, nx=True, ex=ttl):
                return True
            existing = self.client.get(key)
            if isinstance(existing, bytes) and sha512_hex(existing) == expected_hash:
                return False
            # someone squatted the key with bytes that do not match: our verified bytes replace them
            log.warning("replacing a blob that does not match its hash at %s", key)
            self.client.set(key, data, ex=ttl)
            return True

    def _get(self, key: str) -> bytes | None:
        with mapped_errors("fetch blob"):
            value = self.client.get(key)
        return None if value is None else bytes(value)  # type: ignore[arg-type]

    def put_update_blob(self, workflow_id: str, schedule_id: str, update_hash: str, data: bytes, *,
                        ttl: int | None = None) -> bool:
        return self._put_blob(keys.update_key(workflow_id, schedule_id, update_hash), update_hash, data, ttl)

    def fetch_update_blob(self, workflow_id: str, schedule_id: str, update_hash: str) -> Blob:
        return _verified(self._get(keys.update_key(workflow_id, schedule_id, update_hash)), update_hash)

    def get_update_blob(self, workflow_id: str, schedule_id: str, update_hash: str) -> bytes | None:
        return self.fetch_update_blob(workflow_id, schedule_id, update_hash).data

    def put_model(self, workflow_id: str, model_hash: str, data: bytes, *, ttl: int | None = None) -> bool:
        return self._put_blob(keys.model_key(workflow_id, model_hash), model_hash, data, ttl)

    def fetch_model(self, workflow_id: str, model_hash: str) -> Blob:
        return _verified(self._get(keys.model_key(workflow_id, model_hash)), model_hash)

    def get_model(self, workflow_id: str, model_hash: str) -> bytes | None:
        return self.fetch_model(workflow_id, model_hash).data

    def put_next_open(self, workflow_id: str, round_no: int, batcher: str, transaction: bytes, *, ttl: int) -> None:
        with mapped_errors("store the next open_round"):
            self.client.set(keys.next_open_key(workflow_id, round_no, batcher), transaction, ex=ttl)

    def get_next_open(self, workflow_id: str, round_no: int, batcher: str) -> bytes | None:
        return self._get(keys.next_open_key(workflow_id, round_no, batcher))

    # ---------------------------------------------------------------- submissions

    def append_submission(self, workflow_id: str, schedule_id: str, app_id: str, txn_id: str,
                          record_bytes: bytes, expected_nodes: int, now: int) -> AppendResult:
        return append_submission(self.client, workflow_id, schedule_id, app_id, txn_id, record_bytes,
                                 expected_nodes, now, ttl=self.round_ttl)

    def read_submissions(self, workflow_id: str, schedule_id: str, app_id: str, *,
                         start: int = 0) -> list[SubmissionRecord]:
        key = keys.federated_list_key(workflow_id, schedule_id, app_id)
        with mapped_errors("read submissions"):
            entries = self.client.lrange(key, start, -1)
        return _decode_records([e for e in entries if isinstance(e, bytes)], key)  # type: ignore[union-attr]

    def count_submissions(self, workflow_id: str, schedule_id: str, app_id: str) -> int:
        with mapped_errors("count submissions"):
            return int(self.client.llen(keys.federated_list_key(workflow_id, schedule_id, app_id)))  # type: ignore[arg-type]

    # ---------------------------------------------------------------- liveness and mirror

    def mark_alive(self, workflow_id: str, public_key: str, ttl: int) -> None:
        with mapped_errors("heartbeat"):
            self.client.set(keys.heartbeat_key(workflow_id, public_key), str(int(time.time())), ex=int(ttl))

    def alive_nodes(self, workflow_id: str) -> set[str]:
        pattern = keys.heartbeat_pattern(workflow_id)
        prefix = pattern[:-1]
        with mapped_errors("list heartbeats"):
            found = list(self.client.scan_iter(match=pattern, count=500))
        return {(k.decode() if isinstance(k, bytes) else str(k))[len(prefix):] for k in found}

    def set_round_mirror(self, workflow_id: str, schedule_id: str, *, status: str | None = None,
                         expected_nodes: int | None = None, submitted_nodes: int | None = None,
                         round_start_time: int | None = None, **extra: str | int | float) -> None:
        fields = _mirror_fields(status, expected_nodes, submitted_nodes, round_start_time, extra)
        if fields:
            key = keys.federation_state_key(workflow_id, schedule_id)
            with mapped_errors("write round mirror"):
                self.client.hset(key, mapping=dict(fields))  # type: ignore[arg-type]
                if self.round_ttl:
                    self.client.expire(key, self.round_ttl)

    def get_round_mirror(self, workflow_id: str, schedule_id: str) -> RoundMirror | None:
        with mapped_errors("read round mirror"):
            raw = self.client.hgetall(keys.federation_state_key(workflow_id, schedule_id))
        if not raw:
            return None
        return RoundMirror.from_hash({k.decode(): v.decode() for k, v in raw.items()})  # type: ignore[union-attr]

    def close(self) -> None:
        self.client.close()


class MemoryDataPlane:
    """An in-memory data plane for unit tests: the same behaviour, no server. Thread-safe."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._values: dict[str, tuple[bytes, float | None]] = {}
        self._lists: dict[str, list[bytes]] = {}
        self._hashes: dict[str, dict[str, str]] = {}

    def _live(self, key: str) -> bytes | None:
        item = self._values.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and self._clock() >= expires:
            del self._values[key]
            return None
        return value

    def _expiry(self, ttl: int | None) -> float | None:
        return None if ttl is None else self._clock() + ttl

    def _put_blob(self, key: str, expected_hash: str, data: bytes, ttl: int | None) -> bool:
        _check_hash(data, expected_hash)
        with self._lock:
            existing = self._live(key)
            if existing is not None and sha512_hex(existing) == expected_hash:
                return False
            self._values[key] = (bytes(data), self._expiry(ttl))
            return True

    def put_update_blob(self, workflow_id: str, schedule_id: str, update_hash: str, data: bytes, *,
                        ttl: int | None = None) -> bool:
        return self._put_blob(keys.update_key(workflow_id, schedule_id, update_hash), update_hash, data, ttl)

    def fetch_update_blob(self, workflow_id: str, schedule_id: str, update_hash: str) -> Blob:
        with self._lock:
            data = self._live(keys.update_key(workflow_id, schedule_id, update_hash))
        return _verified(data, update_hash)

    def get_update_blob(self, workflow_id: str, schedule_id: str, update_hash: str) -> bytes | None:
        return self.fetch_update_blob(workflow_id, schedule_id, update_hash).data

    def put_model(self, workflow_id: str, model_hash: str, data: bytes, *, ttl: int | None = None) -> bool:
        return self._put_blob(keys.model_key(workflow_id, model_hash), model_hash, data, ttl)

    def fetch_model(self, workflow_id: str, model_hash: str) -> Blob:
        with self._lock:
            data = self._live(keys.model_key(workflow_id, model_hash))
        return _verified(data, model_hash)

    def get_model(self, workflow_id: str, model_hash: str) -> bytes | None:
        return self.fetch_model(workflow_id, model_hash).data

    def put_next_open(self, workflow_id: str, round_no: int, batcher: str, transaction: bytes, *, ttl: int) -> None:
        with self._lock:
            self._values[keys.next_open_key(workflow_id, round_no, batcher)] = (bytes(transaction), self._expiry(ttl))

    def get_next_open(self, workflow_id: str, round_no: int, batcher: str) -> bytes | None:
        with self._lock:
            return self._live(keys.next_open_key(workflow_id, round_no, batcher))

    def tamper(self, key: str, data: bytes) -> None:
        """Test hook: overwrite a stored value as an attacker with write access would."""
        with self._lock:
            self._values[key] = (bytes(data), None)

    def append_submission(self, workflow_id: str, schedule_id: str, app_id: str, txn_id: str,
                          record_bytes: bytes, expected_nodes: int, now: int) -> AppendResult:
        list_key = keys.federated_list_key(workflow_id, schedule_id, app_id)
        seen = keys.seen_key(workflow_id, schedule_id)
        state_key = keys.federation_state_key(workflow_id, schedule_id)
        with self._lock:
            seen_hash = self._hashes.setdefault(seen, {})
            new = txn_id not in seen_hash
            if new:
                entries = self._lists.setdefault(list_key, [])
                entries.append(bytes(record_bytes))
                seen_hash[txn_id] = str(len(entries) - 1)
            submitted = len(seen_hash)
            state = self._hashes.setdefault(state_key, {})
            state.update(expected_nodes=str(int(expected_nodes)), submitted_nodes=str(submitted),
                         last_submission_time=str(int(now)))
            state.setdefault("round_start_time", str(int(now)))
            status = mirror_status(state.get("status"), submitted, int(expected_nodes))
            if status is not None:
                state["status"] = status
            return AppendResult(new=new, index=int(seen_hash[txn_id]), submitted=submitted)

    def read_submissions(self, workflow_id: str, schedule_id: str, app_id: str, *,
                         start: int = 0) -> list[SubmissionRecord]:
        key = keys.federated_list_key(workflow_id, schedule_id, app_id)
        with self._lock:
            entries = list(self._lists.get(key, []))[start:]
        return _decode_records(entries, key)

    def count_submissions(self, workflow_id: str, schedule_id: str, app_id: str) -> int:
        with self._lock:
            return len(self._lists.get(keys.federated_list_key(workflow_id, schedule_id, app_id), []))

    def push_raw(self, workflow_id: str, schedule_id: str, app_id: str, entry: bytes) -> None:
        """Test hook: push a list entry bypassing the append script (garbage, forgeries)."""
        with self._lock:
            self._lists.setdefault(keys.federated_list_key(workflow_id, schedule_id, app_id), []).append(entry)

    def mark_alive(self, workflow_id: str, public_key: str, ttl: int) -> None:
        with self._lock:
            self._values[keys.heartbeat_key(workflow_id, public_key)] = (
                str(int(time.time())).encode(), self._expiry(int(ttl)))

    def alive_nodes(self, workflow_id: str) -> set[str]:
        prefix = keys.heartbeat_pattern(workflow_id)[:-1]
        with self._lock:
            return {k[len(prefix):] for k in list(self._values) if k.startswith(prefix) and self._live(k)}

    def set_round_mirror(self, workflow_id: str, schedule_id: str, *, status: str | None = None,
                         expected_nodes: int | None = None, submitted_nodes: int | None = None,
                         round_start_time: int | None = None, **extra: str | int | float) -> None:
        fields = _mirror_fields(status, expected_nodes, submitted_nodes, round_start_time, extra)
        with self._lock:
            self._hashes.setdefault(keys.federation_state_key(workflow_id, schedule_id), {}).update(fields)

    def get_round_mirror(self, workflow_id: str, schedule_id: str) -> RoundMirror | None:
        with self._lock:
            raw = dict(self._hashes.get(keys.federation_state_key(workflow_id, schedule_id), {}))
        return RoundMirror.from_hash(raw) if raw else None

    def close(self) -> None:
        pass
