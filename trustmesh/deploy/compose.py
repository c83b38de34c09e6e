"""Render `docker/`: compose.yaml for a Sawtooth PBFT network (or the devnet), Redis Cluster,
CouchDB cluster, TPs, compute nodes, a coordinator and N participants, plus its config files."""
from __future__ import annotations

from typing import Any

from trustmesh.deploy import yamlio
from trustmesh.deploy.scripts import SCRIPTS
from trustmesh.deploy.topology import (
    COUCHDB_DATABASES,
    CREDENTIALS,
    IMAGES,
    KEY_DIR,
    PORTS,
    PUBLIC_KEY_DIR,
    WORKFLOW_PATH,
    Topology,
    aclfile_template,
    redis_cluster_url,
    redis_conf,
)

__all__ = ["render_compose"]

_HEADER = (
    "# Rendered by `trustmesh deploy compose --participants {n} --out DIR`; do not edit by hand.\n"
    "# Credentials come from .env (copy .env.template); `docker compose build` makes the trustmesh image.\n"
)
_NEED = "set it in docker/.env, see .env.template"
# Hand-written beside compose.yaml: a workflow naming the nodes of the default render (N=3).
EXAMPLE_WORKFLOW = "workflow.json"
EXAMPLE_WORKFLOW_ID = "trustmesh-compose-mnist"


def _env(name: str) -> str:
    return f"${{{name}:?{_NEED}}}"


def _validator_url(i: int) -> str:
    return f"tcp://validator-{i}:{PORTS['component']}"


def _urls(topology: Topology, first: int) -> str:
    """Every validator, starting from `first`, so clients spread over validators and fail over."""
    n = topology.validators
    return ",".join(_validator_url((first + k) % n) for k in range(n))


def _redis_url(role: str) -> str:
    return redis_cluster_url(role=role, password=_env(f"REDIS_{role.upper()}_PASSWORD"), host="redis-0")


def _couchdb_url() -> str:
    return f"http://{_env('COUCHDB_USER')}:{_env('COUCHDB_PASSWORD')}@couchdb-0:{PORTS['couchdb']}"


def _trustmesh(args: list[str], *, networks: list[str] | None, keygen: str | None = None,
               depends: dict[str, str] | None = None, health: str | None = None) -> dict[str, Any]:
    """A service running `trustmesh ARGS` in the project image (its key made on first start)."""
    service: dict[str, Any] = {
        "image": f"${{TRUSTMESH_IMAGE:-{IMAGES['trustmesh']}}}",
        "build": {"context": "..", "dockerfile": "docker/Dockerfile"},
    }
    if keygen:
        service["entrypoint"] = ["trustmesh-node"]
        service["environment"] = {"TRUSTMESH_KEYGEN": keygen, "TRUSTMESH_KEY_DIR": KEY_DIR,
                                  "TRUSTMESH_PUBLIC_DIR": PUBLIC_KEY_DIR}
    service["command"] = args
    if health:
        service.setdefault("environment", {})["TRUSTMESH_HEALTH_TCP"] = health
    if keygen:
        service["volumes"] = [f"{keygen}-keys:{KEY_DIR}", f"public-keys:{PUBLIC_KEY_DIR}"]
    if depends:
        service["depends_on"] = {name: {"condition": cond} for name, cond in depends.items()}
    if networks is None:
        service["network_mode"] = "none"
    else:
        service["networks"] = networks
    service["restart"] = "unless-stopped"
    return service


def _ledger_services(t: Topology) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = {}
    if t.ledger == "devnet":
        services["validator-0"] = _trustmesh(
            Topology.devnet_args(data_dir="/data"), networks=["ledger"])
        services["validator-0"]["volumes"] = ["validator-0:/data"]
        services["validator-0"]["environment"] = {"TRUSTMESH_HEALTH_TCP": "127.0.0.1:4004"}
        return services
    services["genesis"] = {
        "image": IMAGES["validator"],
        "entrypoint": ["bash", "/scripts/genesis.sh"],
        "environment": {"VALIDATORS": str(t.validators), "VALIDATOR_HOMES": "/validators"},
        "volumes": ["./sawtooth:/scripts:ro"]
        + [f"validator-{i}:/validators/{i}" for i in range(t.validators)],
        "network_mode": "none",
    }
    for i in range(t.validators):
        v = f"validator-{i}"
        services[v] = {
            "image": IMAGES["validator"],
            "hostname": v,
            "entrypoint": ["bash", "/scripts/validator.sh"],
            "environment": {"SAWTOOTH_HOME": "/sawtooth"},
            "volumes": [f"{v}:/sawtooth", "./sawtooth:/scripts:ro"],
            "depends_on": {"genesis": {"condition": "service_completed_successfully"}},
            "healthcheck": {
                "test": ["CMD", "bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{PORTS['component']}"],
                "interval": "10s", "timeout": "3s", "retries": 30,
            },
            "networks": ["ledger"],
            "restart": "unless-stopped",
        }
        beside = {v: {"condition": "service_healthy"}}
        services[f"pbft-{i}"] = {
            "image": IMAGES["pbft"],
            "command": ["pbft-engine", "-v", "--connect", f"tcp://{v}:{PORTS['consensus']}"],
            "depends_on": beside, "networks": ["ledger"], "restart": "unless-stopped",
        }
        services[f"settings-tp-{i}"] = {
            "image": IMAGES["settings_tp"],
            "command": ["settings-tp", "-v", "-C", _validator_url(i)],
            "depends_on": beside, "networks": ["ledger"], "restart": "unless-stopped",
        }
        services[f"block-info-tp-{i}"] = {
            "image": IMAGES["block_info_tp"],
            "command": ["block-info-tp", "-v", "-C", _validator_url(i)],
            "depends_on": beside, "networks": ["ledger"], "restart": "unless-stopped",
        }
        rest: dict[str, Any] = {
            "image": IMAGES["rest_api"],
            "command": ["sawtooth-rest-api", "-v", "-C", _validator_url(i),
                        "--bind", f"0.0.0.0:{PORTS['rest_api']}"],
            "depends_on": beside, "networks": ["ledger"], "restart": "unless-stopped",
        }
        if i == 0:
            rest["ports"] = [f"127.0.0.1:{PORTS['rest_api']}:{PORTS['rest_api']}"]
        services[f"rest-api-{i}"] = rest
    return services


def _tp_services(t: Topology) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = {}
    ledger_ready = "service_healthy" if t.ledger == "pbft" else "service_started"
    for i in range(t.validators):
        v = f"validator-{i}"
        health = f"{v}:{PORTS['component']}"
        services[f"federation-tp-{i}"] = _trustmesh(
            Topology.federation_tp_args(validator=_validator_url(i)),
            networks=["ledger"], depends={v: ledger_ready}, health=health)
        services[f"iot-data-tp-{i}"] = _trustmesh(
            Topology.iot_data_tp_args(validator=_validator_url(i), redis_url=_redis_url("tps")),
            networks=["ledger", "data"],
            depends={v: ledger_ready, "redis-cluster-init": "service_completed_successfully"},
            health=health)
    return services


def _redis_services(t: Topology) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = {}
    passwords = {name: _env(name) for name in CREDENTIALS if name.startswith("REDIS_")}
    names = [f"redis-{i}" for i in range(t.redis_nodes)]
    for name in names:
        services[name] = {
            "image": IMAGES["redis"],
            "hostname": name,
            "user": "redis",
            "entrypoint": ["sh", "/conf/redis-start.sh"],
            "environment": {**passwords, "REDIS_ANNOUNCE_HOSTNAME": name},
            "volumes": [f"{name}:/data", "./redis:/conf:ro"],
            "healthcheck": {
                "test": ["CMD-SHELL", "REDISCLI_AUTH=\"$$REDIS_ADMIN_PASSWORD\" redis-cli --user admin ping | grep -q PONG"],
                "interval": "5s", "timeout": "3s", "retries": 30,
            },
            "networks": ["data"],
            "restart": "unless-stopped",
        }
    services["redis-cluster-init"] = {
        "image": IMAGES["redis"],
        "entrypoint": ["sh", "/conf/redis-cluster-init.sh"],
        "environment": {
            "REDIS_ADMIN_PASSWORD": _env("REDIS_ADMIN_PASSWORD"),
            "REDIS_NODES": " ".join(names),
            "REDIS_REPLICAS": str(t.redis_replicas_per_master),
        },
        "volumes": ["./redis:/conf:ro"],
        "depends_on": {name: {"condition": "service_healthy"} for name in names},
        "networks": ["data"],
    }
    return services


def _couchdb_services(t: Topology) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = {}
    names = [f"couchdb-{i}" for i in range(t.couchdb_nodes)]
    for i, name in enumerate(names):
        node: dict[str, Any] = {
            "image": IMAGES["couchdb"],
            "hostname": name,
            "environment": {
                "COUCHDB_USER": _env("COUCHDB_USER"),
                "COUCHDB_PASSWORD": _env("COUCHDB_PASSWORD"),
                "COUCHDB_SECRET": _env("COUCHDB_SECRET"),
                "COUCHDB_ERLANG_COOKIE": _env("COUCHDB_ERLANG_COOKIE"),
                "NODENAME": name,
                "ERL_FLAGS": f"-kernel inet_dist_listen_min {PORTS['erlang_dist']} "
                             f"-kernel inet_dist_listen_max {PORTS['erlang_dist']}",
            },
            "volumes": [f"{name}:/opt/couchdb/data"],
            "healthcheck": {
                "test": ["CMD", "curl", "-fsS", f"http://127.0.0.1:{PORTS['couchdb']}/_up"],
                "interval": "10s", "timeout": "3s", "retries": 30,
            },
            "networks": ["history"],
            "restart": "unless-stopped",
        }
        if i == 0:
            node["ports"] = [f"127.0.0.1:{PORTS['couchdb']}:{PORTS['couchdb']}"]
        services[name] = node
    services["couchdb-setup"] = {
        "image": IMAGES["curl"],
        "entrypoint": ["sh", "/scripts/couchdb-setup.sh"],
        "environment": {
            "COUCHDB_USER": _env("COUCHDB_USER"),
            "COUCHDB_PASSWORD": _env("COUCHDB_PASSWORD"),
            "COUCHDB_NODES": " ".join(names),
            "COUCHDB_DATABASES": " ".join(COUCHDB_DATABASES),
        },
        "volumes": ["./couchdb:/scripts:ro"],
        "depends_on": {name: {"condition": "service_healthy"} for name in names},
        "networks": ["history"],
    }
    return services


def _node_services(t: Topology) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = {}
    tps_up = {f"federation-tp-{i}": "service_started" for i in range(t.validators)}
    tps_up.update({f"iot-data-tp-{i}": "service_started" for i in range(t.validators)})
    data_ready = {"redis-cluster-init": "service_completed_successfully"}
    for i in range(t.compute_nodes):
        name = f"compute-{i}"
        services[name] = _trustmesh(
            Topology.compute_args(key=f"{KEY_DIR}/{name}.priv", urls=_urls(t, i),
                                  redis_url=_redis_url("compute"), couchdb_url=_couchdb_url(),
                                  workflow_id=_env("TRUSTMESH_WORKFLOW_ID")),
            networks=["ledger", "data", "history"], keygen=name,
            depends={**tps_up, **data_ready, "couchdb-setup": "service_completed_successfully"},
            health=f"validator-{i % t.validators}:{PORTS['component']}")
    check = _trustmesh(Topology.workflow_validate_args(), networks=None)
    check["volumes"] = [f"{_env('TRUSTMESH_WORKFLOW_FILE')}:{WORKFLOW_PATH}:ro"]
    check["restart"] = "no"
    services["workflow-check"] = check
    for i in range(t.participants):
        name = f"participant-{i}"
        services[name] = _trustmesh(
            Topology.participant_args(
                workflow_id=_env("TRUSTMESH_WORKFLOW_ID"), key=f"{KEY_DIR}/{name}.priv",
                partition=str(i), urls=_urls(t, i), redis_url=_redis_url("participant")),
            networks=["ledger", "data"], keygen=name, depends={**tps_up, **data_ready},
            health=f"validator-{i % t.validators}:{PORTS['component']}")
    # The coordinator registers the workflow, whose node names it resolves through the public
    # keys the compute nodes and participants published when they made their keys.
    nodes = [f"compute-{i}" for i in range(t.compute_nodes)] + [f"participant-{i}" for i in range(t.participants)]
    coordinator = _trustmesh(
        Topology.coordinator_args(key=f"{KEY_DIR}/coordinator.priv", urls=_urls(t, 0),
                                  redis_url=_redis_url("coordinator")),
        networks=["ledger", "data"], keygen="coordinator",
        depends={"workflow-check": "service_completed_successfully",
                 **{node: "service_healthy" for node in nodes}},
        health=f"validator-0:{PORTS['component']}")
    coordinator["volumes"].append(f"{_env('TRUSTMESH_WORKFLOW_FILE')}:{WORKFLOW_PATH}:ro")
    coordinator["restart"] = "on-failure"
    services["coordinator"] = coordinator
    verify = _trustmesh(
        Topology.verify_round_args(
            workflow_id=_env("TRUSTMESH_WORKFLOW_ID"), round_="${VERIFY_ROUND:-1}",
            urls=_urls(t, 0), redis_url=_redis_url("compute"), couchdb_url=_couchdb_url()),
        networks=["ledger", "data", "history"])
    verify["profiles"] = ["tools"]
    verify["restart"] = "no"
    services["verify-round"] = verify
    return services


def _env_template() -> str:
    lines = [
        "# Copy to docker/.env (never commit it) and fill every value: `openssl rand -hex 24`.",
        "# All credentials are hex strings so they are safe inside URLs.",
        "COMPOSE_PROJECT_NAME=trustmesh",
    ]
    for name, text in CREDENTIALS.items():
        lines += [f"# {text}", f"{name}=" + ("trustmesh" if name == "COUCHDB_USER" else "")]
    lines += [
        "# The workflow JSON the coordinator registers (path relative to docker/); workflow.json",
        "# names this file's nodes: coordinator, compute-0, compute-1, participant-0..2",
        f"TRUSTMESH_WORKFLOW_FILE=./{EXAMPLE_WORKFLOW}",
        "# Its workflow_id, which the compute nodes serve and the participants join",
        f"TRUSTMESH_WORKFLOW_ID={EXAMPLE_WORKFLOW_ID}",
        "# Optional: the project image tag (default trustmesh:0.1.0)",
        "# TRUSTMESH_IMAGE=trustmesh:0.1.0",
    ]
    return "\n".join(lines) + "\n"


def render_compose(topology: Topology) -> dict[str, str]:
    """Every file of the compose folder: relative path -> text."""
    t = topology
    services: dict[str, dict[str, Any]] = {}
    services.update(_ledger_services(t))
    services.update(_tp_services(t))
    services.update(_redis_services(t))
    services.update(_couchdb_services(t))
    services.update(_node_services(t))
    volumes: dict[str, Any] = {}
    for service in services.values():
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            if not source.startswith((".", "/", "$")):
                volumes[source] = {}
    # No top-level `name:` (Debian's docker-compose 1.29 refuses it): .env sets COMPOSE_PROJECT_NAME.
    document = {
        "services": services,
        "networks": {
            "ledger": {"driver": "bridge"},
            "data": {"driver": "bridge", "internal": True},
            "history": {"driver": "bridge"},
        },
        "volumes": volumes,
    }
    files = {
        "compose.yaml": _HEADER.format(n=t.participants) + yamlio.dump(document),
        ".env.template": _env_template(),
        "redis/users.acl": aclfile_template(),
        "redis/redis.conf": redis_conf(),
        "redis/redis-start.sh": SCRIPTS["redis-start.sh"],
        "redis/redis-cluster-init.sh": SCRIPTS["redis-cluster-init.sh"],
        "couchdb/couchdb-setup.sh": SCRIPTS["couchdb-setup.sh"],
    }
    if t.ledger == "pbft":
        files["sawtooth/genesis.sh"] = SCRIPTS["genesis.sh"]
        files["sawtooth/validator.sh"] = SCRIPTS["validator.sh"]
    return files
