"""SecAgg+ neighbour graphs: the graph itself, and rounds whose shares, masks and reveals follow it."""
from __future__ import annotations

import numpy as np
import pytest

from trustmesh.privacy.errors import PrivacyConfigError, SecAggFailed
from trustmesh.privacy.secagg import (
    Participant,
    PublicKeys,
    Reveal,
    RingQuantizer,
    Server,
    neighbour_graph,
    recommended_degree,
)

ROUND = "wf-test:round-sparse"


def _ids(n: int) -> list[str]:
    return [f"node-{i:02d}" for i in range(n)]


@pytest.mark.parametrize(("n", "k", "degree"), [(20, 4, 4), (20, 5, 6), (9, 2, 2), (50, 12, 12)])
def test_graph_is_symmetric_without_self_loops_and_of_even_degree(n, k, degree):
    graph = neighbour_graph(_ids(n), k, context=ROUND)
    assert set(graph) == set(_ids(n))
    for pid, peers in graph.items():
        assert pid not in peers
        assert len(peers) == degree  # k rounded up to an even number
        assert all(pid in graph[peer] for peer in peers)


def test_graph_is_deterministic_in_round_and_roster_only():
    ids = _ids(30)
    graph = neighbour_graph(ids, 6, context=ROUND)
    assert neighbour_graph(list(reversed(ids)), 6, context=ROUND) == graph  # order of the roster is irrelevant
    assert neighbour_graph(ids, 6, context="another round") != graph  # fresh graph every round
    assert neighbour_graph(ids[:-1], 6, context=ROUND) != graph


@pytest.mark.parametrize("k", [None, 9, 10, 40])
def test_k_of_n_minus_one_or_more_is_the_complete_graph(k):
    ids = _ids(10)
    assert neighbour_graph(ids, k, context=ROUND) == {pid: frozenset(ids) - {pid} for pid in ids}


def test_degree_below_two_is_refused():
    with pytest.raises(ValueError, match="degree >= 2"):
        neighbour_graph(_ids(5), 1, context=ROUND)


def test_recommended_degree_is_twice_log2_n_capped():
    assert [recommended_degree(n) for n in (2, 3, 5, 8, 10, 50, 100)] == [2, 2, 4, 6, 8, 12, 14]


class SparseRound:
    """Phases 0-1 of a round over a k-neighbour graph, with messages through CBOR as on the wire."""

    def __init__(self, n: int, threshold: int, neighbours: int | None) -> None:
        self.threshold, self.neighbours = threshold, neighbours
        self.people = {pid: Participant(participant_id=pid, threshold=threshold, round_id=ROUND,
                                        neighbours=neighbours, rng=np.random.default_rng(i))
                       for i, pid in enumerate(_ids(n))}
        self.roster = {pid: PublicKeys.from_cbor(p.advertise().to_cbor()) for pid, p in self.people.items()}
        self.envelopes = {pid: p.share_keys(self.roster) for pid, p in self.people.items()}
        self.graph = neighbour_graph(self.roster, neighbours, context=ROUND)

    def server(self) -> Server:
        return Server(roster=self.roster, threshold=self.threshold, round_id=ROUND, neighbours=self.neighbours)

    def run(self, vectors: dict[str, np.ndarray], dropped: set[str]) -> tuple[np.ndarray, dict[str, Reveal]]:
        survivors = set(self.people) - dropped
        masked = {pid: self.people[pid].masked_input(vectors[pid], 1.0) for pid in survivors}
        reveals = {pid: Reveal.from_cbor(self.people[pid].unmask_reveal(
            survivors, dropped, {s: out[pid] for s, out in self.envelopes.items() if pid in out}).to_cbor())
            for pid in survivors}
        return self.server().unmask(masked, reveals), reveals


def _vectors(ids, seed=3):
    rng = np.random.default_rng(seed)
    return {pid: rng.normal(0.0, 0.05, 400).astype(np.float32) for pid in ids}


@pytest.mark.parametrize("drops", [0, 1, 3])
def test_sparse_round_sums_exactly_with_dropouts(drops):
    round_ = SparseRound(16, 3, 4)
    ids = sorted(round_.people)
    # drop members spread over the ring, so every dropped one keeps >= t surviving neighbours
    dropped: set[str] = set()
    for pid in ids:
        if len(dropped) == drops:
            break
        if not (round_.graph[pid] | {pid}) & dropped and all(
                len(round_.graph[d] - dropped - {pid}) >= 3 for d in dropped | {pid}):
            dropped.add(pid)
    assert len(dropped) == drops
    vectors = _vectors(ids)
    total, reveals = round_.run(vectors, dropped)
    survivors = [pid for pid in ids if pid not in dropped]
    plain = sum(vectors[pid].astype(np.float64) for pid in survivors)
    assert np.max(np.abs(total - plain)) <= RingQuantizer().error_bound(len(survivors)) + 1e-7
    for pid, reveal in reveals.items():  # a survivor reveals for its neighbourhood only
        assert set(reveal.seed_shares) | set(reveal.key_shares) <= round_.graph[pid] | {pid}
        assert set(reveal.key_shares) == round_.graph[pid] & dropped


def test_shares_go_to_neighbours_only():
    round_ = SparseRound(12, 3, 4)
    for pid, out in round_.envelopes.items():
        assert set(out) == round_.graph[pid]


def test_k_of_n_minus_one_equals_the_complete_round():
    round_ = SparseRound(6, 4, 5)
    assert all(len(out) == 5 for out in round_.envelopes.values())
    ids = sorted(round_.people)
    vectors = _vectors(ids)
    total, _ = round_.run(vectors, {ids[2]})
    plain = sum(vectors[pid].astype(np.float64) for pid in ids if pid != ids[2])
    assert np.max(np.abs(total - plain)) <= RingQuantizer().error_bound(5) + 1e-7


def test_dropped_member_with_fewer_than_t_surviving_neighbours_fails_with_that_reason():
    round_ = SparseRound(12, 3, 4)
    ids = sorted(round_.people)
    victim = ids[0]
    # the victim and two of its neighbours drop; every survivor still has t in its neighbourhood
    dropped = next({victim, a, b} for a in sorted(round_.graph[victim]) for b in sorted(round_.graph[victim])
                   if a < b and all(len((round_.graph[s] | {s}) - {victim, a, b}) >= 3
                                    for s in set(ids) - {victim, a, b}))
    with pytest.raises(SecAggFailed, match=r"fewer than t shares of the mask key of 'node-\d+' \(2 of 3"):
        round_.run(_vectors(ids), dropped)


def test_threshold_beyond_a_neighbourhood_is_refused():
    person = Participant(participant_id="node-00", threshold=6, round_id=ROUND, neighbours=4)
    roster = {"node-00": person.advertise()}
    roster.update({pid: Participant(participant_id=pid, threshold=6, round_id=ROUND).advertise()
                   for pid in _ids(10)[1:]})
    with pytest.raises(PrivacyConfigError, match="threshold 6 exceeds a neighbourhood of 5"):
        person.share_keys(roster)
    with pytest.raises(PrivacyConfigError, match="exceeds a neighbourhood"):
        Server(roster=roster, threshold=6, round_id=ROUND, neighbours=4)


def test_server_ignores_shares_from_outside_the_owners_neighbourhood():
    round_ = SparseRound(12, 3, 2)
    ids = sorted(round_.people)
    vectors = _vectors(ids)
    survivors = set(ids)
    masked = {pid: round_.people[pid].masked_input(vectors[pid], 1.0) for pid in ids}
    reveals = {pid: round_.people[pid].unmask_reveal(
        survivors, set(), {s: out[pid] for s, out in round_.envelopes.items() if pid in out}) for pid in ids}
    owner = ids[0]
    stranger = next(pid for pid in ids if pid != owner and pid not in round_.graph[owner])
    # a non-neighbour claims a share of owner's seed: the server must not use it
    forged = Reveal(participant_id=stranger, seed_shares={**reveals[stranger].seed_shares,
                                                          owner: (1, bytes(16))})
    total = round_.server().unmask(masked, {**reveals, stranger: forged})
    plain = sum(v.astype(np.float64) for v in vectors.values())
    assert np.max(np.abs(total - plain)) <= RingQuantizer().error_bound(12) + 1e-7
