"""The same append and reads on a real 3-master Redis Cluster on loopback, through role users."""
import pytest

from trustmesh.dataplane import RedisDataPlane, SubmissionRecord, connect, keys, sha512_hex
from trustmesh.services import RedisCluster

APP = "mnist"
PK = ["02" + f"{i:02x}" * 32 for i in range(3)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with RedisCluster(data_dir=tmp_path_factory.mktemp("cluster"), masters=3) as c:
        yield c


def test_cluster_has_three_masters_covering_all_slots(cluster):
    client = connect(cluster.url)
    masters = [n for n in client.get_primaries()]
    assert len(masters) == 3
    info = client.cluster_info()
    assert info["cluster_state"] == "ok" and int(info["cluster_slots_assigned"]) == 16384
    client.close()


@pytest.mark.parametrize("wf", ["wf-a", "wf-b", "wf-c", "wf-d"])  # rounds land on different masters
def test_append_and_reads_work_unchanged(cluster, wf):
    tps = RedisDataPlane(cluster.url_for("tps"))  # the redis+cluster:// scheme says "cluster"
    compute = RedisDataPlane(cluster.url_for("compute"))
    participant = RedisDataPlane(cluster.url_for("participant").replace("redis+cluster://", "redis://"),
                                 cluster=True)
    for i in range(3):
        update = f"update {i}".encode()
        participant.put_update_blob(wf, "s1", sha512_hex(update), update)
        participant.mark_alive(wf, PK[i], ttl=60)
        record = SubmissionRecord(signer=PK[i], update_hash=sha512_hex(update), num_samples=1,
                                  txn_id=f"t{i}").encode()
        for _ in range(3):
            tps.append_submission(wf, "s1", APP, f"t{i}", record, 3, 100)
    subs = compute.read_submissions(wf, "s1", APP)
    assert [s.signer for s in subs] == PK
    assert all(compute.get_update_blob(wf, "s1", s.update_hash) is not None for s in subs)
    assert compute.get_round_mirror(wf, "s1").status == "all_submitted"
    assert compute.alive_nodes(wf) == set(PK)
    for plane in (tps, compute, participant):
        plane.close()


def test_script_reloads_after_script_flush(cluster):
    for node in cluster.nodes:
        node.admin_client().script_flush()
    admin = connect(cluster.url)
    tps = RedisDataPlane(cluster.url_for("tps"), cluster=True)
    record = SubmissionRecord(signer=PK[0], update_hash="00" * 64, num_samples=1, txn_id="x").encode()
    assert tps.append_submission("wf-flush", "s1", APP, "x", record, 1, 1).new
    assert admin.llen(keys.federated_list_key("wf-flush", "s1", APP)) == 1
    tps.close()
    admin.close()
