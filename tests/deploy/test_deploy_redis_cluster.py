"""The rendered scripts form a real Redis Cluster on loopback: three nodes started by
redis-start.sh, joined by redis-cluster-init.sh (which is safe to run again), then the iot-data
TP's Lua append and a compute node's read work through the cluster URL each role is given."""
from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
import redis
from deploy_support import DOCKER
from redis.backoff import NoBackoff
from redis.retry import Retry

from trustmesh.dataplane.append import append_submission
from trustmesh.dataplane.client import connect
from trustmesh.dataplane.keys import federated_list_key
from trustmesh.deploy.topology import redis_cluster_url
from trustmesh.net import free_port

PASSWORDS = {role: f"{i:02x}" * 12 for i, role in
             enumerate(("admin", "tps", "compute", "participant", "coordinator"), start=20)}
NO_RETRY = Retry(NoBackoff(), 0)


def _port() -> int:
    port = free_port()
    while port == 6379:
        port = free_port()
    return port


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({f"REDIS_{r.upper()}_PASSWORD": p for r, p in PASSWORDS.items()})
    env.update(extra)
    return env


@pytest.fixture
def cluster(tmp_path):
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server / redis-cli are not installed (bash scripts/install.sh installs them)")
    ports, children = [], []
    try:
        for i in range(3):
            port = _port()
            log = open(tmp_path / f"node{i}.out", "w")
            children.append(subprocess.Popen(
                ["sh", str(DOCKER / "redis" / "redis-start.sh")], stdout=log, stderr=subprocess.STDOUT,
                env=_env(REDIS_CONF_DIR=str(DOCKER / "redis"), REDIS_RUN_DIR=str(tmp_path / f"node{i}"),
                         REDIS_PORT=str(port), REDIS_BUS_PORT=str(_port()), REDIS_BIND="127.0.0.1",
                         REDIS_ANNOUNCE_HOSTNAME="127.0.0.1")))
            ports.append(port)
        yield ports, tmp_path
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(timeout=10)


def _init(ports: list[int]) -> subprocess.CompletedProcess:
    nodes = " ".join(f"127.0.0.1:{p}" for p in ports)
    return subprocess.run(["sh", str(DOCKER / "redis" / "redis-cluster-init.sh")], capture_output=True,
                          text=True, timeout=120,
                          env=_env(REDIS_NODES=nodes, REDIS_REPLICAS="0", WAIT_TRIES="15"))


def test_scripts_form_a_cluster_that_every_role_uses(cluster):
    ports, _ = cluster
    first = _init(ports)
    assert first.returncode == 0, first.stdout + first.stderr
    nodes = [redis.Redis(port=p, username="admin", password=PASSWORDS["admin"], retry=NO_RETRY) for p in ports]
    admin = nodes[0]
    deadline = time.monotonic() + 30
    # Every node must see the cluster ok (a node that has not yet learnt the others answers CLUSTERDOWN).
    while any(node.cluster("info")["cluster_state"] != "ok" for node in nodes):
        assert time.monotonic() < deadline, "the cluster never became ok on every node"
        time.sleep(0.2)
    assert admin.cluster("info")["cluster_known_nodes"] == "3"
    again = _init(ports)
    assert again.returncode == 0 and "already formed" in again.stdout

    # The TP appends through its cluster URL; the round's keys share one slot, so Lua runs.
    url = redis_cluster_url(role="tps", password=PASSWORDS["tps"], host="127.0.0.1")
    tps = connect(url.replace(":6379/", f":{ports[1]}/"))  # the rendered URL, pointed at this loopback port
    assert isinstance(tps, redis.RedisCluster)
    result = append_submission(tps, "wf1", "s1", "train", "txn-1", b"record", expected_nodes=2, now=100)
    assert result.new and result.submitted == 1
    assert not append_submission(tps, "wf1", "s1", "train", "txn-1", b"record", expected_nodes=2, now=100).new

    compute = connect(f"redis+cluster://compute:{PASSWORDS['compute']}@127.0.0.1:{ports[2]}/0")
    assert compute.lrange(federated_list_key("wf1", "s1", "train"), 0, -1) == [b"record"]
    participant = connect(f"redis+cluster://participant:{PASSWORDS['participant']}@127.0.0.1:{ports[0]}/0")
    with pytest.raises(redis.exceptions.NoPermissionError):
        participant.lrange(federated_list_key("wf1", "s1", "train"), 0, -1)


def test_init_gives_up_on_a_node_that_never_answers(tmp_path):
    if shutil.which("redis-cli") is None:
        pytest.skip("redis-cli is not installed")
    result = subprocess.run(["sh", str(DOCKER / "redis" / "redis-cluster-init.sh")], capture_output=True,
                            text=True, timeout=60,
                            env=_env(REDIS_NODES=f"127.0.0.1:{_port()}", WAIT_TRIES="1"))
    assert result.returncode != 0 and "never answered" in result.stderr
