"""Each role through its own ACL user does exactly its part of a round on a real server."""
import pytest

from trustmesh.dataplane import DataPlaneError, RedisDataPlane, SubmissionRecord, sha512_hex

APP = "mnist"
PK = "02" + "ab" * 32


@pytest.fixture
def roles(redis_server):
    planes = {role: RedisDataPlane(redis_server.url_for(role))
              for role in ("participant", "tps", "compute", "coordinator")}
    yield planes
    for p in planes.values():
        p.close()


def test_a_round_through_the_role_users(roles, wf):
    base = b"initial model"
    roles["coordinator"].put_model(wf, sha512_hex(base), base)
    assert roles["participant"].get_model(wf, sha512_hex(base)) == base
    update = b"delta"
    roles["participant"].put_update_blob(wf, "s1", sha512_hex(update), update)
    roles["participant"].mark_alive(wf, PK, ttl=30)
    record = SubmissionRecord(signer=PK, update_hash=sha512_hex(update), num_samples=5, txn_id="t").encode()
    assert roles["tps"].append_submission(wf, "s1", APP, "t", record, 1, 10).new
    (sub,) = roles["compute"].read_submissions(wf, "s1", APP)
    assert roles["compute"].get_update_blob(wf, "s1", sub.update_hash) == update
    assert roles["compute"].alive_nodes(wf) == {PK}
    model = b"aggregated"
    roles["compute"].put_model(wf, sha512_hex(model), model)
    roles["compute"].set_round_mirror(wf, "s1", status="aggregated")
    assert roles["participant"].get_round_mirror(wf, "s1").status == "aggregated"


def test_roles_cannot_do_each_others_part(roles, wf):
    record = SubmissionRecord(signer=PK, update_hash="00" * 64, num_samples=5, txn_id="t").encode()
    with pytest.raises(DataPlaneError, match="NoPermission"):
        roles["participant"].append_submission(wf, "s1", APP, "t", record, 1, 10)
    with pytest.raises(DataPlaneError, match="NoPermission"):
        roles["participant"].read_submissions(wf, "s1", APP)
    with pytest.raises(DataPlaneError, match="NoPermission"):
        roles["participant"].put_model(wf, sha512_hex(b"m"), b"m")
    with pytest.raises(DataPlaneError, match="NoPermission"):
        roles["tps"].put_update_blob(wf, "s1", sha512_hex(b"u"), b"u")
    with pytest.raises(DataPlaneError, match="NoPermission"):
        roles["compute"].append_submission(wf, "s1", APP, "t", record, 1, 10)
