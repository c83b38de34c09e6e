"""Sample-level DP-SGD through the whole round protocol: the coordinator records the cap its
accountant allows for the participants' partitions, participants train with Opacus, every round
records its epsilon, the ledger refuses a round beyond the cap, verify-round passes, and the
round history in CouchDB carries the privacy audit entry."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from e2e_support import Nodes, node_chain, run_cli, small_workflow, start_workflow, wait_completed, wait_for

from trustmesh.compute.recorder import open_recorder
from trustmesh.contracts.workflow import apply_defaults
from trustmesh.errors import TransactionRejected
from trustmesh.history.couch import CouchHistory
from trustmesh.iot.coordinator import new_schedule_id
from trustmesh.privacy.rounds import SampleDP, partition_sizes, sample_dp
from trustmesh.runner.plan import COORDINATOR, plan_workflow
from trustmesh.runner.stack import LocalStack

pytestmark = pytest.mark.slow

WORKFLOW_ID = "e2e-dpsgd"
PARTICIPANTS = 2
DP = {"mode": "sample", "clip": 1.0, "noise_multiplier": 0.8, "delta": 1e-5}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    local = LocalStack(run_dir=tmp_path_factory.mktemp("e2e-dpsgd"))
    local.start_services()
    try:
        yield local
    finally:
        local.stop()


def _accounting(doc: dict[str, Any]) -> SampleDP:
    """The DP-SGD plan of the planned workflow, accounted for every partition (as the coordinator does)."""
    full = apply_defaults(doc)
    plan = sample_dp(DP, training=full["local_training"], sizes=partition_sizes(full["data"]))
    assert plan is not None
    return plan


def test_dp_sgd_rounds_spend_their_budget_on_chain_verify_and_leave_an_audit_trail(stack: LocalStack) -> None:
    doc = plan_workflow(small_workflow(min_nodes_required=PARTICIPANTS), participants=PARTICIPANTS, compute_nodes=1,
                        key_of=lambda name: stack.key(name).public_key, rounds=3, round_timeout=90,
                        workflow_id=WORKFLOW_ID)
    accounting = _accounting(doc)
    budget = (accounting.epsilon_spent(2) + accounting.epsilon_spent(3)) / 2  # allows 2 of the 3 rounds
    doc["privacy"]["dp"] = {**DP, "epsilon": budget}
    nodes = Nodes()
    recorder = open_recorder(stack.history_url, stack.run_dir / "outbox.sqlite")
    try:
        _, workflow = start_workflow(stack, nodes, doc, workflow_id=WORKFLOW_ID, participants=PARTICIPANTS,
                                     history=recorder)
        assert workflow.privacy_cap == 2 and workflow.final_round == 2
        reader, done = wait_completed(stack, WORKFLOW_ID)
        assert done.last_round == 2
        rounds = [reader.round(WORKFLOW_ID, r) for r in (1, 2)]
        assert [r.status for r in rounds] == ["accepted", "accepted"]
        assert [len(reader.index(WORKFLOW_ID, r).entries) for r in (1, 2)] == [PARTICIPANTS, PARTICIPANTS]
        spent = [r.epsilon_spent for r in rounds]
        assert spent == pytest.approx([accounting.epsilon_spent(1), accounting.epsilon_spent(2)])
        assert 0 < spent[0] < spent[1] <= budget

        for r in (1, 2):
            result = run_cli("verify-round", "--workflow-id", WORKFLOW_ID, "--round", str(r),
                             "--url", stack.ledger_url, "--redis", stack.redis_for("compute"))
            assert result.returncode == 0, result.stdout + result.stderr
            assert "verdict: ok" in result.stdout
        with pytest.raises(TransactionRejected, match="privacy"):
            node_chain(stack, COORDINATOR).act("open_round", workflow_id=WORKFLOW_ID, round=3,
                                               schedule_id=new_schedule_id(3))

        history = CouchHistory(stack.history_url)
        docs = wait_for("both rounds in CouchDB",
                        lambda: (d := history.list_rounds(WORKFLOW_ID)) and len(d) == 2 and d, timeout=60, every=0.5)
        for doc_round, eps in zip(sorted(docs, key=lambda d: d.round), spent, strict=True):
            audit = doc_round.extra["privacy"]
            assert audit["mechanism"] == "dp-sgd-opacus" and audit["unit"] == "example"
            assert (audit["clip"], audit["noise_multiplier"]) == (DP["clip"], DP["noise_multiplier"])
            assert audit["epsilon_spent"] == pytest.approx(eps) == doc_round.epsilon_spent
            assert audit["epsilon_remaining"] == pytest.approx(budget - eps)
    finally:
        nodes.stop_all()
        recorder.close()
