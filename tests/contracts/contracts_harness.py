"""An in-memory ledger for the contract tests: a dict of state, BlockInfo "now", and action builders."""
from __future__ import annotations

import functools
import hashlib
from typing import Any

from sawtooth_sdk.protobuf.block_info_pb2 import BlockInfo, BlockInfoConfig

from trustmesh.contracts import blockinfo, cbor
from trustmesh.contracts.addresses import round_address, submission_index_address, workflow_address
from trustmesh.contracts.families import FEDERATION, IOT_DATA, Family
from trustmesh.contracts.records import RoundRecord, SubmissionIndex, WorkflowRecord
from trustmesh.contracts.rules import Event, Outcome, apply_federation, apply_submission, declared_addresses
from trustmesh.contracts.view import MappingView


def key(name: str) -> str:
    """A well-formed compressed public key derived from a name (the rules only check its form)."""
    return "02" + hashlib.sha256(name.encode()).hexdigest()


def digest(text: str) -> str:
    return hashlib.sha512(text.encode()).hexdigest()


COORD = key("coordinator")
P1, P2, P3 = key("p1"), key("p2"), key("p3")
C1, C2, C3 = key("c1"), key("c2"), key("c3")
OUTSIDER = key("outsider")
INITIAL = digest("initial model")
WF = "mnist"


def spec(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "app_id": "local-train",
        "model": "mlp",
        "rounds": 3,
        "round_timeout": 60,
        "min_nodes_required": 2,
        "expected_nodes": 3,
        "enrolment": "closed",
        "attestations_required": 1,
        "lease_seconds": 30,
        "max_samples_per_node": 1000,
        "training": {"lr": 0.05, "momentum": 0.0, "batch_size": 32, "local_epochs": 3, "fedprox_mu": 0.0},
        "aggregation": {"name": "fedavg", "params": {}, "norm_bound": None},
        "privacy": {
            "dp": {"mode": "none", "clip": None, "noise_multiplier": None, "epsilon": None, "delta": None},
            "secure_aggregation": {"enabled": False, "threshold": None},
        },
        "gate": {"min_accuracy": 0.5, "max_drop": 0.05},
        "data": {"dataset": "mnist", "partition": "iid", "num_partitions": 3, "alpha": None, "shards_per_node": None},
    }
    base.update(overrides)
    return base


def register_payload(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "schema_version": 1,
        "action": "register_workflow",
        "workflow_id": WF,
        "spec": spec(),
        "participants": [P1, P2, P3],
        "compute_nodes": [C1, C2],
        "privacy_cap": 3,
        "initial_model_hash": INITIAL,
    }
    payload.update(overrides)
    return payload


def action(name: str, **fields: Any) -> dict[str, Any]:
    return {"schema_version": 1, "action": name, "workflow_id": WF, **fields}


def submission(round_no: int, schedule_id: str, text: str, *, inline: bool = True, **fields: Any) -> dict[str, Any]:
    blob = text.encode()
    payload: dict[str, Any] = {
        "schema_version": 1,
        "workflow_id": WF,
        "round": round_no,
        "schedule_id": schedule_id,
        "update_hash": hashlib.sha512(blob).hexdigest(),
        "inline": blob if inline else None,
        "num_samples": 100,
        "metrics": {"loss": 0.5},
    }
    payload.update(fields)
    return payload


@functools.lru_cache(maxsize=4096)
def _parsed(cls: type, raw: bytes) -> Any:
    """A state record decoded once per distinct bytes (the tests read the same records very often)."""
    return cls.from_obj(cbor.decode(raw, max_bytes=1 << 22))


class RecordingView(MappingView):
    """A MappingView that remembers every address read."""

    def __init__(self, *, state: dict[str, bytes]) -> None:
        super().__init__(state=state)
        self.read: list[str] = []

    def get(self, address: str) -> bytes | None:
        self.read.append(address)
        return super().get(address)


def check_declared(family: Family, payload: bytes, signer: str, view: RecordingView, outcome: Outcome) -> None:
    """Every read lies under a declared input and every write under a declared output."""
    inputs, outputs = declared_addresses(family, payload, signer)
    for address in view.read:
        assert any(address.startswith(prefix) for prefix in inputs), f"undeclared read {address}"
    for address in outcome.changes:
        assert any(address.startswith(prefix) for prefix in outputs), f"undeclared write {address}"


class Ledger:
    """State in a dict; ``now`` is written as BlockInfo exactly as the block-info injector lays it out."""

    def __init__(self, *, now: int = 1_000) -> None:
        self.state: dict[str, bytes] = {}
        self.events: list[Event] = []
        self.block = 0
        self.txn = 0
        self.set_time(now)

    @property
    def view(self) -> MappingView:
        return MappingView(state=self.state)

    def set_time(self, now: int) -> None:
        self.block += 1
        info = BlockInfo(block_num=self.block, timestamp=now, previous_block_id="0" * 128)
        config = BlockInfoConfig(latest_block=self.block, oldest_block=1, target_count=256, sync_tolerance=300)
        self.state[blockinfo.block_address(self.block)] = info.SerializeToString()
        self.state[blockinfo.CONFIG_ADDRESS] = config.SerializeToString()
        self.now = now

    def advance(self, seconds: int) -> None:
        self.set_time(self.now + seconds)

    def _commit(self, outcome: Outcome) -> Outcome:
        for address, value in outcome.changes.items():
            if value is None:
                self.state.pop(address, None)
            else:
                self.state[address] = value
        self.events.extend(outcome.events)
        return outcome

    def fed(self, signer: str, payload: dict[str, Any]) -> Outcome:
        raw = cbor.encode(payload)
        view = RecordingView(state=self.state)
        outcome = apply_federation(view, signer=signer, payload=raw)
        check_declared(FEDERATION, raw, signer, view, outcome)
        return self._commit(outcome)

    def submit(self, signer: str, payload: dict[str, Any]) -> Outcome:
        self.txn += 1
        raw = cbor.encode(payload)
        view = RecordingView(state=self.state)
        outcome = apply_submission(view, signer=signer, payload=raw, txn_id=f"txn{self.txn}")
        check_declared(IOT_DATA, raw, signer, view, outcome)
        return self._commit(outcome)

    def workflow(self, workflow_id: str = WF) -> WorkflowRecord:
        return _parsed(WorkflowRecord, self.state[workflow_address(workflow_id)])

    def round(self, round_no: int, workflow_id: str = WF) -> RoundRecord:
        return _parsed(RoundRecord, self.state[round_address(workflow_id, round_no)])

    def index(self, round_no: int, workflow_id: str = WF) -> SubmissionIndex | None:
        raw = self.state.get(submission_index_address(workflow_id, round_no))
        return None if raw is None else _parsed(SubmissionIndex, raw)

    # --- common sequences
    def register(self, **overrides: Any) -> None:
        self.fed(COORD, register_payload(**overrides))

    def open(self, round_no: int = 1, schedule_id: str | None = None) -> str:
        sid = schedule_id or f"s{round_no}"
        self.fed(COORD, action("open_round", round=round_no, schedule_id=sid))
        return sid

    def submit_all(self, round_no: int, sid: str, signers: tuple[str, ...] = (P1, P2, P3)) -> None:
        for signer in signers:
            self.submit(signer, submission(round_no, sid, f"update {signer} {round_no}"))

    def to_ready(self, round_no: int = 1) -> str:
        sid = self.open(round_no)
        self.submit_all(round_no, sid)
        self.fed(C1, action("close_round", round=round_no))
        return sid

    def post(self, signer: str, round_no: int, model: str = "model-1", **fields: Any) -> Outcome:
        index = self.index(round_no)
        included = sorted(index.entries) if index else []
        payload = action("post_result", round=round_no, model_hash=digest(model), included=included, excluded={})
        payload.update(fields)
        return self.fed(signer, payload)

    def to_verified(self, round_no: int = 1, model: str = "model-1") -> None:
        self.to_ready(round_no)
        self.fed(C1, action("claim_task", round=round_no, task="aggregate"))
        self.post(C1, round_no, model)
        self.fed(C2, action("attest_result", round=round_no, model_hash=digest(model)))
