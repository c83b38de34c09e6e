"""Secure aggregation through the whole round protocol, on the devnet ledger with both TPs and Redis.

Four participants, threshold 3, two compute nodes. Round 1: one participant drops out after handing
out its shares, and the survivors' reveals recover its masks; round 2: two drop out, fewer than the
threshold survive, and the round fails with that reason; round 3: everyone takes part. The unmasked
aggregate equals the plain sample-weighted FedAvg of the survivors' deltas within the ring's
quantization bound, a masked input looks like uniform noise, and verify-round passes.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from e2e_support import Nodes, small_workflow, start_workflow, wait_completed
from scipy.stats import chisquare

from trustmesh.compute.verify import verify_round
from trustmesh.dataplane.store import RedisDataPlane
from trustmesh.errors import TrustMeshError
from trustmesh.fl.codecs import decode_params
from trustmesh.fl.params import spec_for_model
from trustmesh.privacy.secagg_round import QUANTIZER
from trustmesh.runner.plan import participant_name, plan_workflow
from trustmesh.runner.stack import LocalStack

pytestmark = pytest.mark.slow

WORKFLOW_ID = "e2e-secagg"
PARTICIPANTS = 4
THRESHOLD = 3
FAIL_TRAINING = {3: {1, 2}, 2: {2}}  # participant index -> the rounds (1-based calls) whose training fails


class TrainingCrashed(TrustMeshError):
    """The test's stand-in for a participant that crashes between sharing keys and submitting."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    local = LocalStack(run_dir=tmp_path_factory.mktemp("e2e-secagg"), with_history=False)
    local.start_services()
    try:
        yield local
    finally:
        local.stop()


def _recording_transform(i: int, seen: dict[tuple[int, int], dict[str, np.ndarray]]) -> Any:
    calls = {"n": 0}

    def transform(update: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls["n"] += 1
        if calls["n"] in FAIL_TRAINING.get(i, set()):
            raise TrainingCrashed(f"participant {i} crashes in its round-{calls['n']} training")
        seen[(i, calls["n"])] = {k: v.copy() for k, v in update.items()}
        return update

    return transform


def test_secure_aggregation_rounds_recover_dropouts_fail_below_threshold_and_verify(stack: LocalStack) -> None:
    doc = small_workflow(min_nodes_required=THRESHOLD)
    doc["privacy"]["secure_aggregation"] = {"enabled": True, "threshold": THRESHOLD, "phase_timeout": 4}
    plan = plan_workflow(doc, participants=PARTICIPANTS, compute_nodes=2,
                         key_of=lambda name: stack.key(name).public_key, rounds=3, round_timeout=12,
                         workflow_id=WORKFLOW_ID)
    seen: dict[tuple[int, int], dict[str, np.ndarray]] = {}
    keys = [stack.key(participant_name(i)).public_key for i in range(PARTICIPANTS)]
    nodes = Nodes()
    try:
        start_workflow(stack, nodes, plan, workflow_id=WORKFLOW_ID, participants=PARTICIPANTS, compute_nodes=2,
                       transform=lambda i: _recording_transform(i, seen))
        reader, _ = wait_completed(stack, WORKFLOW_ID)
    finally:
        nodes.stop_all()

    rounds = {r: reader.round(WORKFLOW_ID, r) for r in (1, 2, 3)}
    phases = {r: reader.secagg(WORKFLOW_ID, r) for r in (1, 2, 3)}

    # Round 1: participant 3 handed out its shares, then dropped; the survivors revealed its mask key.
    one = phases[1]
    assert rounds[1].status in ("accepted", "rejected") and one.phase == "complete"
    assert set(one.members) == set(keys) and set(one.survivors) == set(keys[:3]) and one.dropped == (keys[3],)
    assert all(set(r.key_shares) == {keys[3]} and set(r.seed_shares) == set(one.survivors)
               for r in one.reveals.values())
    assert rounds[1].result is not None and set(rounds[1].result.included) == set(keys[:3])

    # Round 2: two of four dropped, 2 < threshold 3: the round failed with the reason on-chain.
    two = phases[2]
    assert rounds[2].status == "failed" and two.phase == "failed"
    assert two.failure == "2 survivor(s) submitted a masked input, fewer than the 3 required (threshold 3)"
    assert rounds[2].result is None

    # Round 3: everyone, nobody dropped.
    three = phases[3]
    assert rounds[3].status in ("accepted", "rejected") and set(three.survivors) == set(keys) and not three.dropped

    dataplane = RedisDataPlane(stack.redis_for("compute"))
    for r in (1, 3):
        report = verify_round(chain=reader, dataplane=dataplane, workflow_id=WORKFLOW_ID, round_no=r)
        assert report.verdict == "ok", report.checks

    # The unmasked aggregate of round 1 is the plain sample-weighted FedAvg of the three survivors.
    spec = spec_for_model("mlp")
    base = decode_params(dataplane.get_model(WORKFLOW_ID, rounds[1].base_model_hash) or
                         _initial(rounds[1].base_model_hash), spec)
    new = decode_params(dataplane.get_model(WORKFLOW_ID, rounds[1].result.model_hash), spec)
    index = reader.index(WORKFLOW_ID, 1)
    samples = {i: index.entries[keys[i]].num_samples for i in range(3)}
    total = sum(samples.values())
    weight_sum = total / plan["federation_config"]["max_samples_per_node"]
    bound = QUANTIZER.error_bound(3) / weight_sum + 1e-6  # ring rounding, plus float32 rounding of the model
    worst = 0.0
    for name, _ in spec:
        expected = sum(samples[i] * seen[(i, 1)][name].astype(np.float64) for i in range(3)) / total
        got = new[name].astype(np.float64) - base[name].astype(np.float64)
        worst = max(worst, float(np.max(np.abs(got - expected))))
        assert np.linalg.norm(expected) > 0  # training moved the model: the comparison is not vacuous
    assert worst < bound, f"unmasked FedAvg differs from the plain one by {worst} > {bound}"

    # A masked input, as stored in Redis, is indistinguishable from uniform bytes.
    entry = index.entries[keys[0]]
    blob = dataplane.fetch_update_blob(WORKFLOW_ID, rounds[1].schedule_id, entry.update_hash).data
    assert blob is not None
    counts = np.bincount(np.frombuffer(blob[-400_000:], dtype=np.uint8), minlength=256)
    assert chisquare(counts).pvalue > 1e-4

    # Per-node bookkeeping the test relies on: every participant trained in each round it survived.
    trained = defaultdict(set)
    for i, call in seen:
        trained[i].add(call)
    assert trained[0] == {1, 2, 3} and trained[3] == {3}


def _initial(digest: str) -> bytes:
    from trustmesh.fl.initial import initial_model

    blob, initial_digest = initial_model("mlp")
    assert initial_digest == digest
    return blob
