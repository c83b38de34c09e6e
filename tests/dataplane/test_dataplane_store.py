"""The DataPlane behaviour, run on the in-memory fake and on a real redis-server alike."""
import threading

import pytest

from trustmesh.dataplane import (
    BlobHashMismatch,
    DataPlane,
    DataPlaneError,
    MemoryDataPlane,
    RedisDataPlane,
    SubmissionRecord,
    keys,
    sha512_hex,
)

APP = "mnist"
PK = ["02" + f"{i:02x}" * 32 for i in range(4)]


def rec(i, txn=None, inline=None):
    data = inline or f"update-{i}".encode()
    return SubmissionRecord(signer=PK[i % 4], update_hash=sha512_hex(data), num_samples=10 + i,
                            txn_id=txn or f"txn{i}", inline=inline, metrics={"loss": 0.1 * i}).encode()


def tamper(plane, key, data):
    if isinstance(plane, RedisDataPlane):
        plane.client.set(key, data)
    else:
        plane.tamper(key, data)


def test_both_implement_the_interface(plane):
    assert isinstance(plane, DataPlane)


def test_update_blob_round_trip_and_verification(plane, wf):
    blob = b"\x00delta bytes" * 100
    digest = sha512_hex(blob)
    assert plane.put_update_blob(wf, "s1", digest, blob) is True
    assert plane.put_update_blob(wf, "s1", digest, blob) is False  # already there: idempotent
    assert plane.get_update_blob(wf, "s1", digest) == blob
    assert plane.fetch_update_blob(wf, "s1", sha512_hex(b"other")).reason == "blob_unavailable"
    with pytest.raises(BlobHashMismatch):
        plane.put_update_blob(wf, "s1", digest, blob + b"!")


def test_tampered_blob_is_reported_not_returned(plane, wf):
    blob = b"model weights"
    digest = sha512_hex(blob)
    plane.put_model(wf, digest, blob)
    tamper(plane, keys.model_key(wf, digest), b"evil weights")
    fetched = plane.fetch_model(wf, digest)
    assert (fetched.data, fetched.reason, fetched.ok) == (None, "hash_mismatch", False)
    assert plane.get_model(wf, digest) is None
    # the honest owner storing again replaces the squatted bytes
    assert plane.put_model(wf, digest, blob) is True
    assert plane.get_model(wf, digest) == blob


def test_append_three_times_leaves_one_entry(plane, wf):
    results = [plane.append_submission(wf, "s1", APP, "txn0", rec(0), 3, 100 + i) for i in range(3)]
    assert [r.new for r in results] == [True, False, False]
    assert {r.index for r in results} == {0}
    subs = plane.read_submissions(wf, "s1", APP)
    assert len(subs) == 1 and subs[0].txn_id == "txn0" and subs[0].num_samples == 10
    mirror = plane.get_round_mirror(wf, "s1")
    assert (mirror.submitted_nodes, mirror.expected_nodes, mirror.status) == (1, 3, "collecting")
    assert mirror.round_start_time == 100 and mirror.last_submission_time == 102


def test_mirror_reaches_all_submitted_and_never_downgrades(plane, wf):
    plane.set_round_mirror(wf, "s1", status="open", expected_nodes=2, round_start_time=50)
    plane.append_submission(wf, "s1", APP, "a", rec(0, "a"), 2, 60)
    plane.append_submission(wf, "s1", APP, "b", rec(1, "b"), 2, 61)
    mirror = plane.get_round_mirror(wf, "s1")
    assert (mirror.status, mirror.submitted_nodes, mirror.round_start_time) == ("all_submitted", 2, 50)
    plane.set_round_mirror(wf, "s1", status="closed", aggregator="node-1")
    plane.append_submission(wf, "s1", APP, "c", rec(2, "c"), 2, 62)  # a late apply() of a stale txn
    mirror = plane.get_round_mirror(wf, "s1")
    assert (mirror.status, mirror.submitted_nodes, mirror.extra) == ("closed", 3, {"aggregator": "node-1"})
    assert plane.get_round_mirror(wf, "other") is None


def test_rounds_and_apps_are_separate(plane, wf):
    plane.append_submission(wf, "s1", APP, "t", rec(0, "t"), 1, 1)
    plane.append_submission(wf, "s2", APP, "t", rec(1, "t"), 1, 1)
    assert len(plane.read_submissions(wf, "s1", APP)) == 1
    assert plane.read_submissions(wf, "s2", APP)[0].signer == PK[1]
    assert plane.read_submissions(wf, "s1", "other-app") == []


def test_inline_records_keep_their_bytes(plane, wf):
    plane.append_submission(wf, "s1", APP, "t", rec(0, "t", inline=b"\x01\x02inline"), 1, 1)
    (sub,) = plane.read_submissions(wf, "s1", APP)
    assert sub.inline == b"\x01\x02inline" and sub.inline_matches


def test_garbage_list_entries_are_skipped(plane, wf):
    plane.append_submission(wf, "s1", APP, "good", rec(0, "good"), 2, 1)
    plane.append_submission(wf, "s1", APP, "bad", b"not cbor \xff", 2, 1)
    assert [s.txn_id for s in plane.read_submissions(wf, "s1", APP)] == ["good"]


def test_concurrent_appends_all_land_once(plane, wf):
    barrier = threading.Barrier(10)
    errors = []

    def worker(offset):
        barrier.wait()
        try:
            for i in range(offset, 50, 10):
                # every transaction applied twice, as validators do
                plane.append_submission(wf, "s1", APP, f"t{i}", rec(i, f"t{i}"), 50, i)
                plane.append_submission(wf, "s1", APP, f"t{i}", rec(i, f"t{i}"), 50, i)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    subs = plane.read_submissions(wf, "s1", APP)
    assert sorted(s.txn_id for s in subs) == sorted(f"t{i}" for i in range(50))
    mirror = plane.get_round_mirror(wf, "s1")
    assert (mirror.submitted_nodes, mirror.status) == (50, "all_submitted")


def test_heartbeats(plane, wf):
    plane.mark_alive(wf, PK[0], ttl=60)
    plane.mark_alive(wf, PK[1], ttl=60)
    plane.mark_alive(wf + "x", PK[2], ttl=60)
    assert plane.alive_nodes(wf) == {PK[0], PK[1]}


def test_unreachable_redis_is_a_data_plane_error(wf):
    from trustmesh.net import free_port

    plane = RedisDataPlane(f"redis://nobody:x@127.0.0.1:{free_port()}/0", timeout=1)
    with pytest.raises(DataPlaneError):
        plane.get_model(wf, "ab" * 64)


def test_heartbeats_expire_with_their_ttl(wf):
    now = [1000.0]
    plane = MemoryDataPlane(clock=lambda: now[0])
    plane.mark_alive(wf, PK[0], ttl=10)
    plane.mark_alive(wf, PK[1], ttl=30)
    now[0] += 11
    assert plane.alive_nodes(wf) == {PK[1]}


def test_redis_heartbeat_and_blob_ttl_are_set(redis_server, wf):
    plane = RedisDataPlane(redis_server.url)
    plane.mark_alive(wf, PK[0], ttl=30)
    assert 0 < plane.client.ttl(keys.heartbeat_key(wf, PK[0])) <= 30
    plane.put_update_blob(wf, "s1", sha512_hex(b"x"), b"x", ttl=600)
    assert 0 < plane.client.ttl(keys.update_key(wf, "s1", sha512_hex(b"x"))) <= 600
    plane.close()


def test_the_append_runs_by_evalsha_after_one_load(redis_server, wf):
    admin = RedisDataPlane(redis_server.url).client
    admin.config_resetstat()
    admin.script_flush()
    tps = RedisDataPlane(redis_server.url_for("tps"))
    for i in range(5):
        tps.append_submission(wf, "s1", APP, f"t{i}", rec(i, f"t{i}"), 5, i)
    stats = admin.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 6  # one NOSCRIPT miss, then five hits
    assert stats["cmdstat_script|load"]["calls"] == 1
    assert "cmdstat_eval" not in stats
    tps.close()
