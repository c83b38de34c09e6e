"""``steps``: several actions of one signer in one transaction, as a batch of them would apply."""
import copy

import pytest
from contracts_harness import C1, C2, P1, P2, P3, Ledger, action, digest, submission

from trustmesh.contracts import cbor
from trustmesh.contracts.errors import RuleViolation, SchemaError


def steps(*payloads, workflow_id=None):
    return action("steps", steps=[cbor.encode(p) for p in payloads],
                  **({"workflow_id": workflow_id} if workflow_id else {}))


def submitted_ledger():
    ledger = Ledger(now=1_000)
    ledger.register(compute_nodes=[C1, C2])
    sid = ledger.open(1)
    ledger.submit_all(1, sid)
    return ledger


def post_fields():
    return dict(round=1, model_hash=digest("model-1"), included=sorted([P1, P2, P3]), excluded={})


def test_close_claim_and_post_as_steps_leave_the_state_and_events_of_three_transactions():
    one_by_one, together = submitted_ledger(), submitted_ledger()
    for payload in (action("close_round", round=1), action("claim_task", round=1, task="aggregate"),
                    action("post_result", **post_fields())):
        one_by_one.fed(C1, payload)
    events_before = len(together.events)
    together.fed(C1, steps(action("close_round", round=1), action("claim_task", round=1, task="aggregate"),
                           action("post_result", **post_fields())))
    assert together.state == one_by_one.state
    assert [e.event_type for e in together.events[events_before:]] == [
        "federation/round-ready", "federation/task-claimed", "federation/result-posted"]
    assert together.round(1).status == "aggregated"


def test_a_refused_step_refuses_them_all_and_says_which():
    ledger = submitted_ledger()
    before = copy.deepcopy(ledger.state)
    with pytest.raises(RuleViolation, match=r"step 3 \(post_result\): .*"):
        ledger.fed(C1, steps(action("close_round", round=1), action("claim_task", round=1, task="aggregate"),
                             action("post_result", **{**post_fields(), "included": [P1]})))
    assert ledger.state == before  # nothing of the first two steps was kept


def test_steps_are_checked_for_nesting_workflow_and_count():
    ledger = submitted_ledger()
    close = action("close_round", round=1)
    with pytest.raises(RuleViolation, match="may not hold steps"):
        ledger.fed(C1, steps(close, steps(close, close)))
    with pytest.raises(RuleViolation, match="is not the payload's"):
        ledger.fed(C1, steps(close, {**close, "workflow_id": "other"}))
    with pytest.raises(SchemaError):
        ledger.fed(C1, steps(close))  # one step is an ordinary transaction
    with pytest.raises(SchemaError):
        ledger.fed(C1, steps(*[close] * 9))
    with pytest.raises(SchemaError):
        ledger.fed(C1, action("steps", steps=[b"\xa0", cbor.encode(close)]))  # an empty map is no action


def test_steps_are_the_signers_own_actions():
    ledger = submitted_ledger()
    before = copy.deepcopy(ledger.state)
    with pytest.raises(RuleViolation, match=r"step 2 \(claim_task\): .* is not a compute node"):
        ledger.fed(P1, steps(action("close_round", round=1), action("claim_task", round=1, task="aggregate")))
    assert ledger.state == before  # anyone may close, but the close went with the refused claim
    # an iot-data submission is not a federation step
    with pytest.raises(SchemaError):
        ledger.fed(C1, steps(action("close_round", round=1), submission(1, "s1", "update")))
