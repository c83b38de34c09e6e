"""`trustmesh workflow register` against devnet and the TPs: signed by the coordinator the file
names, key names resolved from the key's folder, initial model hash and privacy cap on-chain, the
initial model blob in Redis, and the chain's reason (exit 1) when it refuses."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tp_harness import REPO, Federation

from trustmesh.cli import main
from trustmesh.contracts.workflow import load_workflow
from trustmesh.fl.initial import initial_model
from trustmesh.iot import coordinator
from trustmesh.iot.coordinator import privacy_cap
from trustmesh.ledger.keys import write_key_pair
from trustmesh.runner.stack import LocalStack

FEDERATED = REPO / "examples" / "mnist-federated.json"
PRIVATE = REPO / "examples" / "mnist-private.json"
NAMES = ["iot-0", "iot-1", "iot-2", "iot-3", "iot-4", "iot-5", "compute-1", "compute-2"]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """NAME -> (private key file, public key) for every node the examples name, in one folder."""
    folder = tmp_path_factory.mktemp("keys")
    return {name: write_key_pair(name, folder) for name in NAMES}


def register(stack: LocalStack, workflow: Path, key: Path, *extra: str) -> int:
    return main(["workflow", "register", str(workflow), "--key", str(key), "--url", stack.ledger_url, *extra])


def test_register_records_the_workflow_and_stores_the_initial_model(
    stack: LocalStack, fed: Federation, keys: dict[str, tuple[Path, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert register(stack, FEDERATED, keys["iot-0"][0], "--redis", stack.redis_for("coordinator")) == 0
    assert capsys.readouterr().out.strip() == "federated-mnist-learning active"
    record = fed.node().workflow("federated-mnist-learning")
    assert record is not None
    blob, digest = initial_model("mlp")
    assert record.coordinator == keys["iot-0"][1]
    assert record.participants == tuple(sorted(keys[n][1] for n in ("iot-1", "iot-2", "iot-3")))
    assert record.compute_nodes == tuple(sorted(keys[n][1] for n in ("compute-1", "compute-2")))
    assert record.model_hash == digest and record.privacy_cap == record.spec.rounds == 3
    assert fed.redis.get_model("federated-mnist-learning", digest) == blob

    assert register(stack, FEDERATED, keys["iot-0"][0]) == 1
    assert "workflow 'federated-mnist-learning' already exists" in capsys.readouterr().err


def test_register_records_the_privacy_cap(
    stack: LocalStack, fed: Federation, keys: dict[str, tuple[Path, str]], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    doc = load_workflow(PRIVATE)  # client DP; secure aggregation off, so only the DP budget caps rounds
    doc["privacy"]["secure_aggregation"] = {"enabled": False, "threshold": None}
    private = tmp_path / "dp.json"
    private.write_text(json.dumps(doc))
    computed: list[int | None] = []

    def accountant(doc: dict[str, Any]) -> int | None:  # the real accountant, its answer kept
        computed.append(privacy_cap(doc))
        return computed[-1]

    monkeypatch.setattr(coordinator, "privacy_cap", accountant)
    assert register(stack, private, keys["iot-0"][0]) == 0
    assert capsys.readouterr().out.strip() == "private-mnist active"
    record = fed.node().workflow("private-mnist")
    assert record is not None and len(computed) == 1
    assert 1 <= record.privacy_cap == computed[0] < doc["rounds"]


def test_register_refuses_a_key_that_is_not_the_named_coordinator(
    stack: LocalStack, fed: Federation, keys: dict[str, tuple[Path, str]], tmp_path: Path,
    capsys: pytest.CaptureFixture[str]
) -> None:
    other = FEDERATED.read_text().replace('"federated-mnist-learning"', '"not-by-a-participant"')
    workflow = tmp_path / "wf.json"
    workflow.write_text(other)
    assert register(stack, workflow, keys["iot-1"][0]) == 1
    assert "is not the coordinator named in" in capsys.readouterr().err
    assert fed.node().workflow("not-by-a-participant") is None


def test_register_needs_every_key_name_to_resolve(
    stack: LocalStack, keys: dict[str, tuple[Path, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "no-keys"
    empty.mkdir()
    assert register(stack, FEDERATED, keys["iot-0"][0], "--keys-dir", str(empty)) == 1
    assert "no public key at" in capsys.readouterr().err
