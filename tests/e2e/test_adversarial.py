"""End to end against misbehaviour: real devnet, TPs, Redis and PouchDB Server processes; the nodes
run in this process (threads) so the test can play the attacker and pause the coordinator.

One workflow, three rounds:
1. an outsider's forged submission and a participant's second submission are refused on-chain; a
   participant that scales its delta by 100 is excluded by the norm bound and named in the history;
2. CouchDB is down and every participant is offline: the round reaches its deadline on block time
   (compute-node heartbeats) and fails cleanly; the history is caught up once CouchDB is back;
3. the participants return and the next round is accepted.
A model blob altered in Redis makes verify-round report a mismatch and participants refuse it.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import redis
from e2e_support import Nodes, node_chain, small_workflow, wait_for

from trustmesh.chain import Chain
from trustmesh.compute.node import ComputeNode
from trustmesh.compute.recorder import open_recorder
from trustmesh.compute.verify import verify_round
from trustmesh.dataplane.keys import model_key
from trustmesh.dataplane.store import RedisDataPlane
from trustmesh.errors import TransactionRejected
from trustmesh.history.couch import CouchHistory
from trustmesh.iot.coordinator import Coordinator
from trustmesh.iot.participant import BaseModelRefused, Participant
from trustmesh.ledger.client import LedgerClient
from trustmesh.ledger.keys import new_signer
from trustmesh.runner.plan import COORDINATOR, compute_name, participant_name, plan_workflow
from trustmesh.runner.stack import LocalStack

pytestmark = pytest.mark.slow

WORKFLOW_ID = "e2e-adversarial"
PARTICIPANTS = 4
ATTACKER = PARTICIPANTS - 1


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    local = LocalStack(run_dir=tmp_path_factory.mktemp("e2e-adversarial"))
    local.start_services()
    try:
        yield local
    finally:
        local.stop()


def _scaled(update: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: (arr * 100.0).astype(np.float32) for name, arr in update.items()}


def _participant(stack: LocalStack, i: int) -> Participant:
    return Participant(chain=node_chain(stack, participant_name(i)), dataplane=RedisDataPlane(stack.redis_for("participant")),
                       workflow_id=WORKFLOW_ID, partition=i, poll_interval=0.2,
                       transform=_scaled if i == ATTACKER else None)


def _settled(chain: Chain, round_no: int) -> Any:
    record = chain.round(WORKFLOW_ID, round_no)
    return record if record is not None and record.status in ("accepted", "rejected", "failed") else None


def test_forged_duplicate_scaled_offline_and_tampered(stack: LocalStack) -> None:
    plan = plan_workflow(
        small_workflow(min_nodes_required=2, lease_seconds=6), participants=PARTICIPANTS, compute_nodes=2,
        key_of=lambda name: stack.key(name).public_key, rounds=3, round_timeout=30, workflow_id=WORKFLOW_ID,
    )
    plan["aggregation"]["norm_bound"] = 20.0
    nodes = Nodes()
    try:
        _run_scenario(stack, plan, nodes)
    finally:
        nodes.stop_all()


def _run_scenario(stack: LocalStack, plan: dict[str, Any], nodes: Nodes) -> None:
    # This scenario opens each round by hand, between its acts: no open_round handed ahead.
    coordinator = Coordinator(chain=node_chain(stack, COORDINATOR), doc=plan,
                              dataplane=RedisDataPlane(stack.redis_for("coordinator")), hand_off=False)
    coordinator.register()
    recorders = []
    for i in range(2):
        recorder = open_recorder(stack.history_url, stack.run_dir / f"outbox-{i}.sqlite")
        recorders.append(recorder)
        node = ComputeNode(chain=node_chain(stack, compute_name(i)), dataplane=RedisDataPlane(stack.redis_for("compute")),
                           workflow_ids=[WORKFLOW_ID], history=recorder, poll_interval=0.2, heartbeat_every=0.5)
        nodes.start(node.run)
    # Participants 1 and 2 join only after the forged and duplicate submissions were tried, so the
    # round is still open (waiting for them) when those arrive.
    early = (0, ATTACKER)
    participant_flags = [nodes.start(_participant(stack, i).run) for i in early]
    reader = Chain(client=LedgerClient(urls=[stack.ledger_url]), signer=new_signer())
    keys = {i: stack.key(participant_name(i)).public_key for i in range(PARTICIPANTS)}

    # -- round 1: forged, duplicate and scaled submissions ---------------------------------------
    wait_for("a quorum online and round 1 opened", lambda: coordinator.step() == "opened", timeout=120, every=0.5)
    record = reader.round(WORKFLOW_ID, 1)
    wait_for("participant 0's submission", lambda: (ix := reader.index(WORKFLOW_ID, 1)) and keys[0] in ix.entries,
             timeout=120)
    entry = reader.index(WORKFLOW_ID, 1).entries[keys[0]]
    fields = dict(workflow_id=WORKFLOW_ID, round=1, schedule_id=record.schedule_id,
                  update_hash=entry.update_hash, num_samples=10)
    outsider = Chain(client=LedgerClient(urls=[stack.ledger_url]), signer=new_signer())
    with pytest.raises(TransactionRejected, match="not a participant"):
        outsider.submit_update(**fields)
    with pytest.raises(TransactionRejected, match="already submitted"):
        node_chain(stack, participant_name(0)).submit_update(**fields)
    participant_flags += [nodes.start(_participant(stack, i).run) for i in range(PARTICIPANTS) if i not in early]

    round1 = wait_for("round 1 to settle", lambda: _settled(reader, 1), timeout=180)
    assert round1.status == "accepted"
    index1 = reader.index(WORKFLOW_ID, 1)
    assert set(index1.entries) == set(keys.values())
    assert round1.result.excluded == {keys[ATTACKER]: "norm_bound"}
    assert sorted(round1.result.included) == sorted(keys[i] for i in range(ATTACKER))
    assert verify_round(chain=reader, dataplane=RedisDataPlane(stack.redis_for("compute")),
                        workflow_id=WORKFLOW_ID, round_no=1).verdict == "ok"

    # -- a model blob altered in Redis is caught ---------------------------------------------------
    admin = redis.Redis.from_url(stack.redis.url)
    key = model_key(WORKFLOW_ID, round1.result.model_hash)
    original = admin.get(key)
    assert original is not None
    admin.set(key, original[:-8] + b"\x00" * 8)
    report = verify_round(chain=reader, dataplane=RedisDataPlane(stack.redis_for("compute")),
                          workflow_id=WORKFLOW_ID, round_no=1)
    assert report.verdict == "mismatch"
    assert any(c.name == "stored model" and not c.ok for c in report.checks)
    workflow = reader.workflow(WORKFLOW_ID)
    as_base = dataclasses.replace(round1, base_model_hash=round1.result.model_hash)
    with pytest.raises(BaseModelRefused):
        _participant(stack, 0).base_model(workflow, as_base)
    admin.set(key, original)

    # -- round 2: CouchDB down, every participant offline -----------------------------------------
    for flag in participant_flags:
        flag.set()
    stack.pouch.stop()
    assert coordinator.step() == "opened"
    round2 = wait_for("round 2 to fail at its deadline", lambda: _settled(reader, 2), timeout=120)
    assert round2.status == "failed"
    assert reader.index(WORKFLOW_ID, 2) is None
    stack.pouch.start()

    # -- round 3: participants return --------------------------------------------------------------
    for i in range(PARTICIPANTS):
        nodes.start(_participant(stack, i).run)
    wait_for("round 3 opened", lambda: coordinator.step() == "opened", timeout=60, every=0.5)
    round3 = wait_for("round 3 to settle", lambda: _settled(reader, 3), timeout=180)
    assert round3.status == "accepted"
    assert round3.evaluation.accuracy >= round1.evaluation.accuracy - 0.05
    assert reader.workflow(WORKFLOW_ID).status == "completed"

    history = CouchHistory(stack.history_url)
    listed = wait_for("the history of all three rounds",
                      lambda: (found := history.list_rounds(WORKFLOW_ID)) and len(found) == 3 and found,
                      timeout=90, every=0.5)
    docs = {d.round: d for d in listed}
    assert docs[1].status == "accepted"
    assert [(e.public_key, e.reason) for e in docs[1].excluded] == [(keys[ATTACKER], "norm_bound")]
    assert docs[2].status == "failed"
    assert {m.public_key for m in docs[2].missing} == set(keys.values())
    assert docs[3].model_hash == round3.result.model_hash
    for recorder in recorders:
        recorder.close()
