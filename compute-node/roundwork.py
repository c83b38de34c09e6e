"""The aggregate task, as one deterministic function of the chain's record of a round.

The aggregating compute node, an attesting compute node and `trustmesh verify-round` all call
:func:`compute_result`, so "recompute the aggregate and compare hashes" means running the very same
code: the submissions the chain's index names (sorted by signer key), each blob checked against
its on-chain hash, validated, aggregated with the workflow's strategy in the canonical arithmetic.
A blob without an on-chain record is never read; an index entry whose blob is missing or wrong is
excluded with its reason.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from trustmesh.contracts.records import RoundRecord, SecAggRecord, SubmissionIndex, WorkflowRecord
from trustmesh.dataplane.records import SubmissionRecord, sha512_hex
from trustmesh.dataplane.store import Blob
from trustmesh.errors import UpdateRejected
from trustmesh.fl.aggregate import apply_aggregate
from trustmesh.fl.codecs import (
    CODECS,
    decode_params,
    decode_update,
    encode_params,
    max_envelope_bytes,
    model_hash,
)
from trustmesh.fl.params import Params, ParamSpec, spec_for_model
from trustmesh.fl.strategies import ServerOptState, get_strategy
from trustmesh.fl.validate import screen_submissions

BlobFetch = Callable[[str], Blob]
"""Fetch an update blob by its hash: its bytes when they hash right, else the reason why not."""

ACCURACY_METRIC = "accuracy"
"""The submission metric PerfFedAvg weighs (a participant's local validation accuracy)."""


@dataclass(frozen=True, kw_only=True)
class RoundResult:
    """What ``post_result`` records, plus the blobs behind its hashes."""

    model_bytes: bytes
    model_hash: str
    included: tuple[str, ...]
    excluded: dict[str, str]
    state_bytes: bytes | None = None
    state_hash: str | None = None
    seconds: float = 0.0
    notes: dict[str, str] = field(default_factory=dict)


def _reason_for(exc: UpdateRejected) -> str:
    return "non_finite" if "non-finite" in str(exc) else "wrong_shape"


def _blob_for(signer: str, update_hash: str, inline: bool, records: dict[str, SubmissionRecord],
              fetch: BlobFetch) -> tuple[bytes | None, str | None]:
    """The update blob an index entry names, or the exclusion reason why there is none."""
    if inline:
        record = records.get(signer)
        if record is None or record.inline is None:
            return None, "blob_unavailable"
        blob = record.inline
    else:
        fetched = fetch(update_hash)
        if fetched.data is None:
            return None, fetched.reason
        blob = fetched.data
    if sha512_hex(blob) != update_hash:
        return None, "hash_mismatch"
    return blob, None


def compute_result(
    *,
    workflow: WorkflowRecord,
    round_record: RoundRecord,
    index: SubmissionIndex | None,
    base_model: bytes,
    records: list[SubmissionRecord],
    fetch_update: BlobFetch,
    optimizer_state: bytes | None = None,
    secagg: SecAggRecord | None = None,
) -> RoundResult:
    """Recompute round ``round_record``'s new model from the chain's index and the blobs it names."""
    started = time.perf_counter()
    if model_hash(base_model) != round_record.base_model_hash:
        raise UpdateRejected("the base model blob does not match the round's base_model_hash")
    spec = spec_for_model(workflow.spec.model)
    base = decode_params(base_model, spec)
    if workflow.spec.privacy.secure_aggregation.enabled:  # ``secagg``: the round's on-chain phases
        from trustmesh.compute.secagg_work import secagg_result

        if secagg is None:
            raise UpdateRejected("a secure-aggregation round is unmasked from its on-chain record: none given")
        return secagg_result(workflow=workflow, round_record=round_record, index=index, secagg=secagg, base=base,
                             spec=spec, records=records, fetch_update=fetch_update,
                             optimizer_state=optimizer_state, started=started)
    entries = dict(sorted((index.entries if index else {}).items()))
    # The Redis list may hold records of transactions that never committed: keep only the one
    # whose transaction id the chain's index names.
    by_signer = {r.signer: r for r in records if r.signer in entries and entries[r.signer].txn_id == r.txn_id}
    limit = max(max_envelope_bytes(spec, codec) for codec in CODECS)  # any codec a participant may use
    screened_input: list[tuple[str, Params | None, str | None]] = []
    for signer, entry in entries.items():
        blob, reason = _blob_for(signer, entry.update_hash, entry.inline, by_signer, fetch_update)
        params: Params | None = None
        if blob is not None:
            try:
                params = decode_update(blob, spec, max_bytes=limit)
            except UpdateRejected as exc:
                reason = _reason_for(exc)
        screened_input.append((signer, params, reason))
    screening = screen_submissions(
        screened_input, spec=spec, norm_bound=workflow.spec.aggregation.norm_bound  # type: ignore[arg-type]
    )
    state_in = ServerOptState.from_params(decode_params(optimizer_state, _state_spec(spec))) \
        if optimizer_state else None
    state_bytes = state_hash = None
    if screening.included:
        strategy = get_strategy(workflow.spec.aggregation.name, **dict(workflow.spec.aggregation.params))
        signers = screening.signers
        outcome = strategy.aggregate(
            [params for _, params in screening.included],
            [float(entries[s].num_samples) for s in signers],
            metrics=[dict(entries[s].metrics) for s in signers],
            state=state_in,
        )
        new_params = apply_aggregate(base, outcome.delta)
        if outcome.state is not None:
            state_bytes = encode_params(outcome.state.to_params())
            state_hash = model_hash(state_bytes)
        included = tuple(signers)  # Krum's selection is part of the aggregator, not an exclusion
    else:
        new_params, included = base, ()
    model_bytes = encode_params({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in new_params.items()})
    return RoundResult(
        model_bytes=model_bytes,
        model_hash=model_hash(model_bytes),
        included=included,
        excluded=dict(screening.excluded),
        state_bytes=state_bytes,
        state_hash=state_hash,
        seconds=time.perf_counter() - started,
    )


def _state_spec(spec: ParamSpec) -> ParamSpec:
    """The ParamSpec of an optimizer-state blob: ``m/<name>`` then ``v/<name>``."""
    return ParamSpec.of([(f"m/{n}", s) for n, s in spec] + [(f"v/{n}", s) for n, s in spec])
