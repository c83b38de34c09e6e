"""register_workflow, enroll, approve and heartbeat: effects and every rejection."""
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
    WF,
    Ledger,
    action,
    key,
    register_payload,
    spec,
)

from trustmesh.contracts import cbor
from trustmesh.contracts.addresses import node_address
from trustmesh.contracts.errors import RuleViolation, SchemaError
from trustmesh.contracts.records import NodeRecord
from trustmesh.contracts.rules import apply_federation


@pytest.fixture
def ledger():
    ledger = Ledger()
    ledger.register()
    return ledger


def node(ledger, who):
    return NodeRecord.from_obj(cbor.decode(ledger.state[node_address(WF, who)], max_bytes=10_000))


def test_register_makes_the_signer_coordinator(ledger):
    workflow = ledger.workflow()
    assert workflow.coordinator == COORD
    assert workflow.status == "active"
    assert workflow.participants == tuple(sorted((P1, P2, P3)))
    assert workflow.compute_nodes == tuple(sorted((C1, C2)))
    assert (workflow.model_hash, workflow.model_version, workflow.last_round) == (INITIAL, 0, 0)
    event = ledger.events[-1]
    assert event.event_type == "federation/workflow-registered"
    assert event.attribute("workflow_id") == WF and event.attribute("coordinator") == COORD


def test_register_twice_is_refused(ledger):
    with pytest.raises(RuleViolation, match="already exists"):
        ledger.fed(OUTSIDER, register_payload())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"spec": spec(min_nodes_required=4, expected_nodes=3)}, "min_nodes_required: 4 exceeds expected_nodes 3"),
        ({"participants": [P1, P2]}, "expected_nodes: 3 exceeds the 2 participant"),
        ({"participants": [P1, P1, P2]}, "listed twice"),
        ({"compute_nodes": [C1, C1]}, "listed twice"),
        ({"spec": spec(attestations_required=0)}, "0 is allowed only with exactly one compute node"),
        ({"spec": spec(attestations_required=2)}, "needs at least 3 compute nodes"),
        (
            {
                "spec": spec(
                    aggregation={"name": "median", "params": {}, "norm_bound": None},
                    privacy={
                        "dp": {"mode": "none"},
                        "secure_aggregation": {"enabled": True, "threshold": 2},
                    },
                )
            },
            "robust aggregator",
        ),
        (
            {"spec": spec(privacy={"dp": {"mode": "client", "clip": 1.0}, "secure_aggregation": {"enabled": False}})},
            "privacy.dp.noise_multiplier: required",
        ),
    ],
)
def test_register_refuses_inconsistent_specs(overrides, message):
    ledger = Ledger()
    with pytest.raises(RuleViolation, match=message):
        ledger.fed(COORD, register_payload(**overrides))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"privacy_cap": 0}, "privacy_cap"),
        ({"compute_nodes": []}, "compute_nodes: length 0"),
        ({"coordinator": COORD}, "unknown field 'coordinator'"),
        ({"spec": spec(model="resnet")}, "spec.model"),
        ({"initial_model_hash": "00"}, "initial_model_hash"),
    ],
)
def test_register_schema_rejections(overrides, message):
    with pytest.raises(SchemaError, match=message):
        Ledger().fed(COORD, register_payload(**overrides))


def test_single_compute_node_may_need_no_attestation():
    ledger = Ledger()
    ledger.fed(COORD, register_payload(compute_nodes=[C1], spec=spec(attestations_required=0)))
    assert ledger.workflow().compute_nodes == (C1,)


def test_signer_must_be_a_public_key():
    with pytest.raises(RuleViolation, match="signer"):
        apply_federation(Ledger().view, signer="coordinator", payload=cbor.encode(register_payload()))


# --- enrolment


@pytest.fixture
def open_ledger():
    ledger = Ledger()
    ledger.register(spec=spec(enrolment="open"))
    return ledger


def test_enroll_then_approve_adds_a_participant(open_ledger):
    newcomer = key("newcomer")
    open_ledger.fed(newcomer, action("enroll"))
    assert node(open_ledger, newcomer).enrolment == "pending"
    assert newcomer not in open_ledger.workflow().participants
    assert open_ledger.events[-1].attribute("enrolment") == "pending"
    open_ledger.fed(COORD, action("approve", node=newcomer))
    assert newcomer in open_ledger.workflow().participants
    assert node(open_ledger, newcomer).enrolment == "approved"
    event = open_ledger.events[-1]
    assert event.event_type == "federation/participant-enrolled"
    assert (event.attribute("node"), event.attribute("enrolment")) == (newcomer, "approved")


def test_enroll_refused_when_enrolment_is_closed(ledger):
    with pytest.raises(RuleViolation, match="does not allow enrolment"):
        ledger.fed(key("newcomer"), action("enroll"))


def test_enroll_refused_for_unknown_workflow(ledger):
    with pytest.raises(RuleViolation, match="no workflow 'other'"):
        ledger.fed(key("newcomer"), {**action("enroll"), "workflow_id": "other"})


def test_enroll_twice_or_as_participant_is_refused(open_ledger):
    newcomer = key("newcomer")
    open_ledger.fed(newcomer, action("enroll"))
    with pytest.raises(RuleViolation, match="awaits approval"):
        open_ledger.fed(newcomer, action("enroll"))
    with pytest.raises(RuleViolation, match="already a participant"):
        open_ledger.fed(P1, action("enroll"))


def test_approve_only_by_coordinator_and_only_pending(open_ledger):
    newcomer = key("newcomer")
    open_ledger.fed(newcomer, action("enroll"))
    with pytest.raises(RuleViolation, match="only the workflow's coordinator"):
        open_ledger.fed(newcomer, action("approve", node=newcomer))
    with pytest.raises(RuleViolation, match="no pending enrolment"):
        open_ledger.fed(COORD, action("approve", node=key("stranger")))
    open_ledger.fed(COORD, action("approve", node=newcomer))
    with pytest.raises(RuleViolation, match="no pending enrolment"):
        open_ledger.fed(COORD, action("approve", node=newcomer))


def test_approve_refused_when_enrolment_is_closed(ledger):
    with pytest.raises(RuleViolation, match="does not allow enrolment"):
        ledger.fed(COORD, action("approve", node=key("newcomer")))


# --- heartbeat


def test_heartbeat_records_block_time(ledger):
    ledger.set_time(5_000)
    ledger.fed(C1, action("heartbeat"))
    ledger.fed(P2, action("heartbeat"))
    assert node(ledger, C1).last_heartbeat == 5_000
    assert node(ledger, P2).last_heartbeat == 5_000
    ledger.set_time(5_010)
    ledger.fed(C1, action("heartbeat"))
    assert node(ledger, C1).last_heartbeat == 5_010


def test_heartbeat_refused_for_strangers_and_finished_workflows(ledger):
    with pytest.raises(RuleViolation, match="neither a participant nor a compute node"):
        ledger.fed(C3, action("heartbeat"))
    finished = Ledger()
    finished.register(spec=spec(rounds=1), privacy_cap=1)
    finished.open(1)
    finished.advance(61)
    finished.fed(C1, action("close_round", round=1))
    assert finished.workflow().status == "completed"
    with pytest.raises(RuleViolation, match="is completed"):
        finished.fed(C1, action("heartbeat"))


def test_heartbeat_needs_block_info(ledger):
    ledger.state.clear()
    with pytest.raises(RuleViolation, match="no workflow"):
        ledger.fed(C1, action("heartbeat"))
    fresh = Ledger()
    fresh.register()
    for address in [a for a in fresh.state if a.startswith("00b10c")]:
        del fresh.state[address]
    with pytest.raises(RuleViolation, match="no block info"):
        fresh.fed(C1, action("heartbeat"))
