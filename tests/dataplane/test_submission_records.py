"""Submission records: canonical CBOR round trip and strict decoding of list entries."""
import cbor2
import pytest

from trustmesh.dataplane import RecordError, SubmissionRecord, sha512_hex


def record(**over):
    fields = dict(signer="02" + "ab" * 32, update_hash=sha512_hex(b"u"), num_samples=10, txn_id="t1",
                  inline=b"u", metrics={"loss": 0.5, "accuracy": 1})
    fields.update(over)
    return SubmissionRecord(**fields)


def test_round_trip_and_canonical_bytes():
    rec = record()
    data = rec.encode()
    assert SubmissionRecord.decode(data) == SubmissionRecord(**{**rec.__dict__, "metrics": {"loss": 0.5,
                                                                                           "accuracy": 1.0}})
    assert data == cbor2.dumps(cbor2.loads(data), canonical=True)
    assert rec.inline_matches
    assert not record(inline=None).inline_matches
    assert not record(inline=b"other").inline_matches


@pytest.mark.parametrize("entry", [
    b"", b"\xff\xff", cbor2.dumps([1, 2]), cbor2.dumps({"signer": "x"}),
    cbor2.dumps({**cbor2.loads(record().encode()), "num_samples": -1}),
    cbor2.dumps({**cbor2.loads(record().encode()), "schema_version": 2}),
    cbor2.dumps({**cbor2.loads(record().encode()), "inline": "text"}),
    cbor2.dumps({**cbor2.loads(record().encode()), "extra": 1}),
])
def test_malformed_entries_are_refused(entry):
    with pytest.raises(RecordError):
        SubmissionRecord.decode(entry)
