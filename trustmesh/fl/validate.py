"""Update validation before any aggregation: layout, finite values, and an L2 bound on the delta.

Every check is deterministic (the norm uses the canonical sum of squares of ``aggregate.py``), so
the aggregator and every attesting node exclude exactly the same submissions with the same reason
codes, which the round's result records on-chain.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from trustmesh.fl.aggregate import AggregationError, SpecLike, spec_entries, sq_norm, sq_norms

__all__ = [
    "ExclusionReason",
    "WRONG_SHAPE",
    "NON_FINITE",
    "NORM_BOUND",
    "HASH_MISMATCH",
    "BLOB_UNAVAILABLE",
    "DUPLICATE",
    "EXCLUSION_REASONS",
    "check_update",
    "check_vector",
    "check_rows",
    "update_norm",
    "Screening",
    "screen_submissions",
]

ExclusionReason = Literal[
    "wrong_shape", "non_finite", "norm_bound", "hash_mismatch", "blob_unavailable", "duplicate"
]
WRONG_SHAPE: ExclusionReason = "wrong_shape"
NON_FINITE: ExclusionReason = "non_finite"
NORM_BOUND: ExclusionReason = "norm_bound"
HASH_MISMATCH: ExclusionReason = "hash_mismatch"  # set by the caller: blob bytes != on-chain hash
BLOB_UNAVAILABLE: ExclusionReason = "blob_unavailable"  # set by the caller: blob missing or undecodable
DUPLICATE: ExclusionReason = "duplicate"  # set by the caller: a second record for one signer
EXCLUSION_REASONS: tuple[ExclusionReason, ...] = (
    WRONG_SHAPE, NON_FINITE, NORM_BOUND, HASH_MISMATCH, BLOB_UNAVAILABLE, DUPLICATE,
)

def check_vector(vector: np.ndarray, *, norm_bound: float | None) -> ExclusionReason | None:
    """Check one flat float32 update: ``non_finite`` first, then ``norm_bound`` (None = no bound).

    One canonical sum of squares serves both: it is finite exactly when every value is.
    """
    return _verdict(sq_norm(vector), norm_bound)


def check_rows(matrix: np.ndarray, *, norm_bound: float | None) -> list[ExclusionReason | None]:
    """``check_vector`` for every row of a stacked update matrix at once (same verdicts, fewer calls)."""
    return [_verdict(sq, norm_bound) for sq in sq_norms(matrix).tolist()]


def _verdict(sq: float, norm_bound: float | None) -> ExclusionReason | None:
    if not math.isfinite(sq):
        return NON_FINITE
    if norm_bound is not None and math.sqrt(sq) > float(norm_bound):
        return NORM_BOUND
    return None


def check_update(
    params: Mapping[str, np.ndarray],
    spec: SpecLike,
    *,
    norm_bound: float | None,
    out: np.ndarray | None = None,
) -> ExclusionReason | None:
    """``None`` if the update may be aggregated, else why not: wrong_shape, non_finite or norm_bound.

    The layout (names, order, shapes, float32) must equal the spec. The values are flattened into
    ``out`` when given (e.g. the update's row of the stacked matrix), so checking costs no extra copy.
    """
    entries = spec_entries(spec)
    if list(params) != [name for name, _ in entries]:
        return WRONG_SHAPE
    for (_, shape), arr in zip(entries, params.values(), strict=True):
        if not isinstance(arr, np.ndarray) or arr.dtype != np.float32 or arr.shape != shape:
            return WRONG_SHAPE
    total = sum(int(np.prod(shape)) for _, shape in entries)
    if out is None:
        out = np.empty(total, dtype=np.float32)
    elif out.shape != (total,) or out.dtype != np.float32:
        raise AggregationError(f"out must be a float32 vector of {total} values")
    pos = 0
    for arr in params.values():
        np.copyto(out[pos : pos + arr.size].reshape(arr.shape), arr, casting="no")
        pos += arr.size
    return check_vector(out, norm_bound=norm_bound)


def update_norm(update: Mapping[str, np.ndarray] | np.ndarray) -> float:
    """Canonical L2 norm of an update (named tensors in their order, or a flat vector)."""
    if isinstance(update, np.ndarray):
        return math.sqrt(sq_norm(update))
    flat = np.concatenate([np.asarray(a, dtype=np.float32).reshape(-1) for a in update.values()])
    return math.sqrt(sq_norm(flat))


@dataclass(frozen=True)
class Screening:
    """Submissions split for a round's result: included in signer order, excluded with a reason."""

    included: list[tuple[str, Mapping[str, np.ndarray]]]
    excluded: dict[str, ExclusionReason]

    @property
    def signers(self) -> list[str]:
        return [signer for signer, _ in self.included]


def screen_submissions(
    entries: Iterable[tuple[str, Mapping[str, np.ndarray] | None, ExclusionReason | None]],
    *,
    spec: SpecLike | None = None,
    norm_bound: float | None = None,
) -> Screening:
    """Split (signer, params or None, reason or None) entries into included and excluded.

    An entry with a reason is excluded with it; with ``spec`` given, every other entry is checked by
    ``check_update``. Included entries come back sorted by signer key, the canonical order.
    """
    included: list[tuple[str, Mapping[str, np.ndarray]]] = []
    excluded: dict[str, ExclusionReason] = {}
    seen: set[str] = set()
    for signer, params, reason in entries:
        if signer in seen:
            raise AggregationError(f"signer {signer[:16]} appears twice; pass one entry per signer")
        seen.add(signer)
        if reason is not None:
            if reason not in EXCLUSION_REASONS:
                raise AggregationError(f"unknown exclusion reason {reason!r}")
            excluded[signer] = reason
            continue
        if params is None:
            raise AggregationError(f"signer {signer[:16]} has neither an update nor a reason")
        if spec is not None:
            found = check_update(params, spec, norm_bound=norm_bound)
            if found is not None:
                excluded[signer] = found
                continue
        included.append((signer, params))
    included.sort(key=lambda item: item[0])
    return Screening(included=included, excluded=excluded)
