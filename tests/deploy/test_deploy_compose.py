"""docker/compose.yaml: valid by the compose-spec schema, internally consistent, and the network
the issue asks for (checked statically: no Docker engine runs here)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import jsonschema
import pytest
import yaml
from deploy_support import DOCKER

from trustmesh.deploy.compose import EXAMPLE_WORKFLOW
from trustmesh.deploy.topology import CREDENTIALS

_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?][^}]*)?\}")


def test_compose_file_matches_the_compose_spec_schema(compose_schema, compose_doc):
    jsonschema.validate(compose_doc, compose_schema)


def test_schema_check_catches_a_bad_file(compose_schema, compose_doc):
    broken = yaml.safe_load(yaml.safe_dump(compose_doc))
    broken["services"]["redis-0"]["restart"] = ["always"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, compose_schema)


def test_every_dependency_volume_and_network_named_exists(compose_doc):
    services, volumes, networks = compose_doc["services"], compose_doc["volumes"], compose_doc["networks"]
    used_volumes, used_networks = set(), set()
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            assert dependency != name
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            if source.startswith("./"):
                assert (DOCKER / source).exists(), f"{name} mounts missing {source}"
            elif not source.startswith("$"):
                assert source in volumes, f"{name} mounts undeclared volume {source}"
                used_volumes.add(source)
        for network in service.get("networks", []):
            assert network in networks, f"{name} joins undeclared network {network}"
            used_networks.add(network)
        assert not ("networks" in service and "network_mode" in service)
    assert used_volumes == set(volumes), "declared volumes nobody uses"
    assert used_networks == set(networks), "declared networks nobody joins"


def test_dependencies_have_no_cycle(compose_doc):
    services = compose_doc["services"]
    state: dict[str, str] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert state.get(name) != "open", f"dependency cycle: {' -> '.join(path + (name,))}"
        if state.get(name) == "done":
            return
        state[name] = "open"
        for dependency in services[name].get("depends_on", {}):
            visit(dependency, path + (name,))
        state[name] = "done"

    for name in services:
        visit(name, ())


def test_every_variable_is_in_the_env_template_and_no_secret_is_committed(compose_files):
    template = compose_files[".env.template"]
    assert (DOCKER / ".env.template").read_text() == template
    declared = {line.split("=", 1)[0].lstrip("# ").strip() for line in template.splitlines() if "=" in line}
    used = {m.group(1) for m in _INTERPOLATION.finditer(compose_files["compose.yaml"])}
    required = {m.group(1) for m in _INTERPOLATION.finditer(compose_files["compose.yaml"])
                if (m.group(2) or "").startswith(":?")}
    assert used - declared <= {"VERIFY_ROUND"}, f"variables missing from .env.template: {used - declared}"
    assert set(CREDENTIALS) <= required, "every credential must be required (:?), never defaulted"
    credentials = {line.split("=", 1)[1] for line in template.splitlines()
                   if "=" in line and line.split("=", 1)[0] in CREDENTIALS}
    assert credentials <= {"", "trustmesh"}, "the template must not carry real credentials"
    assert "COMPOSE_PROJECT_NAME=trustmesh" in template.splitlines()
    assert ".env" in (DOCKER / ".gitignore").read_text().splitlines(), "docker/.env must stay out of git"


def test_sawtooth_pbft_network_shape(compose_doc):
    services = compose_doc["services"]
    for i in range(4):
        validator = services[f"validator-{i}"]
        assert validator["image"] == "hyperledger/sawtooth-validator:1.2"
        assert validator["hostname"] == f"validator-{i}"
        assert validator["depends_on"]["genesis"]["condition"] == "service_completed_successfully"
        for sidecar, image in [("pbft", "sawtooth-pbft-engine"), ("settings-tp", "sawtooth-settings-tp"),
                               ("block-info-tp", "sawtooth-block-info-tp"), ("rest-api", "sawtooth-rest-api")]:
            service = services[f"{sidecar}-{i}"]
            assert service["image"].startswith(f"hyperledger/{image}:")
            assert any(f"validator-{i}:" in arg for arg in service["command"])
        assert services[f"federation-tp-{i}"]["command"][:4] == ["tp", "federation", "--url",
                                                                f"tcp://validator-{i}:4004"]
        assert services[f"iot-data-tp-{i}"]["command"][:4] == ["tp", "iot-data", "--url",
                                                              f"tcp://validator-{i}:4004"]
    genesis = services["genesis"]
    assert {f"validator-{i}:/validators/{i}" for i in range(4)} <= set(genesis["volumes"])


def test_genesis_writes_pbft_membership_and_block_info_injector():
    script = (DOCKER / "sawtooth" / "genesis.sh").read_text()
    for setting in ["sawtooth.consensus.algorithm.name=pbft", "sawtooth.consensus.pbft.members=[$members]",
                    "sawtooth.validator.batch_injectors=block_info"]:
        assert setting in script


def test_redis_cluster_couchdb_and_fl_nodes(compose_doc):
    services = compose_doc["services"]
    redis = [s for s in services if re.fullmatch(r"redis-\d+", s)]
    assert len(redis) == 6
    init = services["redis-cluster-init"]["environment"]
    assert init["REDIS_NODES"].split() == [f"redis-{i}" for i in range(6)] and init["REDIS_REPLICAS"] == "1"
    conf = (DOCKER / "redis" / "redis.conf").read_text()
    assert "appendonly yes" in conf and "cluster-enabled yes" in conf
    acl = (DOCKER / "redis" / "users.acl").read_text()
    for role in ("tps", "compute", "participant"):
        assert re.search(rf"^user {role} on #@REDIS_{role.upper()}_PASSWORD_SHA256@ ", acl, re.M)
    assert "user default off" in acl
    couch = [s for s in services if re.fullmatch(r"couchdb-\d+", s)]
    assert len(couch) == 3 and all(services[c]["image"].startswith("couchdb:3") for c in couch)
    assert services["couchdb-setup"]["environment"]["COUCHDB_NODES"].split() == couch
    assert {"compute-0", "compute-1", "coordinator", "participant-0", "participant-2"} <= set(services)
    # Each role connects to Redis as its own ACL user.
    for name, role in [("iot-data-tp-0", "tps"), ("compute-0", "compute"), ("participant-1", "participant")]:
        url = services[name]["command"][services[name]["command"].index("--redis") + 1]
        assert url.startswith(f"redis+cluster://{role}:${{REDIS_{role.upper()}_PASSWORD:?")


def test_keys_are_made_per_node_at_start_never_baked(compose_doc):
    services = compose_doc["services"]
    for name in ["compute-0", "compute-1", "coordinator", "participant-0"]:
        service = services[name]
        assert service["entrypoint"] == ["trustmesh-node"]
        assert service["environment"]["TRUSTMESH_KEYGEN"] == name
        assert f"{name}-keys:/keys" in service["volumes"]
        assert f"/keys/{name}.priv" in service["command"]
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert ".priv" not in dockerfile and "keygen" not in dockerfile


def test_roles_reach_only_their_networks(compose_doc):
    services = compose_doc["services"]
    assert set(services["coordinator"]["networks"]) == {"ledger", "data"}  # it stores the first model
    assert set(services["participant-0"]["networks"]) == {"ledger", "data"}
    assert services["federation-tp-0"]["networks"] == ["ledger"]
    assert services["redis-0"]["networks"] == ["data"]
    assert services["couchdb-0"]["networks"] == ["history"]
    assert compose_doc["networks"]["data"].get("internal") is True


def _sample_env(template: str) -> str:
    lines = []
    for line in template.splitlines():
        if "=" in line and not line.startswith("#"):
            name, value = line.split("=", 1)
            value = value or "0a1b2c"
            line = f"{name}={value}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def test_debian_docker_compose_accepts_the_file_and_demands_the_credentials(tmp_path, compose_files):
    """The second check the issue names: Debian's docker-compose (1.29) parses and interpolates."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("Debian's docker-compose is not installed (apt-get install docker-compose); "
                    "the compose-spec schema test above still ran")
    folder = tmp_path / "docker"
    shutil.copytree(DOCKER, folder)
    result = subprocess.run([binary, "-f", "compose.yaml", "config", "-q"], cwd=folder, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0 and "set it in docker/.env" in result.stdout + result.stderr
    (folder / ".env").write_text(_sample_env(compose_files[".env.template"]))
    result = subprocess.run([binary, "-f", "compose.yaml", "config", "-q"], cwd=folder, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_example_workflow_is_valid_and_names_exactly_the_rendered_nodes(compose_doc, compose_files):
    from trustmesh.cli import main

    path = DOCKER / EXAMPLE_WORKFLOW
    assert main(["workflow", "validate", str(path)]) == 0
    doc = json.loads(path.read_text())
    fed = doc["federation_config"]
    services = compose_doc["services"]
    assert fed["coordinator_node"] == "coordinator"
    assert sorted(fed["compute_nodes"]) == sorted(s for s in services if re.fullmatch(r"compute-\d+", s))
    assert sorted(fed["participant_nodes"]) == sorted(s for s in services if re.fullmatch(r"participant-\d+", s))
    assert fed["enrolment"] == "open", "participants beyond the listed ones join through enroll/approve"
    assert f"TRUSTMESH_WORKFLOW_ID={doc['workflow_id']}" in compose_files[".env.template"].splitlines()
