"""The glue between the secure-aggregation library and the round protocol, in one process.

Participants run the library's phases, their messages go through the very on-chain records the
TPs store (SecAggRecord, IndexEntry), and ``unmask_delta`` must give the plain sample-weighted
FedAvg of the survivors within the ring's quantization bound — with and without a dropout.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from trustmesh.compute.history_docs import round_history
from trustmesh.contracts.records import (
    IndexEntry,
    RoundRecord,
    SecAggKeys,
    SecAggRecord,
    SecAggRevealed,
    SubmissionIndex,
)
from trustmesh.contracts.secagg_graph import neighbour_graph
from trustmesh.fl.params import ParamSpec
from trustmesh.privacy import secagg_round as protocol
from trustmesh.privacy.errors import SecAggFailed, SecAggMessageInvalid
from trustmesh.privacy.secagg import Participant, encode_masked_input

SPEC = ParamSpec.of([("w", (6, 5)), ("b", (5,))])
WORKFLOW_ID, SCHEDULE = "wf", "r1-abc"


def key(i: int) -> str:
    return "02" + hashlib.sha256(f"p{i}".encode()).hexdigest()


class FakeWorkflow:
    """Just what the glue reads of a WorkflowRecord."""

    workflow_id = WORKFLOW_ID

    class spec:  # noqa: N801 - mirrors WorkflowRecord.spec
        max_samples_per_node = 1000


def run_round(n: int, dropped: set[int], samples: list[int], threshold: int, neighbours: int | None = None):
    rng = np.random.default_rng(7)
    ids = [key(i) for i in range(n)]
    context = protocol.round_context(WORKFLOW_ID, SCHEDULE)
    people = {pid: Participant(participant_id=pid, threshold=threshold, round_id=context, neighbours=neighbours,
                               quantizer=protocol.QUANTIZER, rng=np.random.default_rng(i))
              for i, pid in enumerate(ids)}
    keys = {}
    for pid, person in people.items():
        ad = person.advertise()
        keys[pid] = SecAggKeys(enc_public=ad.enc_public, mask_public=ad.mask_public, seed_commitment=ad.seed_commitment)
    sec = SecAggRecord(schema_version=1, workflow_id=WORKFLOW_ID, round=1, threshold=threshold, phase="share",
                       phase_deadline=0, keys=keys, neighbours=neighbours)
    bundles = {}
    for pid, person in people.items():
        bundles[pid], _ = protocol.encode_bundle(person.share_keys(protocol.roster_of(sec)))
    members = tuple(sorted(ids))
    deltas = {pid: {name: rng.normal(0, 0.05, shape).astype(np.float32) for name, shape in SPEC} for pid in ids}
    survivors = tuple(sorted(pid for i, pid in enumerate(ids) if i not in dropped))
    masked, entries = {}, {}
    for i, pid in enumerate(ids):
        if pid not in survivors:
            continue
        weight = samples[i] / FakeWorkflow.spec.max_samples_per_node
        vector = protocol.self_clip(protocol.flatten(deltas[pid], SPEC), weight=weight, members=n, norm_bound=None)
        masked[pid] = encode_masked_input(people[pid].masked_input(vector, weight, members=members))
        entries[pid] = IndexEntry(update_hash=hashlib.sha512(masked[pid]).hexdigest(), num_samples=samples[i],
                                  metrics={}, txn_id=f"t{i}", inline=False)
    dropped_ids = tuple(pid for pid in members if pid not in survivors)
    reveals = {}
    for pid in survivors:
        senders = protocol.neighbours_of(sec, SCHEDULE, pid)  # as the participants' driver fetches them
        mine: dict[str, bytes] = {sender: protocol.envelope_for(bundles[sender], pid) for sender in sorted(senders)}
        assert all(envelope is not None for envelope in mine.values())
        assert all(protocol.envelope_for(bundles[s], pid) is None for s in members if s not in senders)
        fields = protocol.reveal_fields(people[pid].unmask_reveal(survivors, dropped_ids, mine))
        reveals[pid] = SecAggRevealed(**fields)
    sec = SecAggRecord(schema_version=1, workflow_id=WORKFLOW_ID, round=1, threshold=threshold, phase="complete",
                       phase_deadline=0, keys=keys, members=members, survivors=survivors, reveals=reveals,
                       neighbours=neighbours)
    index = SubmissionIndex(schema_version=1, workflow_id=WORKFLOW_ID, round=1, schedule_id=SCHEDULE, entries=entries)
    return sec, index, masked, deltas, {ids[i]: samples[i] for i in range(n)}


@pytest.mark.parametrize("dropped", [set(), {1}, {0, 3}])
def test_unmasked_delta_is_the_plain_weighted_fedavg(dropped):
    n, threshold = 5, 3
    sec, index, masked, deltas, samples = run_round(n, dropped, [120, 300, 80, 500, 250], threshold)
    mean = protocol.unmask_delta(workflow=FakeWorkflow, schedule_id=SCHEDULE, sec=sec, index=index,
                                 masked=masked, spec=SPEC)
    total = sum(samples[p] for p in sec.survivors)
    weights = total / FakeWorkflow.spec.max_samples_per_node
    bound = protocol.QUANTIZER.error_bound(n) / weights + 1e-7
    for name, _ in SPEC:
        plain = sum(samples[p] * deltas[p][name].astype(np.float64) for p in sec.survivors) / total
        assert np.max(np.abs(mean[name] - plain)) < bound
        assert np.linalg.norm(plain) > 0.01


def _sparse_dropouts(n: int, k: int, count: int) -> set[int]:
    """``count`` members no two of which are neighbours in the round's graph (index in key order)."""
    ids = [key(i) for i in range(n)]
    graph = neighbour_graph(ids, k, context=protocol.round_context(WORKFLOW_ID, SCHEDULE))
    chosen: list[str] = []
    for pid in ids:
        if len(chosen) < count and not graph[pid] & set(chosen):
            chosen.append(pid)
    return {ids.index(pid) for pid in chosen}


@pytest.mark.parametrize("drops", [0, 1, 2])
def test_sparse_graph_unmasks_the_plain_weighted_fedavg_with_dropouts(drops):
    n, threshold, k = 12, 3, 4
    samples = [100 + 37 * i for i in range(n)]
    dropped = _sparse_dropouts(n, k, drops)
    sec, index, masked, deltas, by_id = run_round(n, dropped, samples, threshold, neighbours=k)
    assert len(sec.dropped) == drops
    for pid, revealed in sec.reveals.items():  # every reveal stays within the revealer's neighbourhood
        assert set(revealed.seed_shares) | set(revealed.key_shares) <= \
            protocol.neighbours_of(sec, SCHEDULE, pid) | {pid}
    mean = protocol.unmask_delta(workflow=FakeWorkflow, schedule_id=SCHEDULE, sec=sec, index=index,
                                 masked=masked, spec=SPEC)
    total = sum(by_id[p] for p in sec.survivors)
    bound = protocol.QUANTIZER.error_bound(n) / (total / FakeWorkflow.spec.max_samples_per_node) + 1e-7
    for name, _ in SPEC:
        plain = sum(by_id[p] * deltas[p][name].astype(np.float64) for p in sec.survivors) / total
        assert np.max(np.abs(mean[name] - plain)) < bound


def test_sparse_graph_without_t_surviving_neighbours_fails_with_the_reason():
    n, threshold, k = 10, 3, 2
    ids = [key(i) for i in range(n)]
    graph = neighbour_graph(ids, k, context=protocol.round_context(WORKFLOW_ID, SCHEDULE))
    # one member drops; with t = 3 and two neighbours its mask key needs both and itself: it cannot be rebuilt
    sec, index, masked, _, _ = run_round(n, {0}, [100] * n, threshold, neighbours=k)
    assert len(graph[ids[0]]) == 2
    with pytest.raises(SecAggFailed, match="fewer than t shares of the (mask key|self-mask seed) of"):
        protocol.unmask_delta(workflow=FakeWorkflow, schedule_id=SCHEDULE, sec=sec, index=index, masked=masked,
                              spec=SPEC)


def test_a_missing_masked_input_or_a_forged_reveal_fails_with_the_reason():
    sec, index, masked, _, _ = run_round(4, {2}, [100, 100, 100, 100], 3)
    survivor = sec.survivors[0]
    with pytest.raises(SecAggFailed, match="is unavailable: the sum cannot be unmasked"):
        protocol.unmask_delta(workflow=FakeWorkflow, schedule_id=SCHEDULE, sec=sec, index=index,
                              masked={k: v for k, v in masked.items() if k != survivor}, spec=SPEC)
    forged = {pid: SecAggRevealed(seed_shares={o: bytes(16) for o in r.seed_shares}, key_shares=r.key_shares)
              for pid, r in sec.reveals.items()}
    bad = SecAggRecord(**{**sec.__dict__, "reveals": forged})
    with pytest.raises(SecAggFailed, match="does not match its commitment"):
        protocol.unmask_delta(workflow=FakeWorkflow, schedule_id=SCHEDULE, sec=bad, index=index, masked=masked,
                              spec=SPEC)


def test_bundles_round_trip_and_refuse_garbage():
    data, digest = protocol.encode_bundle({key(2): b"env-2", key(1): b"env-1"})
    assert digest == hashlib.sha512(data).hexdigest()
    assert protocol.envelope_for(data, key(1)) == b"env-1" and protocol.envelope_for(data, key(9)) is None
    with pytest.raises(SecAggMessageInvalid):
        protocol.envelope_for(b"\xff\x00garbage", key(1))


def test_self_clip_bounds_the_norm_and_the_ring_capacity():
    vector = np.full(100, 3.0)
    clipped = protocol.self_clip(vector, weight=1.0, members=10, norm_bound=1.0)
    assert np.linalg.norm(clipped) == pytest.approx(1.0)
    huge = protocol.self_clip(np.full(4, 1e6), weight=0.5, members=10, norm_bound=None)
    assert np.all(huge * 0.5 <= protocol.QUANTIZER.capacity(10))
    params = {"w": np.arange(30, dtype=np.float32).reshape(6, 5), "b": np.ones(5, dtype=np.float32)}
    back = protocol.unflatten(protocol.flatten(params, SPEC), SPEC)
    assert all(np.array_equal(back[k], params[k]) for k in params)


def test_round_history_names_the_dropped_node_and_the_phases(monkeypatch):
    sec, index, _, _, _ = run_round(4, {2}, [100, 100, 100, 100], 3)

    class Workflow:
        workflow_id = WORKFLOW_ID
        participants = tuple(sorted(sec.keys))
        model_version = 1

        class spec:  # noqa: N801
            privacy = None

    record = RoundRecord(schema_version=1, workflow_id=WORKFLOW_ID, round=1, schedule_id=SCHEDULE,
                         base_model_hash="0" * 128, opened_at=0, deadline=10, status="ready")
    import trustmesh.compute.history_docs as history_docs

    monkeypatch.setattr(history_docs, "round_audit", lambda *a: None)  # the DP audit trail is tested elsewhere
    doc = round_history(workflow=Workflow, record=record, index=index, alive=set(), timings={}, secagg=sec)
    (gone,) = doc.missing
    assert gone.public_key == sec.dropped[0] and "recovered its masks" in gone.detail
    summary = doc.extra["secure_aggregation"]
    assert summary["dropped"] == list(sec.dropped) and summary["threshold"] == 3 and len(summary["survivors"]) == 3
