"""open_round, submit (iot-data) and close_round: effects and every rejection."""
import hashlib

import pytest
from contracts_harness import (
    C1,
    C2,
    COORD,
    INITIAL,
    OUTSIDER,
    P1,
    P2,
    WF,
    Ledger,
    action,
    digest,
    spec,
    submission,
)

from trustmesh.contracts import cbor
from trustmesh.contracts.errors import RuleViolation, SchemaError
from trustmesh.contracts.rules import apply_submission


@pytest.fixture
def ledger():
    ledger = Ledger(now=1_000)
    ledger.register()
    return ledger


# --- open_round


def test_open_round_records_schedule_deadline_and_base_model(ledger):
    ledger.fed(COORD, action("open_round", round=1, schedule_id="sched-1", epsilon_spent=0.5))
    record = ledger.round(1)
    assert (record.status, record.schedule_id, record.opened_at, record.deadline) == ("open", "sched-1", 1_000, 1_060)
    assert record.base_model_hash == INITIAL
    assert record.epsilon_spent == 0.5
    assert ledger.workflow().last_round == 1
    event = ledger.events[-1]
    assert event.event_type == "federation/round-opened"
    assert [event.attribute(k) for k in ("workflow_id", "schedule_id", "round", "deadline")] == [
        WF, "sched-1", "1", "1060"
    ]


def test_open_round_only_by_coordinator(ledger):
    with pytest.raises(RuleViolation, match="only the workflow's coordinator"):
        ledger.fed(P1, action("open_round", round=1, schedule_id="s1"))


@pytest.mark.parametrize("round_no", [2, 3])
def test_open_round_must_be_next(ledger, round_no):
    with pytest.raises(RuleViolation, match=f"next round is 1, not {round_no}"):
        ledger.fed(COORD, action("open_round", round=round_no, schedule_id="s1"))


def test_open_round_refused_while_previous_awaits_verdict(ledger):
    ledger.open(1)
    with pytest.raises(RuleViolation, match="round 1 is still open"):
        ledger.open(2)
    ledger.submit_all(1, "s1")
    ledger.fed(C1, action("close_round", round=1))
    with pytest.raises(RuleViolation, match="round 1 is still ready"):
        ledger.open(2)


def test_schedule_id_is_unique_in_the_workflow(ledger):
    ledger.open(1, "same")
    ledger.advance(61)
    ledger.fed(C1, action("close_round", round=1))
    with pytest.raises(RuleViolation, match="schedule_id 'same' is already used"):
        ledger.open(2, "same")
    ledger.open(2, "other")


def test_failed_round_lets_the_coordinator_open_the_next(ledger):
    ledger.open(1)
    ledger.advance(61)
    ledger.fed(C1, action("close_round", round=1))
    assert ledger.round(1).status == "failed"
    ledger.open(2)
    assert ledger.round(2).base_model_hash == INITIAL


def test_open_round_refused_beyond_rounds():
    ledger = Ledger()
    ledger.register(spec=spec(rounds=1), privacy_cap=5)
    ledger.open(1)
    ledger.advance(61)
    ledger.fed(C1, action("close_round", round=1))
    assert ledger.workflow().status == "completed"
    with pytest.raises(RuleViolation, match="has only 1 rounds"):
        ledger.open(2)


def test_open_round_refused_beyond_the_privacy_cap():
    ledger = Ledger()
    ledger.register(spec=spec(rounds=5), privacy_cap=1)
    ledger.open(1)
    ledger.advance(61)
    ledger.fed(C1, action("close_round", round=1))
    # the cap made round 1 the final round: the workflow is over
    assert ledger.workflow().status == "completed"
    with pytest.raises(RuleViolation, match="privacy budget exhausted: .* allows 1 round"):
        ledger.open(2)


# --- submit


def test_submit_indexes_the_signer_and_returns_the_record(ledger):
    sid = ledger.open(1)
    outcome = ledger.submit(P1, submission(1, sid, "hello", num_samples=5_000, metrics={"loss": 0.25}))
    entry = ledger.index(1).entries[P1]
    assert entry.update_hash == hashlib.sha512(b"hello").hexdigest()
    assert entry.num_samples == 1_000  # capped by max_samples_per_node
    assert entry.metrics == {"loss": 0.25}
    assert entry.inline is True and entry.txn_id == "txn1"
    sub = outcome.submission
    assert (sub.signer, sub.schedule_id, sub.round, sub.app_id, sub.inline) == (P1, sid, 1, "local-train", b"hello")
    assert sub.num_samples == 1_000 and sub.submitted_nodes == (P1,) and sub.expected_nodes == 3
    event = outcome.events[0]
    assert event.event_type == "iot-data/submitted"
    assert [event.attribute(k) for k in ("workflow_id", "schedule_id", "round", "signer")] == [WF, sid, "1", P1]


def test_submit_by_reference(ledger):
    sid = ledger.open(1)
    ledger.submit(P2, submission(1, sid, "big", inline=False))
    entry = ledger.index(1).entries[P2]
    assert entry.inline is False and entry.update_hash == digest("big")


def test_second_submission_is_refused(ledger):
    sid = ledger.open(1)
    ledger.submit(P1, submission(1, sid, "a"))
    with pytest.raises(RuleViolation, match="already submitted"):
        ledger.submit(P1, submission(1, sid, "b"))
    assert len(ledger.index(1).entries) == 1


def test_submit_by_a_non_participant_is_refused(ledger):
    sid = ledger.open(1)
    for stranger in (OUTSIDER, C1, COORD):
        with pytest.raises(RuleViolation, match="not a participant"):
            ledger.submit(stranger, submission(1, sid, "x"))


def test_submit_to_wrong_round_or_schedule_is_refused(ledger):
    sid = ledger.open(1)
    with pytest.raises(RuleViolation, match="has no round 2"):
        ledger.submit(P1, submission(2, sid, "x"))
    with pytest.raises(RuleViolation, match="has schedule_id 's1', not 'other'"):
        ledger.submit(P1, submission(1, "other", "x"))
    with pytest.raises(RuleViolation, match="no workflow"):
        ledger.submit(P1, {**submission(1, sid, "x"), "workflow_id": "nope"})


def test_late_submission_is_refused(ledger):
    sid = ledger.open(1)
    ledger.set_time(1_060)  # at the deadline: still accepted
    ledger.submit(P1, submission(1, sid, "on time"))
    ledger.set_time(1_061)
    with pytest.raises(RuleViolation, match="closed for submissions at 1060"):
        ledger.submit(P2, submission(1, sid, "late"))


def test_submission_to_a_closed_round_is_refused(ledger):
    sid = ledger.open(1)
    ledger.submit_all(1, sid)
    ledger.fed(C1, action("close_round", round=1))
    with pytest.raises(RuleViolation, match="round 1 is ready, not open"):
        ledger.submit(P1, submission(1, sid, "again"))


def test_inline_bytes_must_match_the_hash(ledger):
    sid = ledger.open(1)
    with pytest.raises(RuleViolation, match="not the sha512 of the inline update"):
        ledger.submit(P1, submission(1, sid, "x", update_hash=digest("y")))


def test_submission_schema_errors(ledger):
    sid = ledger.open(1)
    with pytest.raises(SchemaError, match="num_samples"):
        ledger.submit(P1, submission(1, sid, "x", num_samples=0))
    with pytest.raises(SchemaError, match="unknown field 'node_id'"):
        ledger.submit(P1, {**submission(1, sid, "x"), "node_id": "iot-1"})


def test_submit_txn_id_must_be_given(ledger):
    sid = ledger.open(1)
    payload = cbor.encode(submission(1, sid, "x"))
    with pytest.raises(RuleViolation, match="transaction id"):
        apply_submission(ledger.view, signer=P1, payload=payload, txn_id="")


# --- close_round


def test_close_when_all_expected_submitted(ledger):
    sid = ledger.open(1)
    ledger.submit_all(1, sid)
    ledger.fed(OUTSIDER, action("close_round", round=1))  # anyone may close
    record = ledger.round(1)
    assert (record.status, record.submitted, record.closed_at) == ("ready", 3, 1_000)
    event = ledger.events[-1]
    assert event.event_type == "federation/round-ready" and event.attribute("submitted") == "3"


def test_close_before_deadline_with_missing_submissions_is_refused(ledger):
    sid = ledger.open(1)
    ledger.submit_all(1, sid, (P1, P2))
    ledger.set_time(1_060)
    with pytest.raises(RuleViolation, match="2 of 3 submissions and is open until 1060"):
        ledger.fed(C1, action("close_round", round=1))
    ledger.set_time(1_061)
    ledger.fed(C1, action("close_round", round=1))
    assert ledger.round(1).status == "ready"


def test_close_after_deadline_below_minimum_fails(ledger):
    sid = ledger.open(1)
    ledger.submit_all(1, sid, (P1,))
    ledger.advance(61)
    ledger.fed(C2, action("close_round", round=1))
    assert ledger.round(1).status == "failed"
    assert ledger.events[-1].event_type == "federation/round-failed"
    with pytest.raises(RuleViolation, match="round 1 is failed, not open"):
        ledger.fed(C2, action("close_round", round=1))


def test_close_unknown_round_is_refused(ledger):
    with pytest.raises(RuleViolation, match="has no round 1"):
        ledger.fed(C1, action("close_round", round=1))


def test_round_whose_participants_all_died_fails_on_heartbeat_time(ledger):
    """Nobody submits; compute nodes' heartbeats move block time past the deadline; the round fails."""
    ledger.open(1)
    deadline = ledger.round(1).deadline
    closes_refused = 0
    while True:
        ledger.advance(7)  # a block carrying a compute node's heartbeat
        ledger.fed(C1, action("heartbeat"))
        try:
            ledger.fed(C2, action("close_round", round=1))
            break
        except RuleViolation:
            closes_refused += 1
            assert ledger.now <= deadline
    assert ledger.now > deadline and closes_refused > 0
    record = ledger.round(1)
    assert (record.status, record.submitted) == ("failed", 0)
    assert ledger.events[-1].event_type == "federation/round-failed"
    ledger.open(2)  # the coordinator carries on
    assert ledger.round(2).status == "open"
