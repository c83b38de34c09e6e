"""Workflow JSON files: schema, cross-field checks, the register payload and the CLI."""
import copy
import json
from pathlib import Path

import pytest
from contracts_harness import Ledger, digest, key

from trustmesh.cli import main
from trustmesh.contracts import cbor
from trustmesh.contracts.rules import apply_federation
from trustmesh.contracts.workflow import (
    apply_defaults,
    coordinator_key,
    load_workflow,
    register_payload,
    validate_workflow,
)
from trustmesh.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mnist-federated.json"
NAMES = ["iot-0", "iot-1", "iot-2", "iot-3", "compute-1", "compute-2"]
KEYS = {name: key(name) for name in NAMES}


@pytest.fixture
def doc():
    return json.loads(EXAMPLE.read_text())


def minimal():
    return {
        "workflow_id": "tiny",
        "expected_nodes": 1,
        "rounds": 1,
        "model": {"name": "cnn"},
        "federation_config": {
            "coordinator_node": "iot-0",
            "participant_nodes": ["iot-1"],
            "min_nodes_required": 1,
            "round_timeout": 30,
            "compute_nodes": ["compute-1"],
        },
    }


def test_example_is_valid_and_suits_a_first_run(doc):
    assert validate_workflow(doc) == []
    fed = doc["federation_config"]
    assert len(fed["participant_nodes"]) == 3 and doc["rounds"] == 3 and doc["model"]["name"] == "mlp"
    assert doc["local_training"]["local_epochs"] == 3 and doc["local_training"]["lr"] == 0.05
    assert fed["round_timeout"] == 60 and fed["lease_seconds"] == 30


def test_minimal_document_takes_defaults():
    assert validate_workflow(minimal()) == []
    full = apply_defaults(minimal())
    assert full["federation_config"]["attestations_required"] == 0  # one compute node
    assert full["aggregation"]["name"] == "fedavg"
    assert full["privacy"]["dp"]["mode"] == "none"
    assert full["data"]["num_partitions"] == 1


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (["expected_nodes"], "five", "expected_nodes: 'five' is not of type 'integer'"),
        (["rounds"], 0, "rounds: 0 is less than the minimum of 1"),
        (["model", "name"], "resnet", "model.name: 'resnet' is not one of ['mlp', 'cnn']"),
        (["federation_config", "participant_nodes", 1], "not a key!", "federation_config.participant_nodes[1]: "),
        (["federation_config", "round_timeout"], -1, "federation_config.round_timeout: -1 is less than"),
        (["aggregation", "name"], "mean", "aggregation.name: 'mean' is not one of"),
        (["privacy", "dp", "mode"], "laplace", "privacy.dp.mode: 'laplace' is not one of"),
        (["data", "partition"], "random", "data.partition: 'random' is not one of"),
        (["validation_gate", "min_accuracy"], 1.5, "validation_gate.min_accuracy: 1.5 is greater than"),
        (["local_training", "batch_size"], 0, "local_training.batch_size: 0 is less than"),
        (["federation_config", "enrolment"], "maybe", "federation_config.enrolment: 'maybe' is not one of"),
    ],
)
def test_schema_errors_name_the_json_path(doc, path, value, message):
    target = doc
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    problems = validate_workflow(doc)
    assert any(p.startswith(message) for p in problems), problems


def test_missing_and_unknown_fields_are_named(doc):
    del doc["federation_config"]["round_timeout"]
    doc["extra"] = 1
    doc["privacy"]["dp"]["sigma"] = 2
    problems = validate_workflow(doc)
    assert "federation_config.round_timeout: required property missing" in problems
    assert "extra: unknown property" in problems
    assert "privacy.dp.sigma: unknown property" in problems


def test_cross_field_rules(doc):
    bad = copy.deepcopy(doc)
    bad["federation_config"]["min_nodes_required"] = 3
    bad["expected_nodes"] = 2
    assert validate_workflow(bad) == ["federation_config.min_nodes_required: 3 exceeds expected_nodes 2"]
    bad = copy.deepcopy(doc)
    bad["expected_nodes"] = 4
    assert validate_workflow(bad)[0].startswith("expected_nodes: 4 exceeds the 3 participant(s)")
    for robust in ("median", "trimmed_mean", "krum", "multi_krum"):
        bad = copy.deepcopy(doc)
        bad["aggregation"]["name"] = robust
        bad["privacy"]["secure_aggregation"] = {"enabled": True, "threshold": 2}
        assert validate_workflow(bad)[0].startswith(f"aggregation.name: '{robust}' is a robust aggregator")
    good = copy.deepcopy(doc)
    good["privacy"]["secure_aggregation"] = {"enabled": True, "threshold": 2}
    assert validate_workflow(good) == []
    bad = copy.deepcopy(doc)
    bad["federation_config"]["attestations_required"] = 0
    assert validate_workflow(bad)[0].startswith("federation_config.attestations_required: 0 is allowed only")
    bad = copy.deepcopy(doc)
    bad["data"]["partition"] = "dirichlet"
    assert validate_workflow(bad) == ["data.alpha: required for a dirichlet partition"]


def test_privacy_sections_are_defined(doc):
    doc["privacy"] = {
        "dp": {"mode": "client", "clip": 1.0, "noise_multiplier": 1.1, "epsilon": 8.0, "delta": 1e-5},
        "secure_aggregation": {"enabled": True, "threshold": 2},
    }
    assert validate_workflow(doc) == []
    doc["privacy"]["dp"]["epsilon"] = None
    assert validate_workflow(doc) == ["privacy.dp.epsilon: required when privacy.dp.mode is 'client'"]


def test_register_payload_resolves_names_and_registers(doc):
    payload = register_payload(doc, initial_model_hash=digest("m0"), resolve=KEYS.__getitem__)
    assert payload["participants"] == sorted(KEYS[n] for n in ("iot-1", "iot-2", "iot-3"))
    assert payload["privacy_cap"] == 3  # no DP: cap = rounds
    assert payload["spec"]["training"]["local_epochs"] == 3
    ledger = Ledger()
    signer = coordinator_key(doc, KEYS.__getitem__)
    outcome = apply_federation(ledger.view, signer=signer, payload=cbor.encode(payload))
    assert outcome.events[0].event_type == "federation/workflow-registered"


def test_register_payload_with_dp_needs_the_cap(doc):
    doc["privacy"]["dp"] = {"mode": "client", "clip": 1.0, "noise_multiplier": 1.0, "epsilon": 8.0, "delta": 1e-5}
    with pytest.raises(ConfigError, match="privacy cap"):
        register_payload(doc, initial_model_hash=digest("m0"), resolve=KEYS.__getitem__)
    payload = register_payload(doc, initial_model_hash=digest("m0"), resolve=KEYS.__getitem__, privacy_cap=2)
    assert payload["privacy_cap"] == 2


def test_register_payload_refuses_unresolved_names(doc):
    with pytest.raises(ConfigError, match="no resolver"):
        register_payload(doc, initial_model_hash=digest("m0"))
    with pytest.raises(ConfigError, match="did not resolve"):
        register_payload(doc, initial_model_hash=digest("m0"), resolve=lambda name: "nope")
    same = {**KEYS, "iot-2": KEYS["iot-1"]}
    with pytest.raises(ConfigError, match="same public key"):
        register_payload(doc, initial_model_hash=digest("m0"), resolve=same.__getitem__)


def test_public_keys_need_no_resolver(doc):
    fed = doc["federation_config"]
    fed["coordinator_node"] = KEYS["iot-0"]
    fed["participant_nodes"] = [KEYS[n] for n in ("iot-1", "iot-2", "iot-3")]
    fed["compute_nodes"] = [KEYS["compute-1"], KEYS["compute-2"]]
    assert validate_workflow(doc) == []
    payload = register_payload(doc, initial_model_hash=digest("m0"))
    assert payload["compute_nodes"] == sorted([KEYS["compute-1"], KEYS["compute-2"]])
    assert coordinator_key(doc) == KEYS["iot-0"]


def test_load_workflow(tmp_path, doc):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(doc))
    assert load_workflow(good) == doc
    doc["expected_nodes"] = "five"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="expected_nodes: 'five' is not of type 'integer'"):
        load_workflow(bad)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ConfigError, match="not JSON"):
        load_workflow(tmp_path / "broken.json")


def test_cli_validate(tmp_path, doc, capsys):
    assert main(["workflow", "validate", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out.strip() == "ok"
    doc["expected_nodes"] = "five"
    doc["federation_config"]["bogus"] = True
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    assert main(["workflow", "validate", str(bad)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["expected_nodes: 'five' is not of type 'integer'", "federation_config.bogus: unknown property"]
    assert main(["workflow", "validate", str(tmp_path / "missing.json")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_cli_validate_resolves_key_names(tmp_path, capsys):
    for name in NAMES[:4] + ["compute-1"]:
        (tmp_path / f"{name}.pub").write_text(KEYS[name] + "\n")
    assert main(["workflow", "validate", str(EXAMPLE), "--key-dir", str(tmp_path)]) == 1
    assert "federation_config.compute_nodes[1]" in capsys.readouterr().err
    (tmp_path / "compute-2.pub").write_text(KEYS["compute-2"])
    assert main(["workflow", "validate", str(EXAMPLE), "--key-dir", str(tmp_path)]) == 0


def test_integral_floats_and_non_finite_numbers_are_refused(tmp_path, doc):
    doc["rounds"] = 3.0
    assert validate_workflow(doc) == ["rounds: 3.0 is not of type 'integer'"]
    text = EXAMPLE.read_text().replace('"lr": 0.05', '"lr": NaN')
    path = tmp_path / "nan.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match="NaN is not a JSON number"):
        load_workflow(path)
