"""Re-check a round from the chain's record: the same computation an attesting node runs.

Verdicts: ``ok``; ``mismatch`` (the posted result, an exclusion or a stored model blob disagrees
with the recomputation — the round cannot be trusted); ``unavailable`` (a blob the check needs is
gone from Redis and the CouchDB archive, so nothing can be concluded either way).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from trustmesh.chain import Chain
from trustmesh.compute.roundwork import compute_result
from trustmesh.dataplane.records import sha512_hex
from trustmesh.dataplane.store import DataPlane
from trustmesh.errors import UpdateRejected
from trustmesh.fl.initial import initial_model

ModelArchive = Callable[[str, str], bytes | None]
"""(workflow_id, model_hash) -> the archived model blob, or None (CouchDB's fl_models)."""


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    unavailable: bool = False


@dataclass
class Verification:
    workflow_id: str
    round: int
    checks: list[Check] = field(default_factory=list)

    def add(self, name: str, ok: bool, detail: str, *, unavailable: bool = False) -> None:
        self.checks.append(Check(name, ok, detail, unavailable))

    @property
    def verdict(self) -> str:
        if any(not c.ok and not c.unavailable for c in self.checks):
            return "mismatch"
        if any(c.unavailable for c in self.checks):
            return "unavailable"
        return "ok"


def _model_blob(dataplane: DataPlane, archive: ModelArchive | None, workflow_id: str, digest: str) -> bytes | None:
    blob = dataplane.get_model(workflow_id, digest)
    if blob is None and archive is not None:
        blob = archive(workflow_id, digest)
    return blob


def _state_in_effect(chain: Chain, workflow_id: str, round_no: int) -> str | None:
    """The server-optimizer state a round started from: that of the last round accepted before it.

    Only an accepted round moves the workflow's state on (a rejected one leaves it), as the ledger's
    ``record_evaluation`` does; rounds are walked back from ``round_no - 1``.
    """
    for earlier in range(round_no - 1, 0, -1):
        previous = chain.round(workflow_id, earlier)
        if previous is not None and previous.status == "accepted" and previous.result is not None:
            return previous.result.aggregator_state_hash
    return None


def verify_round(*, chain: Chain, dataplane: DataPlane, workflow_id: str, round_no: int,
                 archive: ModelArchive | None = None) -> Verification:
    report = Verification(workflow_id, round_no)
    workflow = chain.workflow(workflow_id)
    record = chain.round(workflow_id, round_no) if workflow else None
    if workflow is None or record is None:
        report.add("round on chain", False, f"no round {round_no} of workflow {workflow_id!r} on the chain")
        return report
    result = record.result
    if result is None:
        report.add("result posted", False, f"round {round_no} is {record.status}: no result to verify")
        return report
    report.add("result posted", True, f"round {round_no} is {record.status}, model {result.model_hash[:16]}…")
    index = chain.index(workflow_id, round_no)
    entries = index.entries if index else {}
    named = set(result.included) | set(result.excluded)
    report.add("every submission judged", named == set(entries),
               f"{len(entries)} indexed, {len(result.included)} included, {len(result.excluded)} excluded")

    base = _model_blob(dataplane, archive, workflow_id, record.base_model_hash)
    if base is None:
        blob, digest = initial_model(workflow.spec.model)
        base = blob if digest == record.base_model_hash else None
    if base is None or sha512_hex(base) != record.base_model_hash:
        report.add("base model", False, "base model blob unavailable or not matching its hash", unavailable=True)
        return report
    report.add("base model", True, f"matches {record.base_model_hash[:16]}…")

    records = dataplane.read_submissions(workflow_id, record.schedule_id, workflow.spec.app_id)
    by_signer = {r.signer: r for r in records}
    missing = []
    for signer in result.included:
        entry = entries.get(signer)
        if entry is None:
            continue
        if entry.inline:
            present = signer in by_signer and by_signer[signer].inline is not None
        else:
            fetched = dataplane.fetch_update_blob(workflow_id, record.schedule_id, entry.update_hash)
            present = fetched.reason != "blob_unavailable"  # a tampered blob is present: it will mismatch
        if not present:
            missing.append(signer)
    if missing:
        report.add("submission blobs", False, f"{len(missing)} included update blob(s) no longer available",
                   unavailable=True)
        return report

    state = None
    prev_state = _state_in_effect(chain, workflow_id, record.round) if result.aggregator_state_hash else None
    if prev_state is not None:
        state = _model_blob(dataplane, archive, workflow_id, prev_state)
        if state is None or sha512_hex(state) != prev_state:
            report.add("server state", False, "the aggregator state this round started from is no longer available",
                       unavailable=True)
            return report
    secagg = chain.secagg(workflow_id, record.round)
    try:
        recomputed = compute_result(
            workflow=workflow, round_record=record, index=index, base_model=base, records=records,
            fetch_update=lambda h: dataplane.fetch_update_blob(workflow_id, record.schedule_id, h),
            optimizer_state=state, secagg=secagg,
        )
    except UpdateRejected as exc:  # a secure-aggregation sum that no longer unmasks: the posted one is unproven
        report.add("aggregate hash", False, f"cannot recompute: {exc}")
        return report
    if secagg is not None:
        report.add("secure aggregation", tuple(result.included) == tuple(secagg.survivors),
                   f"{len(secagg.survivors)} survivors unmasked with {len(secagg.reveals)} on-chain reveals, "
                   f"{len(secagg.dropped)} dropped")
    report.add("included set", tuple(sorted(result.included)) == tuple(sorted(recomputed.included)),
               f"posted {len(result.included)}, recomputed {len(recomputed.included)}")
    wrong = {k: (v, recomputed.excluded.get(k)) for k, v in result.excluded.items()
             if recomputed.excluded.get(k) != v}
    wrong.update({k: (None, v) for k, v in recomputed.excluded.items() if k not in result.excluded})
    report.add("exclusion reasons", not wrong,
               "all re-checked" if not wrong else
               "; ".join(f"{k[:12]}…: posted {a}, found {b}" for k, (a, b) in sorted(wrong.items())))
    report.add("aggregate hash", recomputed.model_hash == result.model_hash,
               f"recomputed {recomputed.model_hash[:16]}…, posted {result.model_hash[:16]}…")
    stored = dataplane.fetch_model(workflow_id, result.model_hash)
    if stored.reason == "hash_mismatch":
        report.add("stored model", False, "the model blob stored in Redis was altered")
    elif stored.data is None and _model_blob(dataplane, archive, workflow_id, result.model_hash) is None:
        report.add("stored model", False, "the posted model blob is not stored anywhere", unavailable=True)
    else:
        report.add("stored model", True, "stored blob matches the posted hash")
    return report
