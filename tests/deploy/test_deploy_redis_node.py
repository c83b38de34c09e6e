"""The rendered Redis node start script, run for real against the local redis-server: it fills
the ACL file from the environment, boots a cluster-mode node with AOF, and each role's ACL user
can do its own work and nothing else. (The real multi-node loopback cluster is tests/services.)"""
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

from trustmesh.net import free_port

ROLES = ("admin", "tps", "compute", "participant", "coordinator")
NO_RETRY = Retry(NoBackoff(), 0)  # a refused login is final; don't back off and retry
PASSWORDS = {role: f"{i:02x}" * 12 for i, role in enumerate(ROLES, start=10)}


def _env(tmp_path, port: int, **override: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({f"REDIS_{r.upper()}_PASSWORD": p for r, p in PASSWORDS.items()})
    env.update(REDIS_CONF_DIR=str(DOCKER / "redis"), REDIS_RUN_DIR=str(tmp_path / "run"),
               REDIS_PORT=str(port), REDIS_BUS_PORT=str(free_port()), REDIS_BIND="127.0.0.1",
               REDIS_ANNOUNCE_HOSTNAME="127.0.0.1")
    env.update(override)
    return env


@pytest.fixture
def node(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (bash scripts/install.sh installs it)")
    port = free_port()
    while port == 6379:
        port = free_port()
    log = open(tmp_path / "redis.out", "w")
    child = subprocess.Popen(["sh", str(DOCKER / "redis" / "redis-start.sh")], env=_env(tmp_path, port),
                             stdout=log, stderr=subprocess.STDOUT)
    admin = redis.Redis(port=port, username="admin", password=PASSWORDS["admin"], retry=NO_RETRY)
    deadline = time.monotonic() + 20
    while True:
        try:
            admin.ping()
            break
        except redis.ConnectionError:
            if child.poll() is not None or time.monotonic() > deadline:
                child.kill()
                pytest.fail("redis-start.sh did not bring up redis-server: "
                            + (tmp_path / "redis.out").read_text()[-2000:])
            time.sleep(0.1)
    admin.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)  # a one-node cluster owns every slot
    while admin.cluster("info")["cluster_state"] != "ok":
        assert time.monotonic() < deadline + 10, "the one-node cluster never became ok"
        time.sleep(0.1)
    yield port, admin, tmp_path
    child.terminate()
    child.wait(timeout=10)
    log.close()


def _client(port: int, role: str) -> redis.Redis:
    return redis.Redis(port=port, username=role, password=PASSWORDS[role])


def _allowed(admin: redis.Redis, role: str, *command: str) -> bool:
    answer = admin.execute_command("ACL", "DRYRUN", role, *command)
    return answer in (b"OK", "OK")


def test_node_runs_in_cluster_mode_with_aof_and_no_default_user(node):
    port, admin, tmp_path = node
    assert admin.config_get("appendonly") == {"appendonly": "yes"}
    assert admin.info("cluster")["cluster_enabled"] == 1
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port, retry=NO_RETRY).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port, username="tps", password="00" * 12, retry=NO_RETRY).ping()
    aclfile = (tmp_path / "run" / "users.acl").read_text()
    assert all(p not in aclfile for p in PASSWORDS.values()), "passwords are stored as digests only"
    assert oct((tmp_path / "run" / "users.acl").stat().st_mode & 0o777) == "0o600"


def test_each_role_reaches_only_its_keys(node):
    port, admin, _ = node
    for role in ROLES[1:]:
        assert _client(port, role).ping()
    round_key = "{wf1:s1}"
    assert _allowed(admin, "participant", "SET", f"update:{round_key}:abc", "blob", "NX")
    assert not _allowed(admin, "participant", "SET", "model:{wf1}:abc", "blob")
    assert not _allowed(admin, "participant", "RPUSH", f"iot_data:{round_key}:train:federated", "x")
    assert not _allowed(admin, "participant", "EVAL", "return 1", "0")
    assert _allowed(admin, "tps", "RPUSH", f"iot_data:{round_key}:train:federated", "x")
    assert not _allowed(admin, "tps", "SET", f"update:{round_key}:abc", "forged")
    assert _allowed(admin, "compute", "SET", "model:{wf1}:abc", "blob")
    assert not _allowed(admin, "compute", "RPUSH", f"iot_data:{round_key}:train:federated", "x")
    assert not _allowed(admin, "compute", "FLUSHALL")
    # And for real: the TP's kind of Lua append runs as the tps user.
    tps = _client(port, "tps")
    key = f"iot_data:{round_key}:train:federated"
    assert tps.eval("return redis.call('RPUSH', KEYS[1], ARGV[1])", 1, key, "record") == 1
    participant = _client(port, "participant")
    with pytest.raises(redis.exceptions.NoPermissionError):
        participant.lrange(key, 0, -1)


def test_start_script_refuses_a_password_that_is_not_hex(tmp_path):
    result = subprocess.run(["sh", str(DOCKER / "redis" / "redis-start.sh")],
                            env=_env(tmp_path, free_port(), REDIS_TPS_PASSWORD="not hex!"),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "REDIS_TPS_PASSWORD must be a lowercase hex string" in result.stderr
