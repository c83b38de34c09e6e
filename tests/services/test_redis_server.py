"""RedisServer against a real redis-server: AOF across restarts, crash, ACL users per role."""
import pytest
import redis

from trustmesh.services import RedisServer, ServiceError

ROUND_LIST = "iot_data:{wf1:s1}:mnist:federated"


@pytest.fixture
def server(tmp_path):
    with RedisServer(data_dir=tmp_path / "redis", appendfsync="always") as srv:
        yield srv


def test_restart_keeps_aof_data_and_port(server):
    client = redis.Redis.from_url(server.url)
    client.set("model:{wf1}:abc", b"weights")
    port, pid = server.port, server.pid
    server.stop()
    assert not server.alive
    server.start()
    assert server.port == port and server.pid != pid
    assert redis.Redis.from_url(server.url).get("model:{wf1}:abc") == b"weights"
    assert (server.data_dir / "appendonlydir").is_dir()


def test_killed_server_recovers_fsynced_writes(server):
    redis.Redis.from_url(server.url).rpush(ROUND_LIST, b"one")
    server.kill()
    assert not server.alive
    server.start()
    assert redis.Redis.from_url(server.url).lrange(ROUND_LIST, 0, -1) == [b"one"]


def test_config_is_loopback_without_snapshots(server):
    admin = redis.Redis.from_url(server.url)
    assert admin.config_get("bind")["bind"] == "127.0.0.1"
    assert admin.config_get("save")["save"] == ""
    assert admin.config_get("appendonly")["appendonly"] == "yes"
    assert admin.config_get("protected-mode")["protected-mode"] == "yes"


def test_default_user_is_off(server):
    anonymous = redis.Redis(host="127.0.0.1", port=server.port)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()


def test_participant_cannot_touch_the_round_list(server):
    participant = redis.Redis.from_url(server.url_for("participant"))
    with pytest.raises(redis.exceptions.NoPermissionError):
        participant.rpush(ROUND_LIST, b"forged")
    with pytest.raises(redis.exceptions.NoPermissionError):
        participant.lrange(ROUND_LIST, 0, -1)
    with pytest.raises(redis.exceptions.NoPermissionError):
        participant.eval("return redis.call('RPUSH', KEYS[1], 'x')", 1, ROUND_LIST)
    with pytest.raises(redis.exceptions.NoPermissionError):
        participant.flushall()
    assert participant.set("update:{wf1:s1}:" + "a" * 128, b"blob", nx=True)
    with pytest.raises(redis.exceptions.NoPermissionError):
        participant.set("model:{wf1}:" + "a" * 128, b"forged model")


def test_tps_can_append_by_script_but_not_write_blobs(server):
    tps = redis.Redis.from_url(server.url_for("tps"))
    assert tps.eval("return redis.call('RPUSH', KEYS[1], ARGV[1])", 1, ROUND_LIST, b"rec") == 1
    with pytest.raises(redis.exceptions.NoPermissionError):
        tps.set("update:{wf1:s1}:x", b"blob")
    with pytest.raises(redis.exceptions.NoPermissionError):
        tps.eval("return redis.call('SET', KEYS[1], 'x')", 1, "model:{wf1}:x")


def test_compute_reads_rounds_and_writes_models(server):
    redis.Redis.from_url(server.url_for("tps")).rpush(ROUND_LIST, b"rec")
    compute = redis.Redis.from_url(server.url_for("compute"))
    assert compute.lrange(ROUND_LIST, 0, -1) == [b"rec"]
    assert compute.set("model:{wf1}:m", b"weights")
    with pytest.raises(redis.exceptions.NoPermissionError):
        compute.rpush(ROUND_LIST, b"forged")


def test_given_passwords_are_used(tmp_path):
    with RedisServer(data_dir=tmp_path, acl_users={"participant": "p-secret"}) as srv:
        assert ":p-secret@" in srv.url_for("participant")
        assert redis.Redis.from_url(srv.url_for("participant")).ping()


def test_unknown_role_and_reserved_port_are_refused(tmp_path):
    with pytest.raises(ServiceError, match="unknown Redis roles"):
        RedisServer(data_dir=tmp_path, acl_users={"root": "x"})
    with pytest.raises(ServiceError, match="6379"):
        RedisServer(data_dir=tmp_path, port=6379)
