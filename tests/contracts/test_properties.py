"""Property tests: random action sequences keep the round invariants.

Each step draws an actor and an action (often a plausible one, sometimes not), applies it to the
in-memory ledger, and checks the invariants against an independent model of what must hold.
"""
from dataclasses import dataclass, field

from contracts_harness import (
    C1,
    C2,
    C3,
    COORD,
    OUTSIDER,
    P1,
    P2,
    P3,
    WF,
    Ledger,
    action,
    digest,
    spec,
    submission,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trustmesh.contracts.addresses import round_address
from trustmesh.contracts.errors import RuleViolation

PARTICIPANTS = (P1, P2, P3)
COMPUTE = (C1, C2, C3)
EVERYONE = (COORD, *PARTICIPANTS, *COMPUTE, OUTSIDER)
# Written independently of the contract's own table.
LEGAL = {
    ("open", "ready"), ("open", "failed"), ("ready", "aggregated"), ("ready", "verified"),
    ("aggregated", "verified"), ("aggregated", "ready"), ("verified", "accepted"), ("verified", "rejected"),
}
ROUNDS = 4


@dataclass
class Model:
    """What the test itself remembers about accepted transactions."""

    submitted: dict[int, list[str]] = field(default_factory=dict)
    accepted: int = 0


def rounds_in_state(ledger):
    return {r: ledger.round(r) for r in range(1, ROUNDS + 2) if round_address(WF, r) in ledger.state}


KINDS = ["time", "open", "submit", "close", "claim", "post", "attest", "evaluate", "heartbeat"]
# The moves that usually make progress from a round's status (drawn more often, to reach late states).
NATURAL = {
    None: ["open"],
    "open": ["submit", "submit", "submit", "close", "time"],
    "ready": ["claim", "post", "post", "time"],
    "aggregated": ["attest", "attest", "claim"],
    "verified": ["claim", "claim", "evaluate", "evaluate", "evaluate"],
    "failed": ["open"],
    "accepted": ["open"],
    "rejected": ["open"],
}


def step(ledger, model, draw, workflow, before):
    current = max(1, workflow.last_round)
    round_no = draw([current] * 6 + [current + 1, current - 1 or 1])
    status = before[current].status if current in before else None
    natural = draw(range(10)) < 8
    kind = draw(NATURAL[status] if natural else KINDS)
    now = ledger.now
    if kind == "time":
        ledger.advance(draw(range(0, 46)))
        return
    if kind == "open":
        signer = draw([COORD, COORD, COORD, P1])
        sid = draw(["a", "b", "c", "d", "e"])
        ledger.fed(signer, action("open_round", round=draw([workflow.last_round + 1, round_no]),
                                  schedule_id=sid))
        return
    record = before.get(round_no)
    if kind == "submit":
        signer = draw([*PARTICIPANTS, *PARTICIPANTS, OUTSIDER])
        sid = record.schedule_id if record else "a"
        outcome = ledger.submit(signer, submission(round_no, sid, f"{signer}{round_no}{now}"))
        assert record is not None and record.status == "open" and now <= record.deadline
        assert signer in PARTICIPANTS
        model.submitted.setdefault(round_no, []).append(outcome.submission.signer)
        return
    if kind == "close":
        ledger.fed(draw(EVERYONE), action("close_round", round=round_no))
        return
    if kind == "heartbeat":
        ledger.fed(draw(EVERYONE), action("heartbeat"))
        return
    holder = record.lease.holder if record and record.lease else C1
    aggregator = record.result.aggregator if record and record.result else C1
    if kind in ("post", "evaluate"):
        signer = draw([holder, holder, holder, *COMPUTE, P1])
    elif kind == "attest":
        signer = draw([c for c in COMPUTE if c != aggregator] * 3 + [aggregator, P1])
    else:
        signer = draw([*COMPUTE, *COMPUTE, P1])
    if kind == "claim":
        usual = "evaluate" if record and record.status == "verified" else "aggregate"
        task = draw([usual, usual, usual, "aggregate", "evaluate"])
        ledger.fed(signer, action("claim_task", round=round_no, task=task))
        lease = record.lease
        assert lease is None or lease.task != task or now > lease.until, "took over a live lease"
        assert signer not in record.barred
        return
    if kind == "post":
        variant = draw(["full", "full", "omit", "exclude_all", "extra"])
        index = ledger.index(round_no)
        names = sorted(index.entries) if index else []
        included, excluded = list(names), {}
        if variant == "omit" and names:
            included = names[1:]
        elif variant == "exclude_all":
            included, excluded = [], {n: "blob_unavailable" for n in names}
        elif variant == "extra":
            included = [*names, OUTSIDER]
        model_hash = record.base_model_hash if not included and record else digest(f"model{round_no}")
        ledger.fed(signer, action("post_result", round=round_no, model_hash=model_hash, included=included,
                                  excluded=excluded))
        assert record.lease.task == "aggregate" and record.lease.holder == signer and now <= record.lease.until
        return
    if kind == "attest":
        honest = draw([True, True, False])
        posted = record.result.model_hash if record and record.result else digest("x")
        ledger.fed(signer, action("attest_result", round=round_no, model_hash=posted if honest else digest("y")))
        assert signer != record.result.aggregator
        return
    if kind == "evaluate":
        accuracy = draw([0.2, 0.2, 0.6, 0.7, 0.9])
        ledger.fed(signer, action("record_evaluation", round=round_no, accuracy=accuracy))
        assert record.lease.task == "evaluate" and record.lease.holder == signer and now <= record.lease.until
        if ledger.round(round_no).status == "accepted":
            model.accepted += 1
        return
    raise AssertionError(kind)


def check_invariants(ledger, model, before, workflow, after):
    assert workflow.last_round <= min(workflow.privacy_cap, workflow.spec.rounds), "round beyond the cap"
    assert set(after) == set(range(1, workflow.last_round + 1))
    assert workflow.model_version == model.accepted
    for r, record in after.items():
        old = before.get(r)
        if old is not None and old.status != record.status:
            assert (old.status, record.status) in LEGAL, f"illegal {old.status} -> {record.status}"
        if old is None:
            assert record.status == "open"
        index = ledger.index(r)
        entries = {} if index is None else index.entries
        records = model.submitted.get(r, [])
        assert len(records) == len(set(records)), "double submission"
        assert sorted(records) == sorted(entries), "index differs from the submission records"
        assert set(entries) <= set(PARTICIPANTS)
        if record.result is not None:
            named = set(record.result.included) | set(record.result.excluded)
            assert named == set(entries), "result does not cover the index"
            assert not set(record.result.included) & set(record.result.excluded)
        if record.lease is not None:
            assert record.lease.holder in COMPUTE and record.lease.holder not in record.barred
        if record.status in {"ready", "aggregated", "verified", "accepted", "rejected"}:
            assert record.submitted is not None and record.submitted >= workflow.spec.min_nodes_required
    if workflow.status == "completed":
        assert workflow.last_round == min(workflow.privacy_cap, workflow.spec.rounds)


SEEN: dict[str, int] = {}


# derandomize: the same 60 sequences every run, so the coverage guard below is stable.
@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    cap=st.integers(1, ROUNDS),
    k=st.integers(1, 2),
    steps=st.integers(10, 80),
    rnd=st.randoms(use_true_random=True),
)
def test_random_action_sequences_keep_the_invariants(cap, k, steps, rnd):
    """Hypothesis picks the workflow and a seeded generator; the generator picks each move (fast, uniform)."""
    ledger = Ledger(now=0)
    ledger.register(spec=spec(rounds=ROUNDS, attestations_required=k), compute_nodes=list(COMPUTE), privacy_cap=cap)
    model = Model()
    workflow, before = ledger.workflow(), {}

    def draw(options):
        return rnd.choice(list(options))

    for _ in range(steps):
        try:
            step(ledger, model, draw, workflow, before)
        except RuleViolation:
            pass  # a rejected transaction changes nothing (the ledger commits only outcomes)
        workflow, after = ledger.workflow(), rounds_in_state(ledger)
        check_invariants(ledger, model, before, workflow, after)
        for record in after.values():
            SEEN[record.status] = SEEN.get(record.status, 0) + 1
        before = after


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_a_round_reaches_a_verdict_or_fails_however_slow_the_nodes(data):
    """Driving only legal moves at random speeds, every round ends and the workflow completes."""
    ledger = Ledger(now=0)
    ledger.register(spec=spec(rounds=2), compute_nodes=list(COMPUTE), privacy_cap=2)
    for r in (1, 2):
        ledger.open(r)
        for p in PARTICIPANTS:
            ledger.advance(data.draw(st.integers(0, 40)))
            try:
                ledger.submit(p, submission(r, f"s{r}", f"{p}{r}"))
            except RuleViolation:
                assert ledger.now > ledger.round(r).deadline
        while True:
            try:
                ledger.fed(C1, action("close_round", round=r))
                break
            except RuleViolation:
                ledger.advance(10)
                ledger.fed(C2, action("heartbeat"))
        if ledger.round(r).status == "failed":
            continue
        ledger.fed(C1, action("claim_task", round=r, task="aggregate"))
        ledger.post(C1, r, f"m{r}")
        ledger.fed(C2, action("attest_result", round=r, model_hash=digest(f"m{r}")))
        ledger.fed(C3, action("claim_task", round=r, task="evaluate"))
        ledger.fed(C3, action("record_evaluation", round=r, accuracy=data.draw(st.sampled_from([0.1, 0.9]))))
    assert ledger.workflow().status == "completed"


def test_the_random_sequences_reached_every_status():
    """Guards the generator: the property test above must have exercised the whole state machine."""
    if not SEEN:
        import pytest

        pytest.skip("run together with the property test")
    assert {"open", "ready", "failed", "aggregated", "verified", "accepted", "rejected"} <= set(SEEN), SEEN
