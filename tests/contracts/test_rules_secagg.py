"""Secure-aggregation phases on-chain: advertise, share, input, unmask — effects and every refusal."""
import hashlib
import subprocess
import sys

import pytest
from contracts_harness import C1, COORD, OUTSIDER, P1, P2, P3, WF, Ledger, action, key, spec, submission

from trustmesh.contracts.addresses import secagg_address
from trustmesh.contracts.errors import RuleViolation
from trustmesh.contracts.records import SecAggRecord
from trustmesh.contracts.rules.common import read_record
from trustmesh.contracts.rules.secagg import graph_of
from trustmesh.contracts.secagg_graph import neighbour_graph
from trustmesh.privacy import secagg_round

THRESHOLD = 2
TIMEOUT = 10


def secure_spec(**overrides):
    privacy = {
        "dp": {"mode": "none", "clip": None, "noise_multiplier": None, "epsilon": None, "delta": None},
        "secure_aggregation": {"enabled": True, "threshold": THRESHOLD, "phase_timeout": TIMEOUT},
    }
    return spec(privacy=privacy, **overrides)


def secagg(ledger, round_no=1) -> SecAggRecord:
    record = read_record(ledger.view, secagg_address(WF, round_no), SecAggRecord)
    assert record is not None
    return record


def keys_of(signer: str) -> dict:
    h = hashlib.sha512(signer.encode()).digest()
    return {"enc_public": h[:32], "mask_public": h[32:], "seed_commitment": hashlib.sha256(h).digest()}


def advertise(ledger, signer, round_no=1):
    ledger.fed(signer, action("secagg_advertise", round=round_no, **keys_of(signer)))


def share(ledger, signer, round_no=1):
    bundle = hashlib.sha512(b"bundle " + signer.encode()).hexdigest()
    ledger.fed(signer, action("secagg_shares", round=round_no, bundle_hash=bundle))


def to_input(ledger, members=(P1, P2, P3)) -> str:
    sid = ledger.open(1)
    for signer in (P1, P2, P3):
        advertise(ledger, signer)
    ledger.fed(C1, action("secagg_advance", round=1))
    for signer in members:
        share(ledger, signer)
    if len(members) < 3:
        ledger.advance(TIMEOUT + 1)
    ledger.fed(C1, action("secagg_advance", round=1))
    return sid


def to_unmask(ledger, survivors=(P1, P2)) -> str:
    sid = to_input(ledger)
    ledger.submit_all(1, sid, survivors)
    ledger.advance(61)
    ledger.fed(C1, action("close_round", round=1))
    return sid


def share_table(*owners):
    return {owner: hashlib.sha256(owner.encode()).digest()[:16] for owner in owners}


@pytest.fixture
def ledger():
    ledger = Ledger(now=1_000)
    ledger.register(spec=secure_spec())
    return ledger


def test_open_round_starts_the_advertise_phase(ledger):
    ledger.open(1)
    record = secagg(ledger)
    assert (record.phase, record.phase_deadline, record.threshold) == ("advertise", 1_000 + TIMEOUT, THRESHOLD)


def test_round_without_secure_aggregation_has_no_phases():
    plain = Ledger(now=1_000)
    plain.register()
    plain.open(1)
    assert read_record(plain.view, secagg_address(WF, 1), SecAggRecord) is None
    with pytest.raises(RuleViolation, match="has no secure aggregation"):
        advertise(plain, P1)


def test_advertise_records_keys_once_and_only_fresh_ones(ledger):
    ledger.open(1)
    advertise(ledger, P1)
    assert set(secagg(ledger).keys) == {P1}
    acted = ledger.events[-1]
    assert acted.event_type == "federation/secagg-acted"
    assert (acted.attribute("phase"), acted.attribute("signer")) == ("advertise", P1)
    with pytest.raises(RuleViolation, match="already advertised"):
        advertise(ledger, P1)
    with pytest.raises(RuleViolation, match="already in the round's roster"):
        ledger.fed(P2, action("secagg_advertise", round=1, **keys_of(P1)))
    with pytest.raises(RuleViolation, match="not a participant"):
        advertise(ledger, OUTSIDER)


def test_advance_waits_for_everyone_or_the_deadline(ledger):
    ledger.open(1)
    advertise(ledger, P1)
    advertise(ledger, P2)
    with pytest.raises(RuleViolation, match="has 2 of 3 and lasts until 1010"):
        ledger.fed(C1, action("secagg_advance", round=1))
    ledger.advance(TIMEOUT + 1)
    with pytest.raises(RuleViolation, match="phase 'advertise' of round 1 ended"):
        advertise(ledger, P3)
    ledger.fed(C1, action("secagg_advance", round=1))
    record = secagg(ledger)
    assert record.phase == "share" and set(record.keys) == {P1, P2}
    assert ledger.events[-1].event_type == "federation/secagg-phase"
    assert ledger.events[-1].attribute("phase") == "share"


def test_shares_only_from_the_roster_once(ledger):
    ledger.open(1)
    advertise(ledger, P1)
    advertise(ledger, P2)
    with pytest.raises(RuleViolation, match="in phase 'advertise', not 'share'"):
        share(ledger, P1)
    ledger.advance(TIMEOUT + 1)
    ledger.fed(C1, action("secagg_advance", round=1))
    share(ledger, P1)
    with pytest.raises(RuleViolation, match="already recorded its shares"):
        share(ledger, P1)
    with pytest.raises(RuleViolation, match="did not advertise"):
        share(ledger, P3)


def test_members_are_those_that_shared_and_only_they_submit(ledger):
    sid = to_input(ledger, members=(P1, P2))
    record = secagg(ledger)
    assert record.phase == "input" and record.members == tuple(sorted((P1, P2)))
    # the submission deadline restarts when members are fixed
    assert ledger.round(1).deadline == ledger.now + 60
    with pytest.raises(RuleViolation, match="not a secure-aggregation member"):
        ledger.submit(P3, submission(1, sid, "masked p3"))
    ledger.submit(P1, submission(1, sid, "masked p1"))


def test_submissions_are_refused_before_the_input_phase(ledger):
    sid = ledger.open(1)
    advertise(ledger, P1)
    with pytest.raises(RuleViolation, match="only in phase 'input', not 'advertise'"):
        ledger.submit(P1, submission(1, sid, "too early"))


def test_too_few_keys_fail_the_round_with_the_reason(ledger):
    ledger.open(1)
    advertise(ledger, P1)
    ledger.advance(TIMEOUT + 1)
    ledger.fed(C1, action("secagg_advance", round=1))
    assert ledger.round(1).status == "failed"
    record = secagg(ledger)
    assert record.phase == "failed"
    assert record.failure == "1 participant(s) advertised keys, fewer than the threshold 2"
    failed = ledger.events[-1]
    assert failed.event_type == "federation/round-failed" and failed.attribute("phase") == "advertise"
    # the coordinator may open the next round
    ledger.open(2)


def test_close_fixes_survivors_and_starts_unmasking(ledger):
    to_unmask(ledger, survivors=(P1, P2))
    record, sec = ledger.round(1), secagg(ledger)
    assert record.status == "unmasking" and record.submitted == 2
    assert sec.phase == "unmask" and sec.survivors == tuple(sorted((P1, P2))) and sec.dropped == (P3,)


def test_close_with_fewer_survivors_than_the_threshold_fails(ledger):
    sid = to_input(ledger)
    ledger.submit_all(1, sid, (P1,))
    ledger.advance(61)
    ledger.fed(C1, action("close_round", round=1))
    assert ledger.round(1).status == "failed"
    assert "1 survivor(s) submitted a masked input, fewer than the 2 required" in secagg(ledger).failure


def test_reveal_gives_seed_shares_of_survivors_and_key_shares_of_the_dropped_only(ledger):
    to_unmask(ledger, survivors=(P1, P2))
    with pytest.raises(RuleViolation, match="seed share of .* refused: it is not a survivor"):
        ledger.fed(P1, action("secagg_reveal", round=1, seed_shares=share_table(P1, P3), key_shares={}))
    with pytest.raises(RuleViolation, match="mask-key share of .* refused: it did not drop out"):
        ledger.fed(P1, action("secagg_reveal", round=1, seed_shares=share_table(P1), key_shares=share_table(P2)))
    with pytest.raises(RuleViolation, match="is not a survivor"):
        ledger.fed(P3, action("secagg_reveal", round=1, seed_shares=share_table(P1, P2), key_shares={}))
    ledger.fed(P1, action("secagg_reveal", round=1, seed_shares=share_table(P1, P2), key_shares=share_table(P3)))
    with pytest.raises(RuleViolation, match="already revealed"):
        ledger.fed(P1, action("secagg_reveal", round=1, seed_shares=share_table(P1, P2), key_shares={}))
    assert set(secagg(ledger).reveals[P1].key_shares) == {P3}


def test_all_reveals_make_the_round_ready(ledger):
    to_unmask(ledger, survivors=(P1, P2))
    ledger.fed(P1, action("secagg_reveal", round=1, seed_shares=share_table(P1, P2), key_shares=share_table(P3)))
    with pytest.raises(RuleViolation, match="has 1 of 2"):
        ledger.fed(C1, action("secagg_advance", round=1))
    ledger.fed(P2, action("secagg_reveal", round=1, seed_shares=share_table(P1, P2), key_shares=share_table(P3)))
    ledger.fed(C1, action("secagg_advance", round=1))
    assert ledger.round(1).status == "ready" and secagg(ledger).phase == "complete"
    assert ledger.events[-1].event_type == "federation/round-ready"


def test_too_few_reveals_by_the_deadline_fail_the_round(ledger):
    to_unmask(ledger, survivors=(P1, P2))
    ledger.fed(P1, action("secagg_reveal", round=1, seed_shares=share_table(P1, P2), key_shares=share_table(P3)))
    ledger.advance(TIMEOUT + 1)
    with pytest.raises(RuleViolation, match="phase 'unmask' of round 1 ended"):
        ledger.fed(P2, action("secagg_reveal", round=1, seed_shares=share_table(P1, P2), key_shares={}))
    ledger.fed(C1, action("secagg_advance", round=1))
    assert ledger.round(1).status == "failed"
    assert secagg(ledger).failure == "1 survivor(s) revealed their shares, fewer than the threshold 2"


def test_advance_in_the_input_phase_points_to_close_round(ledger):
    to_input(ledger)
    with pytest.raises(RuleViolation, match="close_round ends that phase"):
        ledger.fed(COORD, action("secagg_advance", round=1))


def test_advance_by_an_outsider_is_refused(ledger):
    ledger.open(1)
    with pytest.raises(RuleViolation, match="not a member of workflow"):
        ledger.fed(OUTSIDER, action("secagg_advance", round=1))


def test_secure_aggregation_refuses_aggregators_that_need_single_updates():
    ledger = Ledger(now=1_000)
    with pytest.raises(RuleViolation, match="perffedavg.*secure aggregation supports fedadam, fedavg, fedyogi"):
        ledger.register(spec=secure_spec(aggregation={"name": "perffedavg", "params": {}, "norm_bound": None}))


# ---------------------------------------------------------------- SecAgg+ neighbour graph

MANY = [key(f"p{i}") for i in range(1, 7)]  # P1, P2, P3 and three more


def sparse_ledger(threshold=2, neighbours=2) -> Ledger:
    ledger = Ledger(now=1_000)
    privacy = {
        "dp": {"mode": "none", "clip": None, "noise_multiplier": None, "epsilon": None, "delta": None},
        "secure_aggregation": {"enabled": True, "threshold": threshold, "phase_timeout": TIMEOUT,
                               "neighbours": neighbours},
    }
    ledger.register(spec=spec(privacy=privacy, expected_nodes=6), participants=MANY)
    return ledger


def sparse_to_unmask(ledger, survivors) -> tuple[str, dict[str, frozenset[str]]]:
    sid = ledger.open(1)
    for signer in MANY:
        advertise(ledger, signer)
    ledger.fed(C1, action("secagg_advance", round=1))
    for signer in MANY:
        share(ledger, signer)
    ledger.fed(C1, action("secagg_advance", round=1))
    graph = graph_of(secagg(ledger), sid)
    assert graph is not None
    ledger.submit_all(1, sid, tuple(survivors))
    ledger.advance(61)
    ledger.fed(C1, action("close_round", round=1))
    return sid, graph


def ring_order(graph) -> list[str]:
    """The members in the order of the ring a degree-2 graph forms."""
    order = [min(graph)]
    while len(order) < len(graph):
        order.append(min(graph[order[-1]] - set(order[-2:])))
    return order


def test_the_chain_computes_the_libraries_graph():
    ledger = sparse_ledger()
    sid = ledger.open(1)
    for signer in MANY:
        advertise(ledger, signer)
    record = secagg(ledger)
    assert record.neighbours == 2
    expected = neighbour_graph(MANY, 2, context=secagg_round.round_context(WF, sid))
    assert graph_of(record, sid) == expected
    assert all(len(peers) == 2 for peers in expected.values())


def test_contracts_load_the_graph_without_importing_the_privacy_package():
    code = ("import sys; from trustmesh.contracts.rules import secagg as rules; "
            "g = rules.neighbour_graph([f'n{i}' for i in range(20)], 4, context=rules.round_context('wf', 's')); "
            "print(sorted((k, sorted(v)) for k, v in g.items())); "
            "print(any(m.startswith('trustmesh.privacy') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    library = neighbour_graph([f"n{i}" for i in range(20)], 4, context=secagg_round.round_context("wf", "s"))
    assert out[0] == str(sorted((k, sorted(v)) for k, v in library.items()))
    assert out[1] == "False"


def test_reveal_carries_shares_of_the_revealers_neighbours_only():
    ledger = sparse_ledger()
    _, graph = sparse_to_unmask(ledger, survivors=MANY)
    revealer = MANY[0]
    stranger = next(pid for pid in MANY if pid != revealer and pid not in graph[revealer])
    with pytest.raises(RuleViolation, match="is not a neighbour of"):
        ledger.fed(revealer, action("secagg_reveal", round=1, seed_shares=share_table(revealer, stranger),
                                    key_shares={}))
    ledger.fed(revealer, action("secagg_reveal", round=1, seed_shares=share_table(revealer, *graph[revealer]),
                                key_shares={}))
    assert set(secagg(ledger).reveals[revealer].seed_shares) == graph[revealer] | {revealer}


def test_all_neighbourhood_reveals_make_a_sparse_round_ready():
    ledger = sparse_ledger()
    ring = ring_order(neighbour_graph(MANY, 2, context=secagg_round.round_context(WF, "s1")))
    gone = ring[0]
    _, graph = sparse_to_unmask(ledger, survivors=ring[1:])
    assert secagg(ledger).phase == "unmask"
    for pid in ring[1:]:
        peers = graph[pid] | {pid}
        ledger.fed(pid, action("secagg_reveal", round=1, seed_shares=share_table(*(peers - {gone})),
                               key_shares=share_table(*(peers & {gone}))))
    ledger.fed(C1, action("secagg_advance", round=1))
    assert ledger.round(1).status == "ready"


def test_dropped_member_with_fewer_than_t_surviving_neighbours_fails_at_close():
    ledger = sparse_ledger(threshold=2)
    ring = ring_order(neighbour_graph(MANY, 2, context=secagg_round.round_context(WF, "s1")))
    # ring[1] drops with one of its two neighbours: its mask key has one surviving holder, t = 2
    sparse_to_unmask(ledger, survivors=[pid for pid in ring if pid not in (ring[1], ring[2])])
    assert ledger.round(1).status == "failed"
    failure = secagg(ledger).failure
    assert failure is not None and failure.startswith("dropped member ")
    assert failure.endswith("has 1 survivor(s) in its neighbourhood, fewer than the threshold 2")
    assert ledger.events[-1].attribute("reason") == failure


def test_too_few_revealed_shares_of_one_owner_fail_the_round_at_the_deadline():
    ledger = sparse_ledger(threshold=3)
    ring = ring_order(neighbour_graph(MANY, 2, context=secagg_round.round_context(WF, "s1")))
    sparse_to_unmask(ledger, survivors=MANY)
    # everyone but ring[0] reveals: ring[1]'s neighbourhood (ring[0], ring[1], ring[2]) gives only two shares
    for pid in ring[1:]:
        ledger.fed(pid, action("secagg_reveal", round=1,
                               seed_shares=share_table(*(ring_neighbourhood(ring, pid))), key_shares={}))
    ledger.advance(TIMEOUT + 1)
    ledger.fed(C1, action("secagg_advance", round=1))
    assert ledger.round(1).status == "failed"
    assert secagg(ledger).failure.startswith("2 share(s) of the self-mask seed of ")
    assert "fewer than the threshold 3" in secagg(ledger).failure


def ring_neighbourhood(ring, pid):
    i = ring.index(pid)
    return {ring[i - 1], pid, ring[(i + 1) % len(ring)]}


@pytest.mark.parametrize(("threshold", "neighbours", "problem"), [
    (2, 6, "neighbours: 6 must be below expected_nodes 6"),
    (4, 2, "threshold: 4 exceeds a neighbourhood of 3"),
])
def test_neighbours_are_checked_against_expected_nodes_and_the_threshold(threshold, neighbours, problem):
    with pytest.raises(RuleViolation, match=problem):
        sparse_ledger(threshold=threshold, neighbours=neighbours)
