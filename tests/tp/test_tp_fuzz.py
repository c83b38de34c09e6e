"""5,000 hostile payloads through devnet to both TPs: random bytes and mutated valid CBOR, each in
its own batch (one invalid transaction fails its whole batch). Every one must come back INVALID
with the TP's reason, and both TPs must still commit valid transactions afterwards.

The mutated payloads are signed by an outsider (no role in any workflow) and built from every
action that such a signer can never perform, so any mutation — schema-breaking or not — is
invalid. ``register_workflow`` is left out: anyone may register, so a mutation that yields a
fresh, consistent workflow would rightly commit (tests/contracts fuzz it without a ledger).
"""
from __future__ import annotations

import random
from collections import Counter

import cbor2
from tp_harness import Federation, Round, batch_of, digest, signed_transaction, submission_fields

from trustmesh.contracts import cbor
from trustmesh.contracts.families import FEDERATION, IOT_DATA
from trustmesh.contracts.records import SCHEMA_VERSION

FUZZ_PAYLOADS = 5_000
"""Hostile transactions sent; on 2 shared cores the whole test takes about 40 s."""

SUBMIT_CHUNK = 250
"""Batches per submit request (each batch holds one transaction)."""

STATUS_WAIT = 240.0
"""Seconds to wait for every fuzzed batch to settle."""

SEED = 20261123


def mutate(data: bytes, rnd: random.Random) -> bytes:
    """One to four byte edits: flip a bit, insert, delete, overwrite with a CBOR marker, truncate or extend."""
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
            buf[pos] = rnd.choice([0x00, 0x18, 0x1B, 0x40, 0x5B, 0x7F, 0x9F, 0xA1, 0xBF, 0xC0, 0xF5, 0xF9, 0xFF])
        elif rnd.random() < 0.5:
            buf = buf[: rnd.randrange(len(buf) + 1)]
        else:
            buf += bytes([rnd.randrange(256)])
    return bytes(buf)


ODD_VALUES: list[object] = [
    None, True, 0, -1, 2**64, 1.5, float("nan"), "", "x" * 300, b"\x00", [], {}, ["a"], {"k": 1},
    "tp-fuzz", "tp-fuzz-r1", "03" + "ab" * 32, "f" * 128,
]


def mutate_fields(obj: dict[str, object], rng: random.Random) -> dict[str, object]:
    """Re-encodable edits of a decoded payload: a field gets an odd value or goes, or a stranger field comes."""
    out = dict(obj)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(4)
        name = rng.choice(sorted(out)) if out else "action"
        if op == 0:
            out[name] = rng.choice(ODD_VALUES)
        elif op == 1:
            out.pop(name, None)
        elif op == 2 and isinstance(out.get(name), int) and not isinstance(out.get(name), bool):
            out[name] = int(out[name]) + rng.choice([-1, 1, 2**31])  # type: ignore[call-overload]
        else:
            out[rng.choice(["extra", "signer", "coordinator", "Action"])] = rng.choice(ODD_VALUES)
    return out


def valid_bases(rnd: Round, members: dict[str, str]) -> list[tuple[str, bytes]]:
    """(family, canonical CBOR) of well-formed payloads aimed at the fuzz workflow's open round."""

    def fed(action: str, **fields: object) -> tuple[str, bytes]:
        body = {"schema_version": SCHEMA_VERSION, "action": action, "workflow_id": rnd.workflow_id, **fields}
        return FEDERATION.name, cbor.encode(body)

    where = {"round": rnd.round}
    sub = {"schema_version": SCHEMA_VERSION, **submission_fields(rnd, "fuzz")}
    by_reference = {**sub, "inline": None}
    return [
        (IOT_DATA.name, cbor.encode(sub)),
        (IOT_DATA.name, cbor.encode(by_reference)),
        fed("enroll"),
        fed("approve", node=members["p1"]),
        fed("open_round", round=2, schedule_id="fuzz-r2"),
        fed("heartbeat"),
        fed("close_round", **where),
        fed("claim_task", task="aggregate", **where),
        fed("post_result", model_hash=digest("m"), included=[members["p1"]], excluded={}, **where),
        fed("attest_result", model_hash=digest("m"), **where),
        fed("record_evaluation", accuracy=0.9, loss=0.1, metrics={}, **where),
    ]


def hostile_payloads(rnd: Round, members: dict[str, str], count: int) -> list[tuple[str, bytes]]:
    """Half random bytes (either family); a quarter byte edits of valid CBOR (most stop at decoding);
    a quarter field edits of valid payloads, re-encoded canonically (these reach the schema and rules)."""
    rng = random.Random(SEED)
    bases = valid_bases(rnd, members)
    found: list[tuple[str, bytes]] = []
    for number in range(count):
        family, base = bases[(number // 4) % len(bases)]
        if number % 2:
            family = FEDERATION.name if number % 4 == 1 else IOT_DATA.name
            found.append((family, rng.randbytes(rng.randrange(0, 300))))
        elif number % 4 == 0:
            found.append((family, mutate(base, rng)))
        else:
            found.append((family, cbor.encode(mutate_fields(cbor2.loads(base), rng))))
    return found


def test_fuzzed_payloads_are_all_invalid_and_the_tps_keep_serving(fed: Federation) -> None:
    coordinator, p1, p2, compute, outsider = (fed.node() for _ in range(5))
    fed.register("tp-fuzz", coordinator=coordinator, participants=[p1, p2], compute=[compute])
    rnd = fed.open_round(coordinator, "tp-fuzz")
    families = {FEDERATION.name: FEDERATION, IOT_DATA.name: IOT_DATA}
    batches = [
        batch_of(outsider.signer, signed_transaction(outsider.signer, families[family], payload))
        for family, payload in hostile_payloads(rnd, {"p1": p1.public_key}, FUZZ_PAYLOADS)
    ]
    for start in range(0, len(batches), SUBMIT_CHUNK):
        fed.client.submit(batches[start:start + SUBMIT_CHUNK], wait=None)
    statuses = fed.client.batch_status([b.header_signature for b in batches], wait=STATUS_WAIT)

    assert Counter(s.status for s in statuses) == Counter({"INVALID": FUZZ_PAYLOADS})
    reasons = [s.invalid_transactions[0].message for s in statuses if s.invalid_transactions]
    assert len(reasons) == FUZZ_PAYLOADS and all(reasons)
    # Some reached the rules themselves, past decoding and the schema.
    assert any("is not a participant" in r for r in reasons)
    assert any("only the workflow's coordinator" in r for r in reasons)
    assert any("is not a compute node" in r for r in reasons)
    assert fed.list_length(rnd) == 0 and p1.index(rnd.workflow_id, rnd.round) is None
    assert fed.round_record(rnd).status == "open"
    # Both processors still serve: a heartbeat (federation) and a submission (iot-data) commit.
    assert compute.act("heartbeat", workflow_id=rnd.workflow_id).committed
    assert p1.submit_update(**submission_fields(rnd, "p1")).committed
    assert [r.signer for r in fed.records(rnd)] == [p1.public_key]
