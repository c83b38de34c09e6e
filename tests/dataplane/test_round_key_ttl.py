"""A round's Redis keys expire: the chain keeps the hashes and CouchDB the models, Redis only caches."""
import pytest
import redis

from trustmesh.dataplane import RedisDataPlane, SubmissionRecord, keys, sha512_hex
from trustmesh.dataplane.append import ROUND_KEY_TTL, ROUND_KEY_TTL_ENV, round_key_ttl
from trustmesh.services.redis_acl import ROLE_RULES

APP = "mnist"
PK = "02" + "cd" * 32


def _record(txn: str) -> bytes:
    return SubmissionRecord(signer=PK, update_hash=sha512_hex(b"u"), num_samples=5, txn_id=txn).encode()


def _round_keys(wf: str, sched: str) -> list[str]:
    return [keys.federated_list_key(wf, sched, APP), keys.seen_key(wf, sched), keys.federation_state_key(wf, sched)]


def test_the_append_gives_every_round_key_a_ttl(redis_server, wf):
    admin = redis.Redis.from_url(redis_server.url)
    plane = RedisDataPlane(redis_server.url, round_ttl=600)
    result = plane.append_submission(wf, "s1", APP, "t1", _record("t1"), 2, 10)
    assert result.new and result.expiring == 3
    for key in _round_keys(wf, "s1"):
        assert 590 <= admin.ttl(key) <= 600, key
    admin.expire(keys.seen_key(wf, "s1"), 5)
    again = plane.append_submission(wf, "s1", APP, "t1", _record("t1"), 2, 11)  # a replayed apply()
    assert not again.new and admin.ttl(keys.seen_key(wf, "s1")) > 500  # every append renews the TTL
    plane.close()


def test_the_default_is_seven_days_and_none_keeps_keys(redis_server, wf, monkeypatch):
    admin = redis.Redis.from_url(redis_server.url)
    monkeypatch.delenv(ROUND_KEY_TTL_ENV, raising=False)
    plane = RedisDataPlane(redis_server.url)
    assert plane.round_ttl == ROUND_KEY_TTL == 7 * 24 * 3600
    plane.append_submission(wf, "s1", APP, "t1", _record("t1"), 1, 10)
    assert ROUND_KEY_TTL - 10 <= admin.ttl(keys.federated_list_key(wf, "s1", APP)) <= ROUND_KEY_TTL
    plane.set_round_mirror(wf, "s2", status="aggregated")
    assert admin.ttl(keys.federation_state_key(wf, "s2")) > ROUND_KEY_TTL - 10
    forever = RedisDataPlane(redis_server.url, round_ttl=None)
    assert forever.append_submission(wf, "s3", APP, "t1", _record("t1"), 1, 10).expiring == 0
    assert all(admin.ttl(key) == -1 for key in _round_keys(wf, "s3"))  # -1: exists, no TTL
    plane.close()
    forever.close()


def test_the_environment_sets_the_ttl(monkeypatch):
    monkeypatch.setenv(ROUND_KEY_TTL_ENV, "3600")
    assert round_key_ttl() == 3600
    monkeypatch.setenv(ROUND_KEY_TTL_ENV, "0")
    assert round_key_ttl() is None
    monkeypatch.setenv(ROUND_KEY_TTL_ENV, "a week")
    with pytest.raises(ValueError, match=ROUND_KEY_TTL_ENV):
        round_key_ttl()


def test_blobs_stored_with_a_ttl_expire(redis_server, wf):
    admin = redis.Redis.from_url(redis_server.url)
    plane = RedisDataPlane(redis_server.url)
    model = b"a model"
    plane.put_model(wf, sha512_hex(model), model, ttl=900)
    assert 890 <= admin.ttl(keys.model_key(wf, sha512_hex(model))) <= 900
    plane.close()


def test_a_user_without_expire_still_appends(redis_server, wf):
    """The TP's ACL user may lack EXPIRE: the append must not fail over the TTL (it is told instead)."""
    admin = redis.Redis.from_url(redis_server.url)
    rules = [token for token in ROLE_RULES["tps"].split() if token not in ("+expire", "+ttl")]
    admin.execute_command("ACL", "SETUSER", "tps-noexpire", "reset", "on", ">pw", *rules)
    url = redis_server.url_for("tps").replace(f"tps:{redis_server.passwords['tps']}@", "tps-noexpire:pw@")
    tps = RedisDataPlane(url, round_ttl=600)
    result = tps.append_submission(wf, "s1", APP, "t1", _record("t1"), 1, 10)
    assert result.new and result.submitted == 1 and result.expiring == 0
    assert admin.ttl(keys.federated_list_key(wf, "s1", APP)) == -1
    tps.close()


def test_the_tp_role_sets_the_round_ttl(redis_server, wf):
    """The project's own ACL gives the iot-data TP's user EXPIRE: its appends make the round expire."""
    admin = redis.Redis.from_url(redis_server.url)
    tps = RedisDataPlane(redis_server.url_for("tps"), round_ttl=600)
    result = tps.append_submission(wf, "s2", APP, "t1", _record("t1"), 1, 10)
    assert result.new and result.expiring == 3
    assert all(590 <= admin.ttl(key) <= 600 for key in _round_keys(wf, "s2"))
    tps.close()
