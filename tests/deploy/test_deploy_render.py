"""The committed docker/ and kubernetes/ files are exactly what the renderers produce, and the
`trustmesh deploy` CLI writes them."""
from __future__ import annotations

import yaml
from deploy_support import (
    COMPOSE_PARTICIPANTS,
    DOCKER,
    K8S_PARTICIPANTS,
    K8S_WORKFLOW,
    KUBERNETES,
    fresh_compose,
    fresh_k8s,
)

from trustmesh.cli import main
from trustmesh.deploy.compose import render_compose
from trustmesh.deploy.k8s import render_k8s
from trustmesh.deploy.topology import Topology

RERENDER = "re-render with `trustmesh deploy {what}` and commit the result"


def test_committed_compose_folder_equals_a_fresh_render():
    for name, text in fresh_compose().items():
        path = DOCKER / name
        assert path.exists(), f"{path} missing; " + RERENDER.format(what="compose --participants 3 --out docker")
        assert path.read_text() == text, f"{path} differs from a fresh render; " + RERENDER.format(
            what=f"compose --participants {COMPOSE_PARTICIPANTS} --out docker")


def test_committed_manifests_equal_a_fresh_render():
    for env, n in K8S_PARTICIPANTS.items():
        fresh = fresh_k8s(env)
        committed = {p.name for p in (KUBERNETES / env).glob("*.yaml")}
        assert committed == set(fresh), f"kubernetes/{env} holds other files than the renderer makes"
        for name, text in fresh.items():
            assert (KUBERNETES / env / name).read_text() == text, (
                f"kubernetes/{env}/{name} differs; " + RERENDER.format(
                    what=f"k8s --env {env} --participants {n}"
                    + (" --workflow docker/workflow.json" if K8S_WORKFLOW[env] else "")
                    + f" --out kubernetes/{env}"))


def test_cli_writes_the_compose_folder(tmp_path, capsys):
    assert main(["deploy", "compose", "--participants", "5", "--out", str(tmp_path)]) == 0
    doc = yaml.safe_load((tmp_path / "compose.yaml").read_text())
    participants = sorted(s for s in doc["services"] if s.startswith("participant-"))
    assert participants == [f"participant-{i}" for i in range(5)]
    assert (tmp_path / "redis" / "redis-start.sh").stat().st_mode & 0o111, "scripts are executable"
    assert str(tmp_path / "compose.yaml") in capsys.readouterr().out


def test_cli_writes_manifests_with_the_workflow_embedded(tmp_path):
    workflow = tmp_path / "wf.json"
    workflow.write_text('{"workflow_id": "w1"}\n')
    out = tmp_path / "out"
    assert main(["deploy", "k8s", "--env", "prod", "--participants", "6", "--workflow", str(workflow),
                 "--workflow-id", "w1", "--out", str(out)]) == 0
    config = yaml.safe_load((out / "05-workflow.yaml").read_text())
    assert config["data"] == {"workflow.json": '{"workflow_id": "w1"}\n', "workflow_id": "w1"}
    docs = list(yaml.safe_load_all((out / "70-participants.yaml").read_text()))
    assert [d["spec"]["replicas"] for d in docs if d["kind"] == "StatefulSet"] == [6]
    # Without --workflow-id the id comes from the file.
    assert main(["deploy", "k8s", "--env", "dev", "--workflow", str(workflow), "--out", str(out)]) == 0
    assert yaml.safe_load((out / "05-workflow.yaml").read_text())["data"]["workflow_id"] == "w1"


def test_cli_refuses_bad_input_with_one_line(tmp_path, capsys):
    assert main(["deploy", "compose", "--participants", "0", "--out", str(tmp_path)]) == 1
    assert "participants" in capsys.readouterr().err
    assert main(["deploy", "k8s", "--env", "dev", "--workflow", str(tmp_path / "nope.json"),
                 "--out", str(tmp_path)]) == 1


def test_participant_count_scales_only_participants():
    small = yaml.safe_load(render_compose(Topology(participants=1))["compose.yaml"])["services"]
    large = yaml.safe_load(render_compose(Topology(participants=7))["compose.yaml"])["services"]
    assert set(large) - set(small) == {f"participant-{i}" for i in range(1, 7)}
    dev = yaml.safe_load_all(render_k8s(env="dev", participants=2)["70-participants.yaml"])
    assert [d["spec"]["replicas"] for d in dev if d["kind"] == "StatefulSet"] == [2]


def test_devnet_compose_has_no_sawtooth_network():
    services = yaml.safe_load(render_compose(Topology(participants=2, ledger="devnet", validators=1))
                              ["compose.yaml"])["services"]
    assert services["validator-0"]["command"][0] == "devnet"
    assert not [s for s in services if s.startswith(("pbft-", "genesis", "settings-tp"))]
    assert {"federation-tp-0", "iot-data-tp-0"} <= set(services)
