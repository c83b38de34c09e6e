"""Secure aggregation: exact sums under dropouts, clean failures, hidden inputs, refused double reveals."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from trustmesh.fl.aggregate import fedavg
from trustmesh.privacy.errors import RevealRefused, SecAggFailed
from trustmesh.privacy.secagg import RingQuantizer, shamir, weighted_mean

N, T, D = 7, 4, 600


def _inputs(ids, seed=1):
    rng = np.random.default_rng(seed)
    vectors = {pid: rng.normal(0.0, 0.05, D).astype(np.float32) for pid in ids}
    samples = {pid: int(rng.integers(20, 200)) for pid in ids}
    total = sum(samples.values())
    return vectors, samples, {pid: samples[pid] / total for pid in ids}


@pytest.mark.parametrize("drop", [0, 1, N - T])
def test_weighted_sum_matches_plain_fedavg_within_quantization(secagg_round, drop):
    round_ = secagg_round(N, T)
    ids = sorted(round_.participants)
    vectors, samples, weights = _inputs(ids)
    dropped = set(ids[1:1 + drop])
    survivors = [pid for pid in ids if pid not in dropped]

    total = round_.run(vectors, weights, dropped)

    plain_sum = sum(vectors[pid].astype(np.float64) * weights[pid] for pid in survivors)
    bound = RingQuantizer().error_bound(len(survivors)) + 1e-7  # + float32 rounding of the output
    assert np.max(np.abs(total - plain_sum)) <= bound
    mean = weighted_mean(total, [weights[pid] for pid in survivors])
    plain_avg = fedavg([vectors[pid] for pid in survivors], [samples[pid] for pid in survivors])
    assert np.max(np.abs(mean - plain_avg)) <= bound / sum(weights[pid] for pid in survivors) + 1e-7


def test_deterministic_rounding_bound_is_half_a_step_each(secagg_round):
    from trustmesh.privacy.secagg import Participant, PublicKeys, Server
    quantizer = RingQuantizer(step=2.0 ** -12, stochastic=False)
    ids = [f"n{i}" for i in range(4)]
    people = {pid: Participant(participant_id=pid, threshold=3, round_id="r", quantizer=quantizer) for pid in ids}
    roster: dict[str, PublicKeys] = {pid: p.advertise() for pid, p in people.items()}
    envelopes = {pid: p.share_keys(roster) for pid, p in people.items()}
    vectors, _, _ = _inputs(ids, seed=5)
    masked = {pid: people[pid].masked_input(vectors[pid], 1.0) for pid in ids}
    reveals = {pid: people[pid].unmask_reveal(set(ids), set(), {s: envelopes[s][pid] for s in ids if s != pid})
               for pid in ids}
    total = Server(roster=roster, threshold=3, round_id="r", quantizer=quantizer).unmask(masked, reveals)
    exact = sum(v.astype(np.float64) for v in vectors.values())
    assert np.max(np.abs(total - exact)) <= quantizer.error_bound(4) + 1e-7
    assert quantizer.error_bound(4) == 4 * quantizer.step / 2


def test_fewer_than_t_survivors_fails_with_that_reason(secagg_round):
    round_ = secagg_round(N, T)
    ids = sorted(round_.participants)
    vectors, _, weights = _inputs(ids)
    survivors = set(ids[:T - 1])
    dropped = set(ids) - survivors
    masked = {pid: round_.participants[pid].masked_input(vectors[pid], weights[pid]) for pid in survivors}
    with pytest.raises(SecAggFailed, match="fewer than t survivors"):
        round_.participants[ids[0]].unmask_reveal(survivors, dropped, round_.inbox(ids[0]))
    with pytest.raises(SecAggFailed, match="fewer than t survivors"):
        round_.server().unmask(masked, {})


def test_single_masked_update_looks_uniform(secagg_round):
    round_ = secagg_round(3, 2)
    pid = sorted(round_.participants)[0]
    # a very structured input: all zeros; its masked form must still be uniform bytes
    masked = round_.participants[pid].masked_input(np.zeros(20_000, dtype=np.float32), 1.0)
    counts = np.bincount(np.frombuffer(masked.astype("<u4").tobytes(), dtype=np.uint8), minlength=256)
    _, p_value = stats.chisquare(counts)
    assert p_value > 0.001


def test_survivor_refuses_both_shares_of_one_participant(secagg_round):
    round_ = secagg_round(5, 3)
    ids = sorted(round_.participants)
    me, peer = ids[0], ids[3]
    alive = set(ids)
    vectors, _, weights = _inputs(ids)
    round_.participants[me].masked_input(vectors[me], weights[me])
    with pytest.raises(RevealRefused, match="both shares"):
        round_.participants[me].unmask_reveal(alive, {peer}, round_.inbox(me))
    # asked first with the peer alive, later with the peer dropped: the second request is refused
    first = round_.participants[me].unmask_reveal(alive, set(), round_.inbox(me))
    assert peer in first.seed_shares and not first.key_shares
    with pytest.raises(RevealRefused, match="revealed earlier"):
        round_.participants[me].unmask_reveal(alive - {peer}, {peer}, round_.inbox(me))
    again = round_.participants[me].unmask_reveal(alive, set(), round_.inbox(me))
    assert again.seed_shares == first.seed_shares


def test_no_reveal_without_a_masked_input(secagg_round):
    round_ = secagg_round(4, 3)
    me = sorted(round_.participants)[0]
    with pytest.raises(RevealRefused, match="no masked input"):
        round_.participants[me].unmask_reveal(set(round_.participants), set(), round_.inbox(me))


def test_one_masked_input_per_round(secagg_round):
    round_ = secagg_round(4, 3)
    me = sorted(round_.participants)[0]
    person = round_.participants[me]
    vector = np.linspace(-0.1, 0.1, 50, dtype=np.float32)
    first = person.masked_input(vector, 0.25)
    np.testing.assert_array_equal(person.masked_input(vector, 0.25), first)  # a retry: same bytes
    with pytest.raises(SecAggFailed, match="already produced"):
        person.masked_input(vector * 2, 0.25)


def test_unmask_is_deterministic_for_verify_round(secagg_round):
    round_ = secagg_round(5, 3)
    ids = sorted(round_.participants)
    vectors, _, weights = _inputs(ids)
    dropped = {ids[2]}
    survivors = set(ids) - dropped
    masked = {pid: round_.participants[pid].masked_input(vectors[pid], weights[pid]) for pid in survivors}
    reveals = {pid: round_.participants[pid].unmask_reveal(survivors, dropped, round_.inbox(pid))
               for pid in survivors}
    first = round_.server().unmask(masked, reveals)
    second = round_.server().unmask(dict(reversed(list(masked.items()))), reveals)
    assert first.tobytes() == second.tobytes()


def test_reveal_gives_seed_shares_of_survivors_and_key_shares_of_dropped(secagg_round):
    round_ = secagg_round(5, 3)
    ids = sorted(round_.participants)
    dropped = {ids[4]}
    round_.participants[ids[0]].masked_input(np.zeros(8, dtype=np.float32), 0.2)
    reveal = round_.participants[ids[0]].unmask_reveal(set(ids) - dropped, dropped, round_.inbox(ids[0]))
    assert set(reveal.seed_shares) == set(ids) - dropped
    assert set(reveal.key_shares) == dropped


@pytest.mark.parametrize("kind", ["seed", "key"])
def test_tampered_share_is_detected(secagg_round, kind):
    round_ = secagg_round(5, 3)
    ids = sorted(round_.participants)
    vectors, _, weights = _inputs(ids)
    dropped = {ids[4]} if kind == "key" else set()
    survivors = set(ids) - dropped
    masked = {pid: round_.participants[pid].masked_input(vectors[pid], weights[pid]) for pid in survivors}
    reveals = {pid: round_.participants[pid].unmask_reveal(survivors, dropped, round_.inbox(pid))
               for pid in survivors}
    victim = ids[2] if kind == "seed" else ids[4]
    liar = reveals[ids[0]]
    table = liar.seed_shares if kind == "seed" else liar.key_shares
    x, share = table[victim]
    # flip a whole middle byte (X25519 ignores a few clamped bits of the key, so a single low bit may not matter)
    table[victim] = (x, share[:5] + bytes([share[5] ^ 0xFF]) + share[6:])
    with pytest.raises(SecAggFailed, match="does not match"):
        round_.server().unmask(masked, reveals)


def test_too_few_shares_combine_to_a_wrong_value_silently():
    """Why every recovered value is checked: pycryptodome gives no error with fewer than t shares."""
    secret = bytes(range(32))
    shares = shamir.split(secret, 3, 5)
    assert shamir.combine(shares[:3]) == secret
    assert shamir.combine(shares[2:5]) == secret
    assert shamir.combine(shares[:2]) != secret


def test_unreadable_envelope_is_reported_not_fatal(secagg_round):
    round_ = secagg_round(5, 3)
    ids = sorted(round_.participants)
    me = ids[0]
    inbox = round_.inbox(me)
    inbox[ids[1]] = inbox[ids[2]]  # an envelope from ids[2] presented as coming from ids[1]
    round_.participants[me].masked_input(np.zeros(8, dtype=np.float32), 0.2)
    reveal = round_.participants[me].unmask_reveal(set(ids), set(), inbox)
    assert reveal.unreadable == (ids[1],)
    assert ids[1] not in reveal.seed_shares and ids[2] in reveal.seed_shares


def test_overflowing_input_is_refused(secagg_round):
    round_ = secagg_round(3, 2)
    pid = sorted(round_.participants)[0]
    huge = np.full(10, 1e6, dtype=np.float32)
    with pytest.raises(SecAggFailed, match="capacity"):
        round_.participants[pid].masked_input(huge, 1.0)


def test_distributed_dp_composes_with_secure_aggregation(secagg_round):
    """Each participant clips and noises, then masks: the unmasked mean is the mean of the noisy deltas."""
    from trustmesh.privacy.dp import DistributedNoise, RoundPrivatizer

    round_ = secagg_round(5, 3)
    ids = sorted(round_.participants)
    plan = DistributedNoise(noise_multiplier=1.0, clip=0.5, expected_nodes=5, min_nodes=3)
    rng = np.random.default_rng(11)
    noisy = {}
    for i, pid in enumerate(ids):
        delta = {"w": rng.normal(0, 1.0, (10, 8)).astype(np.float32), "b": rng.normal(0, 1.0, 10).astype(np.float32)}
        private = RoundPrivatizer(noise=plan, rng=np.random.default_rng(i)).privatize(1, delta)
        noisy[pid] = np.concatenate([private.params["w"].ravel(), private.params["b"]])
    weights = dict.fromkeys(ids, 1 / 5)
    total = round_.run(noisy, weights, dropped=set())
    plain = fedavg([noisy[pid] for pid in ids], [1] * 5)
    assert np.max(np.abs(weighted_mean(total, list(weights.values())) - plain)) <= \
        RingQuantizer().error_bound(5) + 1e-6
