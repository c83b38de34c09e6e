"""Hostile payloads: random bytes and mutated valid CBOR never raise anything but RuleViolation/SchemaError."""
import random

import pytest
from contracts_harness import C1, C2, COORD, P1, Ledger, action, digest, register_payload, submission
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trustmesh.contracts import cbor
from trustmesh.contracts.errors import RuleViolation
from trustmesh.contracts.families import FEDERATION, IOT_DATA
from trustmesh.contracts.rules import apply_federation, apply_submission, declared_addresses

SIGNERS = [COORD, P1, C1]


@pytest.fixture(scope="module")
def ledger():
    """A workflow with round 1 aggregated, so valid payloads of every action reach deep into the rules."""
    ledger = Ledger(now=1_000)
    ledger.register()
    ledger.to_ready(1)
    ledger.fed(C1, action("claim_task", round=1, task="aggregate"))
    ledger.post(C1, 1)
    return ledger


def valid_payloads(ledger):
    index = sorted(ledger.index(1).entries)
    return [
        register_payload(workflow_id="other"),
        action("enroll"),
        action("approve", node=P1),
        action("open_round", round=2, schedule_id="s2", epsilon_spent=1.5),
        action("heartbeat"),
        action("close_round", round=1),
        action("claim_task", round=1, task="evaluate"),
        action("post_result", round=1, model_hash=digest("m"), included=index[1:], excluded={index[0]: "duplicate"},
               aggregator_state_hash=digest("s")),
        action("attest_result", round=1, model_hash=digest("model-1")),
        action("record_evaluation", round=1, accuracy=0.75, loss=0.2, metrics={"f1": 0.5}),
    ]


def mutate(data: bytes, rnd: random.Random) -> bytes:
    """Flip, insert, delete or overwrite a few bytes, or truncate/extend."""
    buf = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        op = rnd.randrange(5)
        pos = rnd.randrange(len(buf)) if buf else 0
        if op == 0 and buf:
            buf[pos] ^= 1 << rnd.randrange(8)
        elif op == 1:
            buf.insert(pos, rnd.randrange(256))
        elif op == 2 and buf:
            del buf[pos]
        elif op == 3 and buf:
            buf[pos] = rnd.choice([0x00, 0x1B, 0x5B, 0x7F, 0x9F, 0xBF, 0xC0, 0xD8, 0xF9, 0xFB, 0xFF])
        else:
            buf = buf[: rnd.randrange(len(buf) + 1)] if rnd.random() < 0.5 else buf + bytes([rnd.randrange(256)])
    return bytes(buf)


def must_only_reject(func, **kwargs):
    try:
        func(**kwargs)
    except RuleViolation:  # SchemaError is a RuleViolation
        pass


def test_mutated_federation_payloads(ledger):
    rnd = random.Random(20261123)
    originals = [cbor.encode(p) for p in valid_payloads(ledger)]
    for i in range(2_000):
        data = mutate(originals[i % len(originals)], rnd)
        must_only_reject(apply_federation, view=ledger.view, signer=SIGNERS[i % 3], payload=data)
        must_only_reject(declared_addresses, family=FEDERATION, payload=data, signer=SIGNERS[i % 3])


def test_mutated_submission_payloads(ledger):
    fresh = Ledger(now=1_000)
    fresh.register()
    fresh.open(1)
    rnd = random.Random(7)
    originals = [cbor.encode(submission(1, "s1", "update")), cbor.encode(submission(1, "s1", "u", inline=False))]
    for i in range(1_000):
        data = mutate(originals[i % 2], rnd)
        must_only_reject(apply_submission, view=fresh.view, signer=P1, payload=data, txn_id=f"t{i}")
        must_only_reject(declared_addresses, family=IOT_DATA, payload=data, signer=P1)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=300), signer=st.sampled_from([*SIGNERS, "nonsense"]))
def test_random_bytes(ledger, data, signer):
    must_only_reject(apply_federation, view=ledger.view, signer=signer, payload=data)
    must_only_reject(apply_submission, view=ledger.view, signer=signer, payload=data, txn_id="t")


# Plain CBOR-able values, including the shapes a payload has, with wrong types in any place.
LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.text(max_size=8),
    st.binary(max_size=8), st.sampled_from(["open_round", "post_result", "register_workflow", "aggregate", C2]),
)
VALUES = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                            max_size=4), max_leaves=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.integers(0, 9), field=st.text(max_size=20), slot=st.integers(0, 20), value=VALUES,
       replace=st.booleans())
def test_structured_mutations_of_valid_payloads(ledger, base, field, slot, value, replace):
    """A known field gets a value of any shape, or an unknown field is added."""
    payload = dict(valid_payloads(ledger)[base])
    name = sorted(payload)[slot % len(payload)] if replace else field
    payload[name] = value
    data = cbor.encode(payload)
    for signer in SIGNERS:
        must_only_reject(apply_federation, view=ledger.view, signer=signer, payload=data)
    sub = submission(1, "s1", "update")
    sub[name if name in sub else "round"] = value
    must_only_reject(apply_submission, view=ledger.view, signer=P1, payload=cbor.encode(sub), txn_id="t")
