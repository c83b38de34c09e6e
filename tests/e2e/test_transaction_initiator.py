"""The source design's three submission modes (coordinator, participant, single node) over a real
devnet, TPs and Redis, with a compute node finishing the single-node round."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from e2e_support import Nodes, node_chain, small_workflow, wait_for

from trustmesh.compute.node import ComputeNode
from trustmesh.dataplane.store import RedisDataPlane
from trustmesh.errors import ConfigError
from trustmesh.fl.codecs import encode_update
from trustmesh.fl.params import spec_for_model
from trustmesh.iot.coordinator import Coordinator
from trustmesh.iot.transaction_initiator import create_and_send_transactions
from trustmesh.runner.plan import plan_workflow
from trustmesh.runner.stack import LocalStack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    local = LocalStack(run_dir=tmp_path_factory.mktemp("initiator"), with_history=False)
    local.start_services()
    try:
        yield local
    finally:
        local.stop()


def _envelope(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return encode_update({name: rng.normal(0, 1e-3, shape).astype(np.float32) for name, shape in spec_for_model("mlp")})


def _register(stack: LocalStack, workflow_id: str, *, coordinator: str, participants: list[str]) -> None:
    doc = plan_workflow(small_workflow(min_nodes_required=1), participants=len(participants), compute_nodes=1,
                        key_of=lambda name: stack.key(name).public_key, rounds=2, workflow_id=workflow_id)
    doc["federation_config"]["coordinator_node"] = stack.key(coordinator).public_key
    doc["federation_config"]["participant_nodes"] = [stack.key(p).public_key for p in participants]
    Coordinator(chain=node_chain(stack, coordinator), doc=doc,
                dataplane=RedisDataPlane(stack.redis_for("coordinator"))).register()


def test_single_node_mode_opens_its_own_round_and_the_round_completes(stack: LocalStack) -> None:
    _register(stack, "single", coordinator="solo", participants=["solo"])
    chain = node_chain(stack, "solo")
    schedule_id = create_and_send_transactions(chain, _envelope(1), "single", num_samples=100,
                                               dataplane=RedisDataPlane(stack.redis_for("coordinator")))
    record = chain.round("single", 1)
    assert record.schedule_id == schedule_id
    assert list(chain.index("single", 1).entries) == [chain.public_key]
    nodes = Nodes()
    try:
        nodes.start(ComputeNode(chain=node_chain(stack, "compute-0"), workflow_ids=["single"],
                                dataplane=RedisDataPlane(stack.redis_for("compute")), poll_interval=0.2).run)
        settled = wait_for("the single-node round to settle",
                           lambda: (r := chain.round("single", 1)) and r.status in ("accepted", "rejected") and r,
                           timeout=120)
        assert settled.result.included == (chain.public_key,)
    finally:
        nodes.stop_all()


def test_coordinator_and_participant_modes_share_one_schedule_id(stack: LocalStack) -> None:
    _register(stack, "shared", coordinator="lead", participants=["member-a", "member-b"])
    lead, member = node_chain(stack, "lead"), node_chain(stack, "member-a")
    schedule_id = create_and_send_transactions(lead, b"", "shared", num_samples=1, is_coordinator=True)
    assert lead.index("shared", 1) is None  # the coordinator is no participant here: it only opened the round
    with pytest.raises(ConfigError, match="not the current round"):
        create_and_send_transactions(member, _envelope(2), "shared", num_samples=50, schedule_id="elsewhere",
                                     dataplane=RedisDataPlane(stack.redis_for("participant")))
    assert create_and_send_transactions(member, _envelope(2), "shared", num_samples=50, schedule_id=schedule_id,
                                        dataplane=RedisDataPlane(stack.redis_for("participant"))) == schedule_id
    assert list(member.index("shared", 1).entries) == [member.public_key]


def test_update_blobs_sent_by_reference_expire(stack: LocalStack) -> None:
    import redis

    from trustmesh.dataplane.keys import update_key
    from trustmesh.iot.transaction_initiator import UPDATE_BLOB_TTL

    _register(stack, "expiring", coordinator="owner", participants=["owner"])
    chain = node_chain(stack, "owner")
    schedule_id = create_and_send_transactions(chain, _envelope(3), "expiring", num_samples=10,
                                               dataplane=RedisDataPlane(stack.redis_for("coordinator")))
    digest = chain.index("expiring", 1).entries[chain.public_key].update_hash
    ttl = redis.Redis.from_url(stack.redis.url).ttl(update_key("expiring", schedule_id, digest))
    assert 0 < ttl <= UPDATE_BLOB_TTL
