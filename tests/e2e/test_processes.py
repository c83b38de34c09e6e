"""End to end with real processes: devnet, both TPs, Redis, PouchDB Server, three compute nodes, a
coordinator and four participants, each its own OS process, talking only through the ledger,
Redis and CouchDB. One workflow of three rounds goes through a dead participant and a dead
aggregator; every round must still verify and the CouchDB history must match the chain."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2e_support import run_cli, small_workflow, wait_for, write_json

from trustmesh.chain import Chain
from trustmesh.compute.cli import FAULT_DELAY_ENV
from trustmesh.contracts.records import RoundRecord
from trustmesh.history.couch import CouchHistory
from trustmesh.ledger.client import LedgerClient
from trustmesh.ledger.keys import new_signer
from trustmesh.runner.plan import COORDINATOR, compute_name, participant_name, plan_workflow
from trustmesh.runner.stack import LocalStack

pytestmark = pytest.mark.slow

WORKFLOW_ID = "e2e-processes"
PARTICIPANTS = 4
COMPUTE_NODES = 3


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    local = LocalStack(run_dir=tmp_path_factory.mktemp("e2e-processes"))
    local.start_services()
    try:
        yield local
    finally:
        local.stop()


def _settled(chain: Chain, round_no: int) -> RoundRecord | None:
    record = chain.round(WORKFLOW_ID, round_no)
    return record if record is not None and record.status in ("accepted", "rejected", "failed") else None


def _aggregate_claimed(chain: Chain, round_no: int) -> RoundRecord | None:
    record = chain.round(WORKFLOW_ID, round_no)
    if record is not None and record.status == "ready" and record.lease and record.lease.task == "aggregate":
        return record
    return None


def test_rounds_survive_a_dead_participant_and_a_dead_aggregator(stack: LocalStack) -> None:
    plan = plan_workflow(
        small_workflow(min_nodes_required=3, lease_seconds=6), participants=PARTICIPANTS,
        compute_nodes=COMPUTE_NODES, key_of=lambda name: stack.key(name).public_key, rounds=3,
        round_timeout=45, workflow_id=WORKFLOW_ID,
    )
    workflow_file = write_json(stack.run_dir / "workflow.json", plan)
    # A window between claiming and aggregating, so the test can kill the lease holder mid-task.
    for i in range(COMPUTE_NODES):
        stack.spawn_compute(compute_name(i), WORKFLOW_ID, env={FAULT_DELAY_ENV: "2"})
    stack.spawn_coordinator(COORDINATOR, workflow_file)
    for i in range(PARTICIPANTS):
        stack.spawn_participant(participant_name(i), WORKFLOW_ID, i)
    chain = Chain(client=LedgerClient(urls=[stack.ledger_url]), signer=new_signer())
    names = {stack.key(name).public_key: name for name in stack.keys}

    # A participant dies once its round-1 submission is in (round 2 opens in round 1's verdict block,
    # so it must be gone before then): round 2 must close at its deadline with the other three.
    wait_for("round 1's submissions", lambda: (index := chain.index(WORKFLOW_ID, 1)) and
             len(index.entries) == PARTICIPANTS, timeout=240, every=0.02)
    dead_participant = stack.key(participant_name(PARTICIPANTS - 1)).public_key
    stack.nodes[participant_name(PARTICIPANTS - 1)].kill()
    round1 = wait_for("round 1 to settle", lambda: _settled(chain, 1), timeout=240)
    assert round1.status == "accepted"
    assert len(chain.index(WORKFLOW_ID, 1).entries) == PARTICIPANTS
    # The compute node that claims round 2's aggregate task dies holding the lease.
    claimed = wait_for("round 2's aggregate claim", lambda: _aggregate_claimed(chain, 2), timeout=180, every=0.05)
    dead_aggregator = claimed.lease.holder
    stack.nodes[names[dead_aggregator]].kill()

    round2 = wait_for("round 2 to settle", lambda: _settled(chain, 2), timeout=180)
    assert round2.status == "accepted"
    assert round2.result is not None and round2.result.aggregator != dead_aggregator
    index2 = chain.index(WORKFLOW_ID, 2)
    assert dead_participant not in index2.entries and len(index2.entries) == PARTICIPANTS - 1

    round3 = wait_for("round 3 to settle", lambda: _settled(chain, 3), timeout=180)
    assert round3.status == "accepted"
    accuracies = [r.evaluation.accuracy for r in (round1, round2, round3)]
    assert accuracies[2] > accuracies[0], accuracies
    workflow = wait_for("the workflow to complete",
                        lambda: (w := chain.workflow(WORKFLOW_ID)) and w.status == "completed" and w, timeout=30)
    assert workflow.model_hash == round3.result.model_hash

    for r in (1, 2, 3):
        result = run_cli("verify-round", "--workflow-id", WORKFLOW_ID, "--round", str(r),
                         "--url", stack.ledger_url, "--redis", stack.redis_for("compute"))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "verdict: ok" in result.stdout

    history = CouchHistory(stack.history_url)
    docs = wait_for("three rounds in CouchDB", lambda: (d := history.list_rounds(WORKFLOW_ID)) and len(d) == 3 and d,
                    timeout=60, every=0.5)
    for doc, record in zip(sorted(docs, key=lambda d: d.round), (round1, round2, round3), strict=True):
        index = chain.index(WORKFLOW_ID, record.round)
        assert doc.schedule_id == record.schedule_id and doc.status == record.status
        assert doc.model_hash == record.result.model_hash
        assert doc.accuracy == pytest.approx(record.evaluation.accuracy)
        assert sorted(doc.included) == sorted(index.entries[k].update_hash for k in record.result.included)
        assert {p.public_key for p in doc.participants} == set(index.entries)
    round2_doc = next(d for d in docs if d.round == 2)
    missing = {m.public_key: m.reason for m in round2_doc.missing}
    assert missing == {dead_participant: "no_heartbeat"}
