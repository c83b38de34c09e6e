"""claim_task, post_result, attest_result and record_evaluation: effects and every rejection."""
import pytest
from contracts_harness import (
    C1,
    C2,
    C3,
    COORD,
    INITIAL,
    OUTSIDER,
    P1,
    P2,
    P3,
    Ledger,
    action,
    digest,
    register_payload,
    spec,
)

from trustmesh.contracts.errors import RuleViolation, SchemaError


@pytest.fixture
def ledger():
    ledger = Ledger(now=1_000)
    ledger.register(compute_nodes=[C1, C2, C3])
    return ledger


def claim(ledger, who, task="aggregate", round_no=1):
    return ledger.fed(who, action("claim_task", round=round_no, task=task))


def attest(ledger, who, model="model-1", round_no=1, **fields):
    return ledger.fed(who, action("attest_result", round=round_no, model_hash=digest(model), **fields))


# --- claim_task


def test_claim_aggregate_on_a_ready_round(ledger):
    ledger.to_ready()
    claim(ledger, C1)
    lease = ledger.round(1).lease
    assert (lease.task, lease.holder, lease.until) == ("aggregate", C1, 1_030)
    event = ledger.events[-1]
    assert event.event_type == "federation/task-claimed"
    assert (event.attribute("task"), event.attribute("holder"), event.attribute("schedule_id")) == ("aggregate", C1, "s1")


def test_claim_refused_for_non_compute_nodes(ledger):
    ledger.to_ready()
    for who in (P1, COORD, OUTSIDER):
        with pytest.raises(RuleViolation, match="not a compute node"):
            claim(ledger, who)


def test_claim_refused_in_the_wrong_status(ledger):
    ledger.open(1)
    with pytest.raises(RuleViolation, match="round 1 is open, not ready"):
        claim(ledger, C1)
    ledger.submit_all(1, "s1")
    ledger.fed(C1, action("close_round", round=1))
    with pytest.raises(RuleViolation, match="round 1 is ready, not verified"):
        claim(ledger, C1, "evaluate")


def test_unexpired_lease_cannot_be_taken_over(ledger):
    ledger.to_ready()
    claim(ledger, C1)
    ledger.set_time(1_030)  # until is inclusive
    with pytest.raises(RuleViolation, match="held by .* until 1030"):
        claim(ledger, C2)
    with pytest.raises(RuleViolation, match="held by"):
        claim(ledger, C1)  # no self-renewal while held
    ledger.set_time(1_031)
    claim(ledger, C2)
    assert ledger.round(1).lease.holder == C2
    with pytest.raises(RuleViolation, match="held by"):
        ledger.post(C1, 1)


def test_task_name_is_checked(ledger):
    ledger.to_ready()
    with pytest.raises(SchemaError, match="task"):
        ledger.fed(C1, action("claim_task", round=1, task="train"))


# --- post_result


def test_post_result_names_every_submission(ledger):
    ledger.to_ready()
    claim(ledger, C1)
    ledger.advance(5)
    state_hash = digest("adam moments")
    ledger.post(C1, 1, "model-1", included=sorted([P1, P3]), excluded={P2: "norm_bound"},
                aggregator_state_hash=state_hash)
    record = ledger.round(1)
    assert record.status == "aggregated" and record.lease is None
    result = record.result
    assert (result.aggregator, result.model_hash, result.aggregator_state_hash) == (C1, digest("model-1"), state_hash)
    assert result.included == tuple(sorted((P1, P3))) and result.excluded == {P2: "norm_bound"}
    assert result.posted_at == 1_005
    assert ledger.events[-1].event_type == "federation/result-posted"


def test_result_from_a_non_holder_is_refused(ledger):
    ledger.to_ready()
    with pytest.raises(RuleViolation, match="has no aggregate lease"):
        ledger.post(C1, 1)
    claim(ledger, C1)
    with pytest.raises(RuleViolation, match="held by"):
        ledger.post(C2, 1)


def test_result_after_the_lease_is_refused(ledger):
    ledger.to_ready()
    claim(ledger, C1)
    ledger.set_time(1_031)
    with pytest.raises(RuleViolation, match="expired at 1030"):
        ledger.post(C1, 1)


def test_result_omitting_a_submission_is_refused(ledger):
    ledger.to_ready()
    claim(ledger, C1)
    with pytest.raises(RuleViolation, match="omits 1 indexed submission"):
        ledger.post(C1, 1, included=sorted([P1, P2]))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"included": [P1, P1, P2, P3]}, "listed twice"),
        ({"included": [P1, P2, P3], "excluded": {P1: "duplicate"}}, "both included and excluded"),
        ({"included": [P1, P2, P3, OUTSIDER]}, "has no indexed submission"),
        ({"included": [], "excluded": {P1: "hash_mismatch", P2: "non_finite", P3: "wrong_shape"}},
         "must keep the base model"),
    ],
)
def test_inconsistent_results_are_refused(ledger, fields, message):
    ledger.to_ready()
    claim(ledger, C1)
    with pytest.raises(RuleViolation, match=message):
        ledger.post(C1, 1, **fields)


def test_exclusion_reason_must_be_a_known_code(ledger):
    ledger.to_ready()
    claim(ledger, C1)
    with pytest.raises(SchemaError, match="excluded"):
        ledger.post(C1, 1, included=[P1, P2], excluded={P3: "looked odd"})


def test_all_excluded_keeps_the_base_model(ledger):
    ledger.to_ready()
    claim(ledger, C1)
    excluded = {P1: "blob_unavailable", P2: "blob_unavailable", P3: "non_finite"}
    ledger.fed(C1, action("post_result", round=1, model_hash=INITIAL, included=[], excluded=excluded))
    assert ledger.round(1).result.model_hash == INITIAL


def test_post_twice_is_refused(ledger):
    ledger.to_ready()
    claim(ledger, C1)
    ledger.post(C1, 1)
    with pytest.raises(RuleViolation, match="round 1 is aggregated, not ready"):
        ledger.post(C1, 1)


def test_no_attestation_needed_with_a_single_compute_node():
    ledger = Ledger()
    ledger.fed(COORD, register_payload(compute_nodes=[C1], spec=spec(attestations_required=0)))
    ledger.to_ready()
    claim(ledger, C1)
    ledger.post(C1, 1)
    assert ledger.round(1).status == "verified"
    assert [e.event_type for e in ledger.events[-2:]] == ["federation/result-posted", "federation/result-verified"]


# --- attest_result


def test_matching_attestation_verifies(ledger):
    ledger.to_ready()
    claim(ledger, C1)
    ledger.post(C1, 1)
    attest(ledger, C2)
    record = ledger.round(1)
    assert record.status == "verified" and record.attestations == (C2,)
    assert ledger.events[-1].event_type == "federation/result-verified"


def test_k_attestations_are_needed():
    ledger = Ledger()
    ledger.register(compute_nodes=[C1, C2, C3], spec=spec(attestations_required=2))
    ledger.to_ready()
    claim(ledger, C1)
    ledger.post(C1, 1)
    attest(ledger, C2)
    assert ledger.round(1).status == "aggregated"
    with pytest.raises(RuleViolation, match="already attested"):
        attest(ledger, C2)
    attest(ledger, C3)
    assert ledger.round(1).status == "verified"


def test_aggregator_cannot_attest_itself(ledger):
    ledger.to_ready()
    claim(ledger, C1)
    ledger.post(C1, 1)
    with pytest.raises(RuleViolation, match="cannot attest its own result"):
        attest(ledger, C1)
    with pytest.raises(RuleViolation, match="not a compute node"):
        attest(ledger, P1)


def test_attest_needs_an_aggregated_round(ledger):
    ledger.to_ready()
    with pytest.raises(RuleViolation, match="round 1 is ready, not aggregated"):
        attest(ledger, C2)


def test_mismatch_disputes_clears_result_and_bars_the_aggregator(ledger):
    ledger.to_ready()
    claim(ledger, C1)
    ledger.post(C1, 1, "forged")
    attest(ledger, C2, "honest")
    record = ledger.round(1)
    assert record.status == "ready" and record.result is None and record.barred == (C1,)
    assert record.disputes[0].aggregator == C1 and record.disputes[0].attester == C2
    event = ledger.events[-1]
    assert event.event_type == "federation/result-disputed" and event.attribute("aggregator") == C1
    with pytest.raises(RuleViolation, match="barred"):
        claim(ledger, C1)
    claim(ledger, C2)  # the lease was cleared, another node takes over at once
    ledger.post(C2, 1, "honest")
    with pytest.raises(RuleViolation, match="barred"):
        attest(ledger, C1, "honest")
    attest(ledger, C3, "honest")
    assert ledger.round(1).status == "verified"


def test_aggregator_state_hash_must_match_too(ledger):
    ledger.to_ready()
    claim(ledger, C1)
    ledger.post(C1, 1, aggregator_state_hash=digest("state"))
    attest(ledger, C2, aggregator_state_hash=digest("other state"))
    assert ledger.round(1).status == "ready"


# --- record_evaluation


def evaluate(ledger, who, accuracy, round_no=1):
    return ledger.fed(who, action("record_evaluation", round=round_no, accuracy=accuracy, loss=0.3,
                                  metrics={"f1": 0.7}))


def test_accepted_model_becomes_current(ledger):
    ledger.to_verified(1, "model-1")
    claim(ledger, C3, "evaluate")
    evaluate(ledger, C3, 0.8)
    record, workflow = ledger.round(1), ledger.workflow()
    assert record.status == "accepted" and record.evaluation.verdict == "accepted"
    assert record.evaluation.previous_model_hash == INITIAL
    assert (workflow.model_hash, workflow.model_version, workflow.model_accuracy) == (digest("model-1"), 1, 0.8)
    event = ledger.events[-1]
    assert event.event_type == "federation/model-accepted" and event.attribute("model_version") == "1"


def test_gate_rejects_below_minimum_and_keeps_the_previous_model(ledger):
    ledger.to_verified(1)
    claim(ledger, C3, "evaluate")
    evaluate(ledger, C3, 0.4)  # gate minimum 0.5
    record, workflow = ledger.round(1), ledger.workflow()
    assert record.status == "rejected"
    assert record.evaluation.previous_model_hash == INITIAL
    assert (workflow.model_hash, workflow.model_version) == (INITIAL, 0)
    assert ledger.events[-1].event_type == "federation/model-rejected"


def test_gate_rejects_a_drop_beyond_the_allowed_one(ledger):
    ledger.to_verified(1, "model-1")
    claim(ledger, C3, "evaluate")
    evaluate(ledger, C3, 0.9)
    ledger.to_verified(2, "model-2")
    claim(ledger, C3, "evaluate", 2)
    evaluate(ledger, C3, 0.84, 2)  # 0.06 below 0.9; allowed drop 0.05
    assert ledger.round(2).status == "rejected"
    assert ledger.round(2).evaluation.previous_accuracy == 0.9
    assert ledger.workflow().model_hash == digest("model-1")
    ledger.to_verified(3, "model-3")
    claim(ledger, C3, "evaluate", 3)
    evaluate(ledger, C3, 0.86, 3)  # 0.04 below: within the allowed drop
    workflow = ledger.workflow()
    assert ledger.round(3).status == "accepted"
    assert (workflow.model_hash, workflow.model_version, workflow.status) == (digest("model-3"), 2, "completed")


def test_evaluation_only_by_the_evaluate_lease_holder(ledger):
    ledger.to_verified(1)
    with pytest.raises(RuleViolation, match="no evaluate lease"):
        evaluate(ledger, C3, 0.8)
    claim(ledger, C3, "evaluate")
    with pytest.raises(RuleViolation, match="held by"):
        evaluate(ledger, C1, 0.8)
    ledger.advance(31)
    with pytest.raises(RuleViolation, match="expired"):
        evaluate(ledger, C3, 0.8)


def test_evaluation_needs_a_verified_round(ledger):
    ledger.to_ready()
    claim(ledger, C1)
    with pytest.raises(RuleViolation, match="round 1 is ready, not verified"):
        evaluate(ledger, C1, 0.8)


def test_no_reconfirmation_after_a_verdict(ledger):
    ledger.to_verified(1)
    claim(ledger, C3, "evaluate")
    evaluate(ledger, C3, 0.8)
    with pytest.raises(RuleViolation, match="round 1 is accepted, not verified"):
        claim(ledger, C3, "evaluate")
    with pytest.raises(RuleViolation, match="accepted, not ready"):
        claim(ledger, C1)


def test_accuracy_must_be_a_fraction(ledger):
    ledger.to_verified(1)
    claim(ledger, C3, "evaluate")
    with pytest.raises(SchemaError, match="accuracy"):
        evaluate(ledger, C3, 1.5)


def test_workflow_completes_after_its_last_round(ledger):
    for round_no in (1, 2, 3):
        ledger.to_verified(round_no, f"model-{round_no}")
        claim(ledger, C3, "evaluate", round_no)
        evaluate(ledger, C3, 0.8, round_no)
    assert ledger.workflow().status == "completed"
    assert ledger.workflow().model_version == 3
    with pytest.raises(RuleViolation):
        ledger.open(4)
    assert P2 in ledger.workflow().participants
