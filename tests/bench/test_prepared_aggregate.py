"""A compute node screens submissions as they arrive; the round's result must not change by a byte.

``compute_result`` with a :class:`PreparedUpdates` filled ahead of the close (some entries early,
some missing then, one tampered then fixed) must give exactly what a cold recomputation gives, for
every aggregator and with a norm bound — and a second recomputation over the same cache too.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from trustmesh.compute.roundwork import PreparedUpdates, compute_result, prepare_submissions
from trustmesh.contracts.records import IndexEntry, RoundRecord, SubmissionIndex, WorkflowRecord
from trustmesh.contracts.workflow import register_payload
from trustmesh.dataplane.records import SubmissionRecord, sha512_hex
from trustmesh.dataplane.store import MemoryDataPlane
from trustmesh.fl.codecs import encode_update
from trustmesh.fl.initial import initial_model
from trustmesh.fl.params import spec_for_model

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mnist-federated.json"
WF, SCHED = "wf-prepared", "r1-prepared"
MARKER = 1234.5677
SIGNERS = ["02" + f"{i:02x}" * 32 for i in range(1, 8)]  # compressed public keys, sorted


def _workflow(aggregator: str, norm_bound: float | None) -> WorkflowRecord:
    doc = json.loads(EXAMPLE.read_text())
    doc["workflow_id"] = WF
    doc["aggregation"] = {"name": aggregator, "params": {}, "norm_bound": norm_bound}
    names = doc["federation_config"]["participant_nodes"] = [f"p{i}" for i in range(len(SIGNERS))]
    doc["expected_nodes"] = len(SIGNERS)
    doc["data"]["num_partitions"] = len(SIGNERS)
    keys = dict(zip(names, SIGNERS, strict=True)) | {"compute-1": "03" + "0a" * 32, "compute-2": "03" + "0b" * 32, "iot-0": "03" + "0c" * 32}
    _, digest = initial_model("mlp")
    payload = register_payload(doc, initial_model_hash=digest, resolve=keys.__getitem__)
    return WorkflowRecord.from_obj({
        "schema_version": payload["schema_version"], "workflow_id": WF, "coordinator": "03" + "0c" * 32,
        "spec": payload["spec"], "participants": payload["participants"],
        "compute_nodes": payload["compute_nodes"], "privacy_cap": payload["privacy_cap"], "status": "active",
        "model_hash": digest, "model_version": 0, "last_round": 1,
    })


def _round(base_hash: str) -> RoundRecord:
    return RoundRecord.from_obj({"schema_version": 1, "workflow_id": WF, "round": 1, "schedule_id": SCHED,
                                 "base_model_hash": base_hash, "opened_at": 100, "deadline": 160, "status": "ready"})


def _updates() -> dict[str, bytes]:
    """Seven envelopes: honest ones of different sizes, a scaled one, a non-finite one, a topk one."""
    spec = spec_for_model("mlp")
    rng = np.random.default_rng(7)
    out = {}
    for i, signer in enumerate(SIGNERS):
        params = {name: (rng.standard_normal(shape) * 0.01).astype(np.float32) for name, shape in spec}
        if i == 3:
            params = {k: v * 400.0 for k, v in params.items()}  # beyond a norm bound
        if i == 4:  # the encoder refuses NaN: plant a marker and swap its bytes for a NaN's
            params[next(iter(params))].flat[0] = MARKER
        blob = encode_update(params, "topk" if i == 5 else "f32")
        if i == 4:
            marker = np.float32(MARKER).tobytes()
            assert blob.count(marker) == 1
            blob = blob.replace(marker, np.float32(np.nan).tobytes())
        out[signer] = blob
    return out


def _setup() -> tuple[MemoryDataPlane, SubmissionIndex, list[SubmissionRecord], dict[str, bytes], bytes]:
    plane = MemoryDataPlane()
    base, base_hash = initial_model("mlp")
    updates = _updates()
    entries, records = {}, []
    for n, (signer, blob) in enumerate(updates.items()):
        digest = sha512_hex(blob)
        inline = len(blob) <= 64 * 1024
        txn = f"{n:02x}" * 64
        entries[signer] = IndexEntry(update_hash=digest, num_samples=100 + 37 * n, txn_id=txn, inline=inline,
                                     metrics={"accuracy": 0.5 + n / 20})
        records.append(SubmissionRecord(signer=signer, update_hash=digest, num_samples=100 + 37 * n, txn_id=txn,
                                        inline=blob if inline else None))
    index = SubmissionIndex(schema_version=1, workflow_id=WF, round=1, schedule_id=SCHED, entries=entries)
    return plane, index, records, updates, base


def _result(workflow, record, index, records, plane, base, prepared):  # type: ignore[no-untyped-def]
    return compute_result(workflow=workflow, round_record=record, index=index, base_model=base, records=records,
                          fetch_update=lambda h: plane.fetch_update_blob(WF, SCHED, h), prepared=prepared)


@pytest.mark.parametrize("aggregator,norm_bound", [
    ("fedavg", None), ("fedavg", 5.0), ("perffedavg", None), ("median", None), ("trimmed_mean", 5.0),
    ("krum", None), ("multi_krum", None), ("fedadam", None),
])
def test_prepared_result_is_byte_identical(aggregator: str, norm_bound: float | None) -> None:
    workflow = _workflow(aggregator, norm_bound)
    plane, index, records, updates, base = _setup()
    record = _round(sha512_hex(base))
    by_ref = [s for s in SIGNERS if not index.entries[s].inline]
    late, tampered = by_ref[0], by_ref[1]
    for signer in SIGNERS:
        if not index.entries[signer].inline and signer != late:
            plane.put_update_blob(WF, SCHED, index.entries[signer].update_hash, updates[signer])
    plane.tamper(f"update:{{{WF}:{SCHED}}}:{index.entries[tampered].update_hash}", b"forged")

    prepared = PreparedUpdates()
    partial = SubmissionIndex(schema_version=1, workflow_id=WF, round=1, schedule_id=SCHED,
                              entries=dict(list(index.entries.items())[:4]))
    prepare_submissions(prepared, workflow=workflow, index=partial, records=records,
                        fetch_update=lambda h: plane.fetch_update_blob(WF, SCHED, h))
    ready = prepare_submissions(prepared, workflow=workflow, index=index, records=records,
                                fetch_update=lambda h: plane.fetch_update_blob(WF, SCHED, h))
    assert ready == len(SIGNERS) - 2  # the late blob is not there yet, the tampered one is not remembered

    # the late blob arrives and the tampered one is replaced by its true bytes before the close
    plane.put_update_blob(WF, SCHED, index.entries[late].update_hash, updates[late])
    plane.tamper(f"update:{{{WF}:{SCHED}}}:{index.entries[tampered].update_hash}", updates[tampered])

    cold = _result(workflow, record, index, records, plane, base, None)
    warm = _result(workflow, record, index, records, plane, base, prepared)
    again = _result(workflow, record, index, records, plane, base, prepared)
    for result in (warm, again):
        assert result.model_hash == cold.model_hash
        assert result.model_bytes == cold.model_bytes
        assert result.state_hash == cold.state_hash
        assert (result.included, result.excluded) == (cold.included, cold.excluded)
    assert cold.excluded[SIGNERS[4]] == "non_finite"
    if norm_bound is not None:
        assert cold.excluded[SIGNERS[3]] == "norm_bound"


def test_a_missing_or_wrong_blob_is_not_remembered() -> None:
    workflow = _workflow("fedavg", None)
    plane, index, records, updates, base = _setup()
    record = _round(sha512_hex(base))
    signer = next(s for s in SIGNERS if not index.entries[s].inline)
    digest = index.entries[signer].update_hash
    prepared = PreparedUpdates()
    fetch = lambda h: plane.fetch_update_blob(WF, SCHED, h)  # noqa: E731
    spec = spec_for_model("mlp")
    assert prepared.screen(spec, None, signer, index.entries[signer], {}, fetch) == (None, "blob_unavailable")
    plane.tamper(f"update:{{{WF}:{SCHED}}}:{digest}", b"squatted")
    assert prepared.screen(spec, None, signer, index.entries[signer], {}, fetch) == (None, "hash_mismatch")
    assert (spec, None, digest) not in prepared
    plane.tamper(f"update:{{{WF}:{SCHED}}}:{digest}", updates[signer])
    params, reason = prepared.screen(spec, None, signer, index.entries[signer], {}, fetch)
    assert reason is None and params is not None
    assert not next(iter(params.values())).flags.writeable  # no aggregator can alter a cached delta
    assert _result(workflow, record, index, records, plane, base, prepared).included


def test_blobs_screened_before_their_transactions_commit_change_nothing() -> None:
    """The list holds records of transactions in flight (and of ones that never commit): screening
    their blobs early is only a cache; the index alone decides what is aggregated."""
    workflow = _workflow("fedavg", 5.0)
    plane, index, records, updates, base = _setup()
    record = _round(sha512_hex(base))
    for signer in SIGNERS:
        if not index.entries[signer].inline:
            plane.put_update_blob(WF, SCHED, index.entries[signer].update_hash, updates[signer])
    stray = encode_update({n: np.zeros(s, np.float32) for n, s in spec_for_model("mlp")}, "f32")
    plane.put_update_blob(WF, SCHED, sha512_hex(stray), stray)
    never = SubmissionRecord(signer=SIGNERS[0], update_hash=sha512_hex(stray), num_samples=999, txn_id="ff" * 64)
    prepared = PreparedUpdates()
    spec = spec_for_model("mlp")
    fetch = lambda h: plane.fetch_update_blob(WF, SCHED, h)  # noqa: E731
    for early in [never, *records]:
        prepared.screen_ahead(spec, 5.0, early, fetch)
    assert len(prepared) == len(SIGNERS) + 1
    cold = _result(workflow, record, index, records, plane, base, None)
    warm = _result(workflow, record, index, [never, *records], plane, base, prepared)
    assert warm.model_bytes == cold.model_bytes
    assert (warm.included, warm.excluded) == (cold.included, cold.excluded)
