"""Client-side helpers: payload builders, typed state reads, and the shipped example workflows."""
import json
from pathlib import Path

import pytest
from contracts_harness import C1, P1, WF, Ledger, action, digest

from trustmesh.contracts import cbor, payloads, state
from trustmesh.contracts.addresses import round_address, workflow_address
from trustmesh.contracts.errors import RuleViolation, SchemaError, StateCorrupt
from trustmesh.contracts.records import MAX_INLINE_UPDATE, RoundRecord
from trustmesh.contracts.rules import apply_federation, apply_submission
from trustmesh.contracts.workflow import validate_workflow

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.json"))


def test_federation_payload_is_canonical_and_validated():
    data = payloads.federation_payload("close_round", workflow_id=WF, round=1)
    assert cbor.decode(data, max_bytes=1000) == {
        "schema_version": 1, "action": "close_round", "workflow_id": WF, "round": 1
    }
    with pytest.raises(SchemaError, match="round"):
        payloads.federation_payload("close_round", workflow_id=WF, round=0)
    with pytest.raises(SchemaError, match="action"):
        payloads.federation_payload("close", workflow_id=WF)


def test_submission_payload_inline_or_by_reference():
    ledger = Ledger()
    ledger.register()
    ledger.open(1)
    small = payloads.submission_payload(workflow_id=WF, round=1, schedule_id="s1", envelope=b"u" * 100, num_samples=7)
    assert not small.by_reference and small.update_hash == digest("u" * 100)
    outcome = apply_submission(ledger.view, signer=P1, payload=small.payload, txn_id="t1")
    assert outcome.submission.inline == b"u" * 100
    big = payloads.submission_payload(
        workflow_id=WF, round=1, schedule_id="s1", envelope=b"v" * (MAX_INLINE_UPDATE + 1), num_samples=7
    )
    assert big.by_reference and len(big.payload) < 1000
    assert apply_submission(ledger.view, signer=P1, payload=big.payload, txn_id="t2").submission.inline is None


def test_state_reads():
    ledger = Ledger()
    ledger.register()
    ledger.open(1)
    ledger.fed(C1, action("heartbeat"))
    assert state.load_round(ledger.view, WF, 1).schedule_id == "s1"
    assert state.load_workflow(ledger.view, WF).last_round == 1
    assert state.load_node(ledger.view, WF, C1).last_heartbeat == ledger.now
    assert state.load_node(ledger.view, WF, P1) is None
    assert state.load_index(ledger.view, WF, 1) is None
    raw = ledger.state[round_address(WF, 1)]
    assert state.decode_record(RoundRecord, raw) == ledger.round(1)
    with pytest.raises(StateCorrupt):
        state.decode_record(RoundRecord, cbor.encode({"schema_version": 1}))


def test_corrupt_state_is_not_a_rule_violation():
    """Undecodable state is the processor's problem (retry), not the sender's."""
    ledger = Ledger()
    ledger.register()
    ledger.state[workflow_address(WF)] = cbor.encode({"schema_version": 1, "workflow_id": WF})
    with pytest.raises(StateCorrupt, match="WorkflowRecord"):
        apply_federation(ledger.view, signer=C1, payload=cbor.encode(action("heartbeat")))
    assert not issubclass(StateCorrupt, RuleViolation)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate(path):
    assert validate_workflow(json.loads(path.read_text())) == []
