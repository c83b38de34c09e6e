"""A compute node watches a round's list while it is open: a cheap count, then only the new records."""
from trustmesh.dataplane import SubmissionRecord, sha512_hex

APP = "mnist"


def _record(n: int) -> bytes:
    return SubmissionRecord(signer="02" + f"{n:02x}" * 32, update_hash=sha512_hex(bytes([n])), num_samples=n + 1,
                            txn_id=f"t{n}").encode()


def test_count_then_read_from_where_the_last_look_ended(plane, wf):
    assert plane.count_submissions(wf, "s1", APP) == 0
    assert plane.read_submissions(wf, "s1", APP, start=0) == []
    for n in range(3):
        plane.append_submission(wf, "s1", APP, f"t{n}", _record(n), 5, 10)
    assert plane.count_submissions(wf, "s1", APP) == 3
    assert [r.txn_id for r in plane.read_submissions(wf, "s1", APP, start=1)] == ["t1", "t2"]
    plane.append_submission(wf, "s1", APP, "t1", _record(1), 5, 11)  # a replayed apply() appends nothing
    plane.append_submission(wf, "s1", APP, "t3", _record(3), 5, 11)
    assert plane.count_submissions(wf, "s1", APP) == 4
    assert [r.txn_id for r in plane.read_submissions(wf, "s1", APP, start=3)] == ["t3"]
    assert len(plane.read_submissions(wf, "s1", APP)) == 4
