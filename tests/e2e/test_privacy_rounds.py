"""Client-level DP through the whole round protocol: participants clip and add their noise share,
the coordinator records the accountant's round cap on-chain at registration and the epsilon spent
with every round, the ledger refuses a round beyond the cap, and verify-round still passes."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2e_support import Nodes, node_chain, small_workflow, start_workflow, wait_completed

from trustmesh.compute.verify import verify_round
from trustmesh.dataplane.store import RedisDataPlane
from trustmesh.errors import TransactionRejected
from trustmesh.iot.coordinator import new_schedule_id
from trustmesh.privacy.accountant import epsilon_after
from trustmesh.privacy.rounds import client_dp
from trustmesh.runner.plan import COORDINATOR, plan_workflow
from trustmesh.runner.stack import LocalStack

pytestmark = pytest.mark.slow

WORKFLOW_ID = "e2e-private"
PARTICIPANTS = 3
DP = {"mode": "client", "clip": 1.0, "noise_multiplier": 0.05, "delta": 1e-5}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    local = LocalStack(run_dir=tmp_path_factory.mktemp("e2e-private"), with_history=False)
    local.start_services()
    try:
        yield local
    finally:
        local.stop()


def _budget_for_two_rounds() -> float:
    """An epsilon between what 2 and 3 rounds spend, so the cap the chain records is 2."""
    plan = client_dp(DP, expected_nodes=PARTICIPANTS, min_nodes=PARTICIPANTS)
    z = plan.noise.accounting_noise_multiplier
    two, three = (epsilon_after(r, noise_multiplier=z, sampling_rate=1.0, delta=DP["delta"]) for r in (2, 3))
    return (two + three) / 2


def test_dp_rounds_stop_at_the_on_chain_budget_and_verify(stack: LocalStack) -> None:
    doc = small_workflow(min_nodes_required=PARTICIPANTS)
    doc["privacy"]["dp"] = {**DP, "epsilon": _budget_for_two_rounds()}
    plan = plan_workflow(doc, participants=PARTICIPANTS, compute_nodes=1,
                         key_of=lambda name: stack.key(name).public_key, rounds=3, round_timeout=60,
                         workflow_id=WORKFLOW_ID)
    nodes = Nodes()
    try:
        _, workflow = start_workflow(stack, nodes, plan, workflow_id=WORKFLOW_ID, participants=PARTICIPANTS)
        assert workflow.privacy_cap == 2 and workflow.final_round == 2
        reader, done = wait_completed(stack, WORKFLOW_ID)
        assert done.last_round == 2
        rounds = [reader.round(WORKFLOW_ID, r) for r in (1, 2)]
        assert [r.status for r in rounds] == ["accepted", "accepted"]
        spent = [r.epsilon_spent for r in rounds]
        assert spent[0] is not None and 0 < spent[0] < spent[1] <= _budget_for_two_rounds()
        for r in (1, 2):
            report = verify_round(chain=reader, dataplane=RedisDataPlane(stack.redis_for("compute")),
                                  workflow_id=WORKFLOW_ID, round_no=r)
            assert report.verdict == "ok", report.checks
        with pytest.raises(TransactionRejected):
            node_chain(stack, COORDINATOR).act("open_round", workflow_id=WORKFLOW_ID, round=3,
                                               schedule_id=new_schedule_id(3))
    finally:
        nodes.stop_all()
