"""The fast paths of secure aggregation agree with the plain library calls and keep every check."""
from __future__ import annotations

import os
import random

import cbor2
import numpy as np
import pytest
from Crypto.Protocol.SecretSharing import Shamir, _Element
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from trustmesh.privacy.errors import SecAggFailed, SecAggMessageInvalid
from trustmesh.privacy.secagg import Reveal, Server, crypto, shamir


@pytest.mark.parametrize(("t", "n"), [(2, 3), (3, 5), (6, 10), (26, 50)])
def test_combiner_equals_pycryptodome_combine(t, n):
    chooser = random.Random(t * 1000 + n)
    secrets = [os.urandom(16) for _ in range(4)]
    indices = sorted(chooser.sample(range(1, n + 1), t))
    rows = []
    for secret in secrets:
        shares = dict(Shamir.split(t, n, secret))
        rows.append([shares[i] for i in indices])
        assert Shamir.combine([(i, shares[i]) for i in indices]) == secret
    assert shamir.Combiner(indices).combine_many(rows) == secrets


def test_combiner_with_too_few_shares_is_as_wrong_as_pycryptodome():
    secret = os.urandom(16)
    shares = Shamir.split(4, 6, secret)[1:4]  # three shares of a threshold-4 secret
    wrong = shamir.combine(shares)
    assert wrong == Shamir.combine(shares)
    assert wrong != secret


def test_multi_block_secrets_and_input_checks():
    secret = os.urandom(48)
    shares = shamir.split(secret, 3, 5)
    assert shamir.combine([shares[4], shares[0], shares[2]]) == secret
    with pytest.raises(ValueError, match="duplicate"):
        shamir.Combiner([1, 2, 2])
    with pytest.raises(ValueError, match="one share per index"):
        shamir.Combiner([1, 2, 3]).combine_many([[shares[0][1], shares[1][1]]])


def test_multiplication_tables_match_pycryptodome_products():
    values = [int.from_bytes(os.urandom(16), "big") for _ in range(3)] + [1, 2, 2**127 + 5]
    tables = shamir._times_table(shamir._words(values))
    for value, table in zip(values, tables, strict=True):
        for p in range(0, 128, 7):
            row = (int(table[p, 0]) << 64) | int(table[p, 1])
            assert row == int(_Element(value) * _Element(1 << (127 - p)))


def test_mask_pad_is_the_aes_ctr_keystream_and_adds_mod_2_32():
    seed = os.urandom(16)
    encryptor = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor()
    expected = np.frombuffer(encryptor.update(bytes(4 * 1001)), dtype="<u4")
    pad = crypto.MaskPad(1001)
    np.testing.assert_array_equal(pad.expand(seed), expected)
    total = np.arange(1001, dtype=np.uint32)
    pad.add(total, seed)
    np.testing.assert_array_equal(total, np.arange(1001, dtype=np.uint32) + expected)
    pad.subtract(total, seed)
    np.testing.assert_array_equal(total, np.arange(1001, dtype=np.uint32))


def test_mask_key_comes_from_its_seed_and_binds_round_and_participant(secagg_round):
    round_ = secagg_round(4, 3)
    pid, person = next(iter(round_.participants.items()))
    assert crypto.public_bytes(crypto.mask_key_from_seed(person._mask_seed, round_id=person.round_id,
                                                         participant_id=pid)) == round_.roster[pid].mask_public
    other = crypto.mask_key_from_seed(person._mask_seed, round_id="another-round", participant_id=pid)
    assert crypto.public_bytes(other) != round_.roster[pid].mask_public
    with pytest.raises(SecAggMessageInvalid):
        crypto.mask_key_from_seed(bytes(32), round_id="r", participant_id=pid)


def _unmasked_round(round_, dropped):
    ids = sorted(round_.participants)
    survivors = set(ids) - dropped
    rng = np.random.default_rng(3)
    masked = {pid: round_.participants[pid].masked_input(rng.normal(0, 0.05, 64).astype(np.float32), 0.1)
              for pid in survivors}
    reveals = {pid: round_.participants[pid].unmask_reveal(survivors, dropped, round_.inbox(pid))
               for pid in survivors}
    return masked, reveals


@pytest.mark.parametrize("dropped", [set(), {"node-05"}])
def test_a_server_combining_fewer_than_t_shares_is_caught_by_the_checks(secagg_round, dropped):
    round_ = secagg_round(6, 4)
    masked, reveals = _unmasked_round(round_, dropped)
    lax = Server(roster=round_.roster, threshold=3, round_id="wf-test:round-1")  # one share short
    with pytest.raises(SecAggFailed, match="does not match"):
        lax.unmask(masked, reveals)


def test_a_share_of_another_secret_is_caught(secagg_round):
    round_ = secagg_round(5, 3)
    masked, reveals = _unmasked_round(round_, {"node-04"})
    liar = reveals["node-00"]
    x, _ = liar.key_shares["node-04"]
    liar.key_shares["node-04"] = (x, dict(Shamir.split(3, 5, os.urandom(16)))[x])
    with pytest.raises(SecAggFailed, match="mask key of 'node-04' does not match its public key"):
        round_.server().unmask(masked, reveals)


def test_version_1_messages_and_32_byte_key_shares_are_refused():
    body = {"v": 2, "kind": "reveal", "id": "a", "seed": {}, "key": {"b": [1, bytes(32)]}, "unreadable": []}
    with pytest.raises(SecAggMessageInvalid, match="malformed share"):
        Reveal.from_cbor(cbor2.dumps(body))
    body.update(v=1, key={"b": [1, bytes(16)]})
    with pytest.raises(SecAggMessageInvalid, match="version 1"):
        Reveal.from_cbor(cbor2.dumps(body))
    body["v"] = 2
    assert Reveal.from_cbor(cbor2.dumps(body)).key_shares == {"b": (1, bytes(16))}


@pytest.mark.parametrize(("t", "n"), [(1, 1), (2, 3), (5, 9), (26, 50), (50, 50), (3, 70)])
def test_split_shares_are_rebuilt_by_pycryptodome(t, n):
    chooser = random.Random(t * 1000 + n)
    seed, key = os.urandom(16), os.urandom(32)
    seed_shares, key_shares = shamir.split_many([seed, key], t, n)
    assert [i for i, _ in seed_shares] == list(range(1, n + 1)) == [i for i, _ in key_shares]
    picked = sorted(chooser.sample(range(n), t))
    assert Shamir.combine([seed_shares[k] for k in picked]) == seed
    assert b"".join(Shamir.combine([(key_shares[k][0], key_shares[k][1][h:h + 16]) for k in picked])
                    for h in (0, 16)) == key
    if t > 1:
        assert Shamir.combine([seed_shares[k] for k in picked[1:]]) != seed


def test_polynomial_evaluation_matches_pycryptodome_horner():
    coefficients = [int.from_bytes(os.urandom(16), "big") for _ in range(6)]  # x^0 .. x^5
    values = shamir._evaluate([shamir._words([c]) for c in coefficients], 40)[0]
    for x in (1, 2, 3, 17, 40):
        expected = _Element(0)
        for c in reversed(coefficients):
            expected = _Element(x) * expected + _Element(c)
        assert (int(values[x - 1, 0]) << 64) | int(values[x - 1, 1]) == int(expected)


def test_split_is_fresh_each_time_and_checks_its_arguments():
    secret = os.urandom(16)
    assert shamir.split(secret, 3, 5) != shamir.split(secret, 3, 5)
    with pytest.raises(ValueError, match="threshold"):
        shamir.split(secret, 6, 5)
    with pytest.raises(ValueError, match="multiples"):
        shamir.split(secret[:15], 2, 5)
