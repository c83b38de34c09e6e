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

from trustmesh.contracts.records import IndexEntry, RoundRecord, SecAggRecord, SubmissionIndex, WorkflowRecord
from trustmesh.dataplane.records import SubmissionRecord, sha512_hex
from trustmesh.dataplane.store import Blob
from trustmesh.errors import UpdateRejected
from trustmesh.fl.aggregate import apply_aggregate
from trustmesh.fl.codecs import (
    CODECS,
    decode_params,
    decode_update_flat,
    encode_params,
    max_envelope_bytes,
    model_hash,
)
from trustmesh.fl.params import Params, ParamSpec, spec_for_model
from trustmesh.fl.strategies import ServerOptState, get_strategy
from trustmesh.fl.validate import check_vector, screen_submissions

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


def blob_for(signer: str, update_hash: str, inline: bool, records: dict[str, SubmissionRecord],
              fetch: BlobFetch) -> tuple[bytes | None, str | None]:
    """The update blob an index entry names, or the exclusion reason why there is none."""
    if inline:
        record = records.get(signer)
        if record is None or record.inline is None:
            return None, "blob_unavailable"
        blob = record.inline
        if sha512_hex(blob) != update_hash:
            return None, "hash_mismatch"
        return blob, None
    fetched = fetch(update_hash)  # a Blob carries data only when it hashed to update_hash
    if fetched.data is None:
        return None, fetched.reason
    return fetched.data, None


Screened = tuple[Params | None, str | None]
"""One index entry after screening: its checked delta, or the reason it is excluded."""


class PreparedUpdates:
    """Screened submissions by content hash: fetch, sha512, decode and check each blob once.

    Only a blob that hashed right is remembered; its verdict depends on nothing but its bytes, the
    model's spec and the norm bound (all three are in the key), so a cached entry is exactly what
    screening it again would give. A missing or wrong blob is retried each time (it may yet appear).
    The decoded arrays are read-only, so no aggregator can change what a later recomputation sees.
    """

    def __init__(self) -> None:
        self._screened: dict[tuple[ParamSpec, float | None, str], Screened] = {}

    def __contains__(self, key: tuple[ParamSpec, float | None, str]) -> bool:
        return key in self._screened

    def __len__(self) -> int:
        return len(self._screened)

    def screen(self, spec: ParamSpec, norm_bound: float | None, signer: str, entry: IndexEntry,
               records: dict[str, SubmissionRecord], fetch: BlobFetch) -> Screened:
        """The entry's checked delta or its exclusion reason, from the cache when its blob was seen."""
        return self._screen(spec, norm_bound, signer, entry.update_hash, entry.inline, records, fetch)

    def screen_ahead(self, spec: ParamSpec, norm_bound: float | None, record: SubmissionRecord,
                     fetch: BlobFetch) -> None:
        """Screen the blob of a record the iot-data TP appended, before its transaction commits (it
        may never): only the verdict on its hash is kept, and only an index entry ever uses it."""
        self._screen(spec, norm_bound, record.signer, record.update_hash, record.inline is not None,
                     {record.signer: record}, fetch)

    def _screen(self, spec: ParamSpec, norm_bound: float | None, signer: str, update_hash: str, inline: bool,
                records: dict[str, SubmissionRecord], fetch: BlobFetch) -> Screened:
        key = (spec, norm_bound, update_hash)
        if key in self._screened:
            return self._screened[key]
        blob, reason = blob_for(signer, update_hash, inline, records, fetch)
        if blob is None:
            return None, reason
        screened = _screen_blob(blob, spec, norm_bound)
        self._screened[key] = screened
        return screened

    def clear(self) -> None:
        self._screened.clear()


def _screen_blob(blob: bytes, spec: ParamSpec, norm_bound: float | None) -> Screened:
    """Decode a blob that hashed right and check it: layout (the decoder writes exactly the spec's
    tensors), finite values and the norm bound, on the one flat vector it decodes into."""
    limit = max(max_envelope_bytes(spec, codec) for codec in CODECS)  # any codec a participant may use
    try:
        flat = decode_update_flat(blob, spec, max_bytes=limit)
    except UpdateRejected as exc:
        return None, _reason_for(exc)
    found = check_vector(flat, norm_bound=norm_bound)
    if found is not None:
        return None, found
    flat.flags.writeable = False
    off = spec.offsets
    return {name: flat[off[i] : off[i + 1]].reshape(shape) for i, (name, shape) in enumerate(spec)}, None


def indexed_records(entries: dict[str, IndexEntry], records: list[SubmissionRecord]) -> dict[str, SubmissionRecord]:
    """The Redis list may hold records of transactions that never committed: keep, per signer, only
    the one whose transaction id the chain's index names."""
    return {r.signer: r for r in records if r.signer in entries and entries[r.signer].txn_id == r.txn_id}


def prepare_submissions(prepared: PreparedUpdates, *, workflow: WorkflowRecord, index: SubmissionIndex | None,
                        records: list[SubmissionRecord], fetch_update: BlobFetch) -> int:
    """Screen the index's entries into ``prepared`` ahead of the round's close; how many are ready."""
    spec = spec_for_model(workflow.spec.model)
    norm_bound = workflow.spec.aggregation.norm_bound
    entries = dict(sorted((index.entries if index else {}).items()))
    by_signer = indexed_records(entries, records)
    ready = 0
    for signer, entry in entries.items():
        prepared.screen(spec, norm_bound, signer, entry, by_signer, fetch_update)
        ready += (spec, norm_bound, entry.update_hash) in prepared
    return ready


def compute_result(
    *,
    workflow: WorkflowRecord,
    round_record: RoundRecord,
    index: SubmissionIndex | None,
    base_model: bytes,
    records: list[SubmissionRecord],
    fetch_update: BlobFetch,
    optimizer_state: bytes | None = None,
    prepared: PreparedUpdates | None = None,
    secagg: SecAggRecord | None = None,
) -> RoundResult:
    """Recompute round ``round_record``'s new model from the chain's index and the blobs it names.

    ``prepared`` holds submissions already fetched, hash-checked, decoded and checked (a compute node
    fills it as their events arrive); it only skips repeating that work, never changes the result.
    """
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
    by_signer = indexed_records(entries, records)
    norm_bound = workflow.spec.aggregation.norm_bound
    cache = prepared if prepared is not None else PreparedUpdates()
    screened_input = [
        (signer, *cache.screen(spec, norm_bound, signer, entry, by_signer, fetch_update))
        for signer, entry in entries.items()
    ]
    screening = screen_submissions(screened_input)  # every entry was checked against the spec above
    signers = screening.signers
    model_bytes, state_bytes, state_hash = server_step(
        workflow, base, spec, [params for _, params in screening.included],
        [float(entries[s].num_samples) for s in signers], [dict(entries[s].metrics) for s in signers],
        optimizer_state,
    )
    return RoundResult(
        model_bytes=model_bytes,
        model_hash=model_hash(model_bytes),
        included=tuple(signers),  # Krum's selection is part of the aggregator, not an exclusion
        excluded=dict(screening.excluded),
        state_bytes=state_bytes,
        state_hash=state_hash,
        seconds=time.perf_counter() - started,
    )


def server_step(workflow: WorkflowRecord, base: Params, spec: ParamSpec, updates: list[Params],
                weights: list[float], metrics: list[dict[str, float]],
                optimizer_state: bytes | None) -> tuple[bytes, bytes | None, str | None]:
    """The workflow's strategy over ``updates``, applied to ``base``: (model bytes, state bytes, state hash).

    No update leaves the base model (and the state) as they were.
    """
    if not updates:
        return encode_params({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in base.items()}), None, None
    state_in = ServerOptState.from_params(decode_params(optimizer_state, _state_spec(spec))) \
        if optimizer_state else None
    strategy = get_strategy(workflow.spec.aggregation.name, **dict(workflow.spec.aggregation.params))
    outcome = strategy.aggregate(updates, weights, metrics=metrics, state=state_in)
    new_params = apply_aggregate(base, outcome.delta)
    state_bytes = encode_params(outcome.state.to_params()) if outcome.state is not None else None
    model_bytes = encode_params({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in new_params.items()})
    return model_bytes, state_bytes, model_hash(state_bytes) if state_bytes is not None else None


def _state_spec(spec: ParamSpec) -> ParamSpec:
    """The ParamSpec of an optimizer-state blob: ``m/<name>`` then ``v/<name>``."""
    return ParamSpec.of([(f"m/{n}", s) for n, s in spec] + [(f"v/{n}", s) for n, s in spec])
