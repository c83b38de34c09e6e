"""Where a W1 round's time and bytes go, measured from outside the nodes (for bench/w1.py).

* Time: every ledger event of the workflow and every block commit is stamped with the wall clock
  when it reaches the benchmark (chain block times are whole seconds; these are not). A round's
  phases are the gaps between its events: submissions, close, aggregate claim, post, attest,
  evaluate claim, evaluation, and the coordinator opening the next round.
* Training: the participants' own timed ``train_local`` calls (bench/w1_participant.py).
* Bytes on-chain: each committed block fetched by number (the standard Sawtooth client request),
  attributed to the round whose transactions it carries (heartbeats: the round in progress).
* Bytes in Redis: ``MEMORY USAGE`` of every key tagged with the round, plus the round's model blob.
"""
from __future__ import annotations

import json
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sawtooth_sdk.protobuf.client_block_pb2 import ClientBlockGetByNumRequest, ClientBlockGetResponse
from sawtooth_sdk.protobuf.transaction_pb2 import TransactionHeader
from sawtooth_sdk.protobuf.validator_pb2 import Message

from trustmesh.contracts import cbor
from trustmesh.dataplane import keys
from trustmesh.errors import LedgerError
from trustmesh.ledger.client import LedgerClient
from trustmesh.ledger.events import BLOCK_COMMIT, EventStream, subscription
from trustmesh.wakeup import EVENT_TYPES

PHASES = ("submissions", "close", "claim_aggregate", "aggregate_post", "attest", "claim_evaluate",
          "evaluate_record", "open_next")
"""A round's consecutive phases; their sum is the round's wall time (opened r → opened r+1)."""


@dataclass(frozen=True)
class Stamp:
    at: float
    kind: str
    attrs: dict[str, str]


@dataclass
class EventLog:
    """Collects the workflow's events and all block commits, stamped on arrival, in a thread."""

    client: LedgerClient
    workflow_id: str
    stamps: list[Stamp] = field(default_factory=list)
    _stream: EventStream | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> EventLog:
        subs = [subscription(kind, {"workflow_id": self.workflow_id}) for kind in EVENT_TYPES]
        self._stream = self.client.subscribe([*subs, subscription(BLOCK_COMMIT)])
        self._thread = threading.Thread(target=self._read, name="w1-events", daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        assert self._stream is not None
        while not self._stop.is_set():
            event = self._stream.get(timeout=0.5)
            if event is not None:
                attrs = {a.key: a.value for a in event.attributes}
                self.stamps.append(Stamp(time.time(), event.event_type, attrs))

    def save(self, path: Path) -> None:
        """Every stamp as one JSON line (arrival time, event type, attributes), to study a run later."""
        with open(path, "w", encoding="utf-8") as handle:
            for stamp in list(self.stamps):
                handle.write(json.dumps({"at": stamp.at, "type": stamp.kind, "attributes": stamp.attrs})
                             + "\n")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._stream is not None:
            self._stream.close()

    # -- queries --------------------------------------------------------------------------------
    def of_round(self, kind: str, round_no: int, **match: str) -> list[Stamp]:
        want = f"{round_no}"
        return [s for s in self.stamps if s.kind == kind and s.attrs.get("round") == want
                and all(s.attrs.get(k) == v for k, v in match.items())]

    def first(self, kind: str, round_no: int, **match: str) -> float | None:
        found = self.of_round(kind, round_no, **match)
        return found[0].at if found else None

    def block_commits(self) -> list[tuple[float, int]]:
        return [(s.at, int(s.attrs.get("block_num", "-1"))) for s in self.stamps if s.kind == BLOCK_COMMIT]


def read_training(paths: list[Path]) -> dict[int, list[dict[str, Any]]]:
    """Per round, the timed training calls of every participant (with ``submit_start`` added: when
    that participant's submission left, after its local evaluation and encoding)."""
    rounds: dict[int, list[dict[str, Any]]] = {}
    for path in paths:
        if not path.exists():
            continue
        trained: dict[int, dict[str, Any]] = {}
        for line in path.read_text().splitlines():
            if line.strip():
                item = json.loads(line)
                if "submit_start" in item:
                    if int(item["round"]) in trained:
                        trained[int(item["round"])]["submit_start"] = item["submit_start"]
                    continue
                trained[int(item["round"])] = item
                rounds.setdefault(int(item["round"]), []).append(item)
    return rounds


def _gap(later: float | None, earlier: float | None) -> float | None:
    return None if later is None or earlier is None else later - earlier


def round_timing(log: EventLog, round_no: int, training: list[dict[str, Any]]) -> dict[str, Any]:
    """Wall seconds of one round, its phases, the slowest training and the framework overhead."""
    opened = log.first("federation/round-opened", round_no)
    submitted = [s.at for s in log.of_round("iot-data/submitted", round_no)]
    last_submission = max(submitted) if submitted else None
    ready = log.first("federation/round-ready", round_no)
    claim_agg = log.first("federation/task-claimed", round_no, task="aggregate")
    posted = log.first("federation/result-posted", round_no)
    verified = log.first("federation/result-verified", round_no)
    claim_eval = log.first("federation/task-claimed", round_no, task="evaluate")
    settled = (log.first("federation/model-accepted", round_no) or log.first("federation/model-rejected", round_no)
               or log.first("federation/round-failed", round_no))
    next_open = log.first("federation/round-opened", round_no + 1)
    end = next_open if next_open is not None else settled
    phases = {
        "submissions": _gap(last_submission, opened),
        "close": _gap(ready, last_submission),
        "claim_aggregate": _gap(claim_agg, ready),
        "aggregate_post": _gap(posted, claim_agg),
        "attest": _gap(verified, posted),
        "claim_evaluate": _gap(claim_eval, verified),
        "evaluate_record": _gap(settled, claim_eval),
        "open_next": _gap(next_open, settled),
    }
    seconds = _gap(end, opened)
    slowest = max((t["seconds"] for t in training), default=None)
    slowest_wall = max((t["end"] - t["start"] for t in training), default=None)
    # The participant side of "submissions": waking on the event and fetching the base model
    # (round opened -> last training start), and encoding + submitting after training.
    start_lag = max((t["start"] for t in training), default=None)
    end_last = max((t["end"] for t in training), default=None)
    # The tail after training: each participant's own work (local evaluation, delta, encoding) until
    # its submission leaves, then hashing, the Redis SET, the transaction and its block.
    sent_last = max((t["submit_start"] for t in training if "submit_start" in t), default=None)
    local_work = max((t["submit_start"] - t["end"] for t in training if "submit_start" in t), default=None)
    blocks = [(at, num) for at, num in log.block_commits()
              if opened is not None and end is not None and opened < at <= end]
    intervals = [b[0] - a[0] for a, b in zip(blocks, blocks[1:], strict=False)]
    return {
        "opened": opened, "end": end, "seconds": seconds, "includes_next_open": next_open is not None,
        "submissions": len(submitted), "trained": len(training),
        "slowest_train_s": slowest, "slowest_train_wall_s": slowest_wall,
        "overhead_s": None if seconds is None or slowest is None else seconds - slowest,
        "dispatch_s": _gap(start_lag, opened), "submit_tail_s": _gap(last_submission, end_last),
        "local_work_s": local_work, "send_to_commit_s": _gap(last_submission, sent_last),
        "phases": phases, "blocks": len(blocks),
        "block_interval_s": statistics.fmean(intervals) if intervals else None,
    }


# -- bytes on-chain --------------------------------------------------------------------------------
def fetch_block(client: LedgerClient, block_num: int) -> bytes | None:
    """The serialized block ``block_num`` (CLIENT_BLOCK_GET_BY_NUM), or None if there is none."""
    request = ClientBlockGetByNumRequest(block_num=block_num).SerializeToString()
    _, reply = client.request(Message.CLIENT_BLOCK_GET_BY_NUM_REQUEST, request)
    response = ClientBlockGetResponse.FromString(reply.content)
    if response.status != ClientBlockGetResponse.OK:
        return None
    return bytes(response.block.SerializeToString())


def _round_of(family: str, payload: bytes) -> tuple[int | None, str]:
    """(round named by a transaction, what it is) for TrustMesh families; (None, family) otherwise."""
    if family not in ("federation", "iot-data"):
        return None, family
    try:
        doc = cbor.decode(payload, max_bytes=len(payload) + 1)
    except Exception:  # not ours to judge here; counted under its family
        return None, family
    if not isinstance(doc, dict):
        return None, family
    what = str(doc.get("action", "submit")) if family == "federation" else "submit"
    round_no = doc.get("round")
    return (int(round_no) if isinstance(round_no, int) else None), what


def chain_bytes_per_round(client: LedgerClient, workflow_id: str, last_block: int) -> dict[str, Any]:
    """Block bytes per round (and per transaction kind) for blocks 1..last_block of this devnet."""
    from sawtooth_sdk.protobuf.block_pb2 import Block

    per_round: dict[int, dict[str, Any]] = {}
    setup = {"bytes": 0, "blocks": 0}
    current = 0
    for num in range(1, last_block + 1):
        raw = fetch_block(client, num)
        if raw is None:
            continue
        block = Block.FromString(raw)
        rounds_here: list[int] = []
        kinds: dict[str, int] = {}
        for batch in block.batches:
            for txn in batch.transactions:
                header = TransactionHeader.FromString(txn.header)
                round_no, what = _round_of(header.family_name, txn.payload)
                size = len(txn.SerializeToString())
                kinds[what] = kinds.get(what, 0) + size
                if what == "open_round" and round_no is not None:
                    current = round_no
                if round_no is not None:
                    rounds_here.append(round_no)
        owner = max(rounds_here) if rounds_here else current
        if owner == 0:
            setup["bytes"] += len(raw)
            setup["blocks"] += 1
            continue
        entry = per_round.setdefault(owner, {"bytes": 0, "blocks": 0, "txn_bytes": {}})
        entry["bytes"] += len(raw)
        entry["blocks"] += 1
        for what, size in kinds.items():
            entry["txn_bytes"][what] = entry["txn_bytes"].get(what, 0) + size
    return {"rounds": per_round, "setup": setup}


# -- bytes in Redis ---------------------------------------------------------------------------------
def redis_bytes_of_round(admin: Any, workflow_id: str, schedule_id: str, model_hash: str | None) -> dict[str, int]:
    """MEMORY USAGE of the round's tagged keys and its model blob; payload bytes of its blobs."""
    tag = keys.round_tag(workflow_id, schedule_id)
    names = list(admin.scan_iter(match=f"*{tag}*", count=1000))
    if model_hash:
        names.append(keys.model_key(workflow_id, model_hash).encode())
    memory = payload = 0
    for name in names:
        used = admin.memory_usage(name, samples=0)
        if used is None:
            continue
        memory += int(used)
        if admin.type(name) in (b"string", "string"):
            payload += int(admin.strlen(name))
    return {"memory_bytes": memory, "blob_bytes": payload, "keys": len(names)}


def safe_last_block(log: EventLog) -> int:
    commits = log.block_commits()
    if not commits:
        raise LedgerError("no block commit was seen")
    return max(num for _, num in commits)
