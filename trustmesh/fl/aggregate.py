"""Aggregation math over model updates (deltas): small vectorized functions on plain numpy.

Everything whose output may be hashed follows one canonical, versioned arithmetic,
``CANONICAL_ARITHMETIC`` (DESIGN §4), so that any node recomputes a round's aggregate to the byte:

* Updates are float32 rows in the order of the round's on-chain index (sorted by signer key).
* Weighted sums: coefficients are float64; ``acc = 0.0`` then, for each update in order,
  ``acc = acc + (float64(x) * c)`` with two separate IEEE roundings (no fused multiply-add), then
  one cast to float32 (round to nearest even). Data shares are ``n_i / N`` with ``N`` summed in order.
* Sums of squares and dot products (norms, Krum distances, cosines): element ``k`` of the flat
  vector falls in lane ``k % SQSUM_LANES``; each lane accumulates its float64 terms in increasing
  ``k``; the lanes are then added in lane order. Scalars derived from them (square roots, ratios,
  medians of norms) are single IEEE operations on Python floats.
* Order statistics (median, trimmed mean) sort each coordinate's values after turning -0.0 into
  +0.0; the kept values are summed in ascending order in float64, then divided and cast once.
* Server optimizers (FedAdam, FedYogi) compute elementwise in float64 from float32 state and cast
  the step and the new moments to float32.

Only elementwise numpy ufuncs and explicit loops over updates produce these values: never a BLAS or
pairwise reduction, whose rounding depends on the machine, the library, the memory layout and the
number of threads. Krum's *selection* may be proposed by a BLAS Gram matrix, but is kept only when
error bounds prove it equal to the canonical one (a certified margin); near-ties, equal updates
and anything unprovable fall back to the canonical distances, so the selection never depends on
the BLAS. Krum's output is the selected update itself and multi-Krum's the canonical weighted sum
of the selected ones: no BLAS value ever reaches a hashed byte. Work is split into column blocks
that stay in cache; optional ``workers`` threads take disjoint blocks, which cannot change any byte.
Inputs are assumed validated (see ``validate.py``).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from trustmesh.errors import TrustMeshError

__all__ = [
    "CANONICAL_ARITHMETIC",
    "SQSUM_LANES",
    "AggregationError",
    "Updates",
    "SpecLike",
    "spec_entries",
    "stack_updates",
    "unstack",
    "data_shares",
    "perffedavg_weights",
    "weighted_sum",
    "fedavg",
    "perffedavg",
    "coordinate_median",
    "trimmed_mean",
    "sq_norm",
    "sq_norms",
    "dot_products",
    "pairwise_sq_distances",
    "krum_scores",
    "krum_select",
    "krum",
    "multi_krum",
    "cosine_trim",
    "trend_trim",
    "adam_server_step",
    "yogi_server_step",
    "apply_aggregate",
]

CANONICAL_ARITHMETIC = "tm-agg-v1"
SQSUM_LANES = 1024
_SUM_BLOCK = 65536  # columns per block for weighted sums: 2 x 512 KiB of float64, stays in L2
_SORT_BLOCK = 4096  # columns per block for order statistics
_DIST_BLOCK = SQSUM_LANES  # columns per block for pairwise distances (must be a multiple of the lanes)
_MIN_VALUES_PER_THREAD = 1 << 21  # below this much work a thread costs more than it saves
_DIST_LANE_BYTES = 128 << 20  # lane memory Krum distances may hold at once

Updates = np.ndarray | Sequence[np.ndarray]
"""A float32 matrix ``[n_updates, n_params]`` (any memory layout) or a sequence of flat float32 rows."""
SpecLike = Iterable[tuple[str, Sequence[int]]] | Mapping[str, Sequence[int]]
"""Ordered (name, shape) pairs: a ``params.ParamSpec``, a mapping name -> shape, or a list of pairs."""


class AggregationError(TrustMeshError):
    """Aggregator inputs are inconsistent (counts, lengths, dtypes, weights, settings).

    A caller bug or an update that skipped validation: fix the caller; retrying cannot help.
    """


# ---------------------------------------------------------------------------------------------
# Gathering: named updates -> one preallocated matrix, and back


def spec_entries(spec: SpecLike) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """The ordered (name, shape) pairs of a spec: a ParamSpec, a mapping or any iterable of pairs."""
    pairs = spec.items() if isinstance(spec, Mapping) else spec
    return tuple((str(name), tuple(int(d) for d in shape)) for name, shape in pairs)


def _offsets(entries: Sequence[tuple[str, tuple[int, ...]]]) -> list[int]:
    out = [0]
    for _, shape in entries:
        out.append(out[-1] + math.prod(shape))
    return out


def stack_updates(
    updates: Sequence[Mapping[str, np.ndarray]],
    spec: SpecLike,
    *,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Write each update's tensors straight into one C-ordered float32 matrix, one row per update.

    Gathering costs more than the arithmetic, so every value is copied exactly once.
    """
    entries = spec_entries(spec)
    off = _offsets(entries)
    shape = (len(updates), off[-1])
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise AggregationError(f"out must be a C-contiguous float32 matrix of shape {shape}")
    for row, update in zip(out, updates, strict=True):
        if len(update) != len(entries):
            raise AggregationError(f"an update has {len(update)} tensors, the spec {len(entries)}")
        for i, (name, tshape) in enumerate(entries):
            arr = update.get(name)
            if arr is None or arr.shape != tshape or arr.dtype != np.float32:
                raise AggregationError(f"{name}: missing, not float32 or not of shape {tshape}")
            np.copyto(row[off[i] : off[i + 1]].reshape(tshape), arr, casting="no")
    return out


def unstack(vector: np.ndarray, spec: SpecLike) -> dict[str, np.ndarray]:
    """Named tensors as views of one flat float32 vector (the inverse of one stacked row)."""
    entries = spec_entries(spec)
    off = _offsets(entries)
    if vector.ndim != 1 or vector.size != off[-1] or vector.dtype != np.float32:
        raise AggregationError(f"expected a float32 vector of {off[-1]} values, got {vector.shape}")
    return {name: vector[off[i] : off[i + 1]].reshape(shape) for i, (name, shape) in enumerate(entries)}


# ---------------------------------------------------------------------------------------------
# Internals: rows, column blocks, threads


def _rows(updates: Updates) -> list[np.ndarray]:
    """Flat float32 rows of equal length, without copying."""
    if isinstance(updates, np.ndarray):
        if updates.ndim != 2:
            raise AggregationError("a stacked update matrix must be 2-D")
        rows = list(updates)
    else:
        rows = [np.asarray(r) for r in updates]
    if not rows:
        raise AggregationError("nothing to aggregate: no updates")
    size = rows[0].shape
    for r in rows:
        if r.dtype != np.float32 or r.ndim != 1 or r.shape != size:
            raise AggregationError("updates must be flat float32 rows of one length")
    return rows


def _blocks(n: int, block: int) -> list[tuple[int, int]]:
    return [(s, min(s + block, n)) for s in range(0, n, block)]


def _threads(workers: int, values: int) -> int:
    """Threads worth starting for ``values`` elements of work (small inputs stay on one thread)."""
    return max(1, min(workers, values // _MIN_VALUES_PER_THREAD))


def _run_blocks(
    make: Callable[[], Callable[[int, int], None]], n: int, block: int, workers: int, rows: int
) -> None:
    """Run every column block through a worker made by ``make()`` (one per thread, owning its scratch).

    Threads take contiguous runs of blocks; a block's bytes never depend on which thread ran it.
    """
    spans = _blocks(n, block)
    workers = _threads(workers, n * rows)
    groups = [spans] if workers <= 1 or len(spans) < 2 else [
        spans[i : i + -(-len(spans) // workers)] for i in range(0, len(spans), -(-len(spans) // workers))
    ]

    def run(group: list[tuple[int, int]]) -> None:
        work = make()
        for s, e in group:
            work(s, e)

    if len(groups) == 1:
        run(groups[0])
        return
    with ThreadPoolExecutor(max_workers=len(groups)) as pool:
        list(pool.map(run, groups))


# ---------------------------------------------------------------------------------------------
# Weights


def data_shares(num_samples: Sequence[float]) -> np.ndarray:
    """FedAvg weights ``n_i / N`` in float64, ``N`` summed in index order."""
    counts = [float(n) for n in num_samples]
    if not counts or any(not math.isfinite(n) or n < 0 for n in counts):
        raise AggregationError("num_samples must be finite and non-negative")
    total = 0.0
    for n in counts:
        total += n
    if total <= 0:
        raise AggregationError("num_samples sum to zero")
    return np.array([n / total for n in counts], dtype=np.float64)


def perffedavg_weights(
    num_samples: Sequence[float], accuracies: Sequence[float], *, alpha: float
) -> np.ndarray:
    """PerfFedAvg: ``alpha * n_i / sum n + (1 - alpha) * acc_i / sum acc`` (alpha = 1 is FedAvg).

    Accuracies are clamped to [0, 1]; if they sum to zero the accuracy share falls back to the data
    share, as the source design falls back to FedAvg.
    """
    if not 0.0 <= alpha <= 1.0:
        raise AggregationError("alpha must lie in [0, 1]")
    shares = data_shares(num_samples)
    if alpha == 1.0:
        return shares
    accs = [min(max(float(a), 0.0), 1.0) for a in accuracies]
    if len(accs) != len(shares) or any(math.isnan(a) for a in accs):
        raise AggregationError("one finite accuracy per update is required")
    total = 0.0
    for a in accs:
        total += a
    acc_shares = [a / total for a in accs] if total > 0 else shares.tolist()
    return np.array(
        [alpha * d + (1.0 - alpha) * a for d, a in zip(shares.tolist(), acc_shares, strict=True)],
        dtype=np.float64,
    )


# ---------------------------------------------------------------------------------------------
# Weighted sums (FedAvg, PerfFedAvg, multi-Krum)


def weighted_sum(
    updates: Updates, coefficients: Sequence[float] | np.ndarray, *, workers: int = 1
) -> np.ndarray:
    """Canonical ``sum_i c_i * x_i``: float64, in update order, no FMA, then one float32 cast.

    Column block by column block: the float64 accumulator and scratch of one block stay in L2, so
    only the float32 updates stream from memory. Per block, per update: widen (exact), multiply,
    add, each an ``out=`` ufunc with no temporaries.
    """
    rows = _rows(updates)
    coefs = [np.float64(c) for c in coefficients]
    if len(coefs) != len(rows):
        raise AggregationError(f"{len(rows)} updates but {len(coefs)} weights")
    size = rows[0].size
    out = np.empty(size, dtype=np.float32)
    block = min(_SUM_BLOCK, max(size, 1))
    first, c0 = rows[0], coefs[0]
    rest = list(zip(rows[1:], coefs[1:], strict=True))

    def make() -> Callable[[int, int], None]:
        acc_buf = np.empty(block, dtype=np.float64)
        tmp_buf = np.empty(block, dtype=np.float64)

        def work(s: int, e: int) -> None:
            acc, tmp = acc_buf[: e - s], tmp_buf[: e - s]
            np.multiply(first[s:e], c0, out=acc, dtype=np.float64)
            np.add(acc, 0.0, out=acc)  # 0.0 + x0*c0, as the canonical order starts: -0.0 -> +0.0
            for row, c in rest:
                np.copyto(tmp, row[s:e])  # float32 -> float64 is exact
                np.multiply(tmp, c, out=tmp)
                np.add(acc, tmp, out=acc)
            np.copyto(out[s:e], acc, casting="same_kind")

        return work

    _run_blocks(make, size, block, workers, len(rows))
    return out


def fedavg(updates: Updates, num_samples: Sequence[float], *, workers: int = 1) -> np.ndarray:
    """FedAvg: the data-share weighted mean of the updates (canonical)."""
    return weighted_sum(updates, data_shares(num_samples), workers=workers)


def perffedavg(
    updates: Updates,
    num_samples: Sequence[float],
    accuracies: Sequence[float],
    *,
    alpha: float,
    workers: int = 1,
) -> np.ndarray:
    """PerfFedAvg: weights blend data share and validation-accuracy share (canonical)."""
    weights = perffedavg_weights(num_samples, accuracies, alpha=alpha)
    return weighted_sum(updates, weights, workers=workers)


# ---------------------------------------------------------------------------------------------
# Order statistics (coordinate-wise median, trimmed mean)


def _sorted_columns(rows: list[np.ndarray], s: int, e: int, buf: np.ndarray) -> np.ndarray:
    """Block ``[e - s, n]``: each coordinate's values, -0.0 made +0.0, sorted ascending."""
    block = buf[: e - s]
    for j, row in enumerate(rows):
        block[:, j] = row[s:e]
    np.add(block, 0.0, out=block)  # -0.0 + 0.0 == +0.0: one zero, so the sort result is unique
    block.sort(axis=1)
    return block


def _order_statistic(
    rows: list[np.ndarray], reduce: Callable[[np.ndarray], np.ndarray], workers: int
) -> np.ndarray:
    size, n = rows[0].size, len(rows)
    out = np.empty(size, dtype=np.float32)
    block = min(_SORT_BLOCK, max(size, 1))

    def make() -> Callable[[int, int], None]:
        buf = np.empty((block, n), dtype=np.float32)

        def work(s: int, e: int) -> None:
            np.copyto(out[s:e], reduce(_sorted_columns(rows, s, e, buf)), casting="same_kind")

        return work

    _run_blocks(make, size, block, workers, n)
    return out


def coordinate_median(updates: Updates, *, workers: int = 1) -> np.ndarray:
    """Coordinate-wise median (unweighted); an even count averages the two middle values in float64."""
    rows = _rows(updates)
    n = len(rows)

    def reduce(block: np.ndarray) -> np.ndarray:
        if n % 2:
            return block[:, n // 2]
        lo = block[:, n // 2 - 1].astype(np.float64)
        return (lo + block[:, n // 2]) * 0.5

    return _order_statistic(rows, reduce, workers)


def trimmed_mean(updates: Updates, *, beta: float, workers: int = 1) -> np.ndarray:
    """Coordinate-wise mean after dropping ``floor(beta * n)`` lowest and highest values (unweighted)."""
    rows = _rows(updates)
    n = len(rows)
    if not 0.0 <= beta < 0.5:
        raise AggregationError("trimmed mean needs 0 <= beta < 0.5")
    k = int(math.floor(beta * n))
    if n - 2 * k < 1:
        raise AggregationError(f"trimming {k} from each end of {n} updates leaves nothing")
    keep = float(n - 2 * k)

    def reduce(block: np.ndarray) -> np.ndarray:
        acc = np.zeros(block.shape[0], dtype=np.float64)
        for j in range(k, n - k):
            np.add(acc, block[:, j], out=acc, dtype=np.float64)
        return acc / keep

    return _order_statistic(rows, reduce, workers)


# ---------------------------------------------------------------------------------------------
# Sums of squares (norms, Krum distances)


def _fold_lanes(lanes: np.ndarray) -> np.ndarray:
    """Add the lanes (last axis) in lane order; vectorized over the leading axes."""
    total = np.zeros(lanes.shape[:-1], dtype=np.float64)
    for lane in range(lanes.shape[-1]):
        np.add(total, lanes[..., lane], out=total)
    return total


def sq_norm(vector: np.ndarray) -> float:
    """Canonical squared L2 norm of a flat float32 vector (float64 lanes; see the module docstring).

    The same arithmetic as ``sq_norms`` on one row: the squares (exact in float64) laid out as rows of
    ``SQSUM_LANES``, zero-padded (adding +0.0 to a lane changes nothing), summed row after row into the
    lanes, then the lanes folded in order. One multiply and one add per row instead of per block.
    """
    flat = np.asarray(vector).reshape(-1)
    if flat.dtype != np.float32 or flat.size == 0:
        return float(sq_norms([flat])[0])
    blocks = -(-flat.size // SQSUM_LANES)
    squares = np.zeros(blocks * SQSUM_LANES, dtype=np.float64)
    np.multiply(flat, flat, out=squares[: flat.size], dtype=np.float64)
    table = squares.reshape(blocks, SQSUM_LANES)
    lanes = table[0].copy()
    for row in table[1:]:
        np.add(lanes, row, out=lanes)
    total = 0.0
    for v in lanes.tolist():
        total += v
    return total


def sq_norms(updates: Updates) -> np.ndarray:
    """Canonical squared L2 norm of every update (float64), all rows advancing together.

    Row by row the arithmetic is exactly ``sq_norm``'s; batching only cuts the Python calls.
    """
    rows = _rows(updates)
    n, size = len(rows), rows[0].size
    matrix = updates if isinstance(updates, np.ndarray) else None
    lanes = np.zeros((n, SQSUM_LANES), dtype=np.float64)
    sq = np.empty((n, SQSUM_LANES), dtype=np.float64)
    for s, e in _blocks(size, SQSUM_LANES):
        c = e - s
        if matrix is not None:
            part = matrix[:, s:e]
            np.multiply(part, part, out=sq[:, :c], dtype=np.float64)
        else:
            for j, row in enumerate(rows):
                np.multiply(row[s:e], row[s:e], out=sq[j, :c], dtype=np.float64)
        np.add(lanes[:, :c], sq[:, :c], out=lanes[:, :c])
    if n > 8:
        return _fold_lanes(lanes)
    totals = []
    for row_lanes in lanes.tolist():  # few rows: the same in-order fold, in plain floats
        total = 0.0
        for v in row_lanes:
            total += v
        totals.append(total)
    return np.array(totals, dtype=np.float64)


def dot_products(updates: Updates, reference: np.ndarray) -> np.ndarray:
    """Canonical ``x_i . reference`` of every update (float64, lanes as in ``sq_norms``).

    A product of two float32 values is exact in float64, so only the lane sums round.
    """
    rows = _rows(updates)
    ref = np.asarray(reference)
    if ref.dtype != np.float32 or ref.shape != rows[0].shape:
        raise AggregationError("the reference must be a float32 vector as long as the updates")
    n, size = len(rows), rows[0].size
    matrix = updates if isinstance(updates, np.ndarray) else None
    lanes = np.zeros((n, SQSUM_LANES), dtype=np.float64)
    prod = np.empty((n, SQSUM_LANES), dtype=np.float64)
    ref64 = np.empty(SQSUM_LANES, dtype=np.float64)
    for s, e in _blocks(size, SQSUM_LANES):
        c = e - s
        np.copyto(ref64[:c], ref[s:e])
        if matrix is not None:
            np.multiply(matrix[:, s:e], ref64[:c], out=prod[:, :c], dtype=np.float64)
        else:
            for j, row in enumerate(rows):
                np.multiply(row[s:e], ref64[:c], out=prod[j, :c], dtype=np.float64)
        np.add(lanes[:, :c], prod[:, :c], out=lanes[:, :c])
    return _fold_lanes(lanes)


def pairwise_sq_distances(updates: Updates, *, workers: int = 1) -> np.ndarray:
    """Canonical squared Euclidean distances ``[n, n]`` (float64, symmetric, zero diagonal).

    Each block of ``SQSUM_LANES`` columns is one lane row, so a pair's lanes see their squares in
    increasing column order. Threads split the pairs by first index, never a pair's columns. The
    lanes of at most ``_DIST_LANE_BYTES`` are held at once; more first indices take more passes.
    """
    rows = _rows(updates)
    n, size = len(rows), rows[0].size
    dist = np.zeros((n, n), dtype=np.float64)
    if n < 2:
        return dist
    group = max(1, min(n - 1, _DIST_LANE_BYTES // (n * SQSUM_LANES * 8)))
    threads = max(1, min(_threads(workers, size * n * (n - 1) // 2), group))
    chunk = np.empty((n, _DIST_BLOCK), dtype=np.float64)
    diffs = [np.empty((n, _DIST_BLOCK), dtype=np.float64) for _ in range(threads)]
    pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None
    try:
        for g0 in range(0, n - 1, group):
            firsts = range(g0, min(g0 + group, n - 1))
            lanes = np.zeros((len(firsts), n, SQSUM_LANES), dtype=np.float64)
            mine = [list(firsts[t::threads]) for t in range(threads)]

            def pairs_of(t: int, c: int, g0: int = g0, lanes: np.ndarray = lanes, mine: list = mine) -> None:
                for i in mine[t]:
                    d = diffs[t][: n - i - 1, :c]
                    np.subtract(chunk[i + 1 :, :c], chunk[i, :c], out=d)
                    np.multiply(d, d, out=d)
                    li = lanes[i - g0, i + 1 :, :c]
                    np.add(li, d, out=li)

            for s, e in _blocks(size, _DIST_BLOCK):
                c = e - s
                for j in range(g0, n):
                    chunk[j, :c] = rows[j][s:e]
                if pool is None:
                    pairs_of(0, c)
                else:
                    list(pool.map(pairs_of, range(threads), [c] * threads))
            folded = _fold_lanes(lanes)
            for i in firsts:
                dist[i, i + 1 :] = folded[i - g0, i + 1 :]
                dist[i + 1 :, i] = folded[i - g0, i + 1 :]
    finally:
        if pool is not None:
            pool.shutdown()
    return dist


# ---------------------------------------------------------------------------------------------
# Krum and multi-Krum


def krum_scores(distances: np.ndarray, *, f: int) -> list[float]:
    """Krum score of each update: sum of its ``max(1, n - f - 2)`` smallest distances to the others."""
    n = distances.shape[0]
    if f < 0:
        raise AggregationError("f (Byzantine updates tolerated) must be >= 0")
    closest = max(1, n - f - 2)
    scores = []
    for i in range(n):
        others = sorted(distances[i, j] for j in range(n) if j != i)
        total = 0.0
        for v in others[:closest]:
            total += float(v)
        scores.append(total)
    return scores


def krum_select(
    updates: Updates, *, f: int, m: int = 1, workers: int = 1, certify: bool = True
) -> list[int]:
    """Indices of the ``m`` best Krum scores, ascending by (score, index); returned in index order.

    The selection is the one the canonical distances give. With ``certify``, a fast BLAS Gram
    matrix proposes it first and is kept only when rigorous error bounds prove it equal to the
    canonical one; otherwise (near-ties, equal updates) the canonical distances decide.
    """
    rows = _rows(updates)
    if len(rows) == 1:
        return [0]
    if not 1 <= m <= len(rows):
        raise AggregationError(f"multi-Krum needs 1 <= m <= {len(rows)}")
    if f < 0:
        raise AggregationError("f (Byzantine updates tolerated) must be >= 0")
    if certify:
        chosen = _certified_krum(rows, f=f, m=m)
        if chosen is not None:
            return chosen
    scores = krum_scores(pairwise_sq_distances(rows, workers=workers), f=f)
    ranked = sorted(range(len(rows)), key=lambda i: (scores[i], i))
    return sorted(ranked[:m])


def _certified_krum(rows: list[np.ndarray], *, f: int, m: int) -> list[int] | None:
    """The canonical Krum selection when a BLAS Gram estimate can prove it, else None."""
    gram = _gram_estimate(rows)
    return None if gram is None else _certified_selection(gram, rows[0].size, f=f, m=m)


def _gram_estimate(rows: list[np.ndarray]) -> np.ndarray | None:
    """``X X^T`` in float64 by BLAS, one thread, in column blocks; None if it is not finite.

    Its rounding depends on the machine and library: it only ever proposes, never decides.
    """
    from threadpoolctl import threadpool_limits

    n, size = len(rows), rows[0].size
    gram = np.zeros((n, n), dtype=np.float64)
    block = 1 << 15
    chunk = np.empty((n, block), dtype=np.float64)
    with threadpool_limits(limits=1, user_api="blas"):  # BLAS threads thrash on a shared machine
        for s, e in _blocks(size, block):
            part = chunk[:, : e - s]
            for j, row in enumerate(rows):
                part[j] = row[s:e]
            gram += part @ part.T
    return gram if np.isfinite(gram).all() else None


def _certified_selection(gram: np.ndarray, size: int, *, f: int, m: int) -> list[int] | None:
    """Krum's selection from a Gram estimate, kept only if no rounding can change it, else None.

    The error model is the standard one for float64 dot products of ``P = size`` terms in any order,
    blocking or FMA use: ``|error| <= gamma_P * sum|a_k b_k|`` with ``gamma_P = P u / (1 - P u)``
    (every conventional GEMM meets it; a Strassen-like fast product would not). Cauchy-Schwarz
    bounds the sum by the squared norms. The estimated and the canonical distances then both lie
    within ``~2 gamma_P (|a|^2 + |b|^2)`` of the exact one; ``err`` allows twice that. A score (a
    sum of the ``closest`` smallest distances) moves by at most ``closest`` times the largest
    distance error, plus its own summation rounding. If the worst chosen score stays below the best
    rejected one after those moves, the canonical scores rank the same way.
    """
    n = gram.shape[0]
    unit = 2.0**-53
    gamma = size * unit / (1.0 - size * unit) + 4 * unit
    diag = np.diag(gram).copy()
    norms = np.abs(diag[:, None]) + np.abs(diag[None, :])
    dist = diag[:, None] + diag[None, :] - 2.0 * gram
    err = 8.0 * gamma * norms  # bounds |estimate - canonical| (both within ~2 gamma norms of exact)
    closest = max(1, n - f - 2)
    est, tol = [], []
    for i in range(n):
        others = np.delete(np.arange(n), i)
        near = np.sort(dist[i, others])[:closest]
        est.append(float(near.sum()))
        summed = float(np.abs(near).sum())  # rounding of both score sums, even with negative estimates
        tol.append(closest * float(err[i, others].max()) + 8.0 * closest * unit * summed)
    ranked = sorted(range(n), key=lambda i: (est[i], i))
    chosen, rest = ranked[:m], ranked[m:]
    if not rest:
        return sorted(chosen)
    if max(est[i] + tol[i] for i in chosen) < min(est[i] - tol[i] for i in rest):
        return sorted(chosen)
    return None


def krum(updates: Updates, *, f: int, workers: int = 1) -> tuple[np.ndarray, int]:
    """Krum: the single update with the best score (a copy) and its index."""
    rows = _rows(updates)
    best = krum_select(rows, f=f, m=1, workers=workers)[0]
    return np.array(rows[best], dtype=np.float32, copy=True), best


def multi_krum(
    updates: Updates, num_samples: Sequence[float], *, f: int, m: int | None = None, workers: int = 1
) -> tuple[np.ndarray, list[int]]:
    """Multi-Krum: FedAvg over the ``m`` best-scored updates (default ``n - f``) and their indices."""
    rows = _rows(updates)
    count = len(rows) - f if m is None else m
    chosen = krum_select(rows, f=f, m=max(1, count), workers=workers)
    counts = list(num_samples)
    if len(counts) != len(rows):
        raise AggregationError(f"{len(rows)} updates but {len(counts)} sample counts")
    picked = [rows[i] for i in chosen]
    return weighted_sum(picked, data_shares([counts[i] for i in chosen]), workers=workers), chosen


# ---------------------------------------------------------------------------------------------
# Cosine trim: drop the updates least aligned with the coordinate-wise median


def _median_of(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) * 0.5


def cosine_trim(
    updates: Updates,
    num_samples: Sequence[float],
    *,
    f: int,
    norm_cap: float = 3.0,
    workers: int = 1,
) -> tuple[np.ndarray, list[int]]:
    """Sample-weighted mean after dropping the ``f`` updates least aligned with the coordinate median.

    Made for non-IID data, where honest updates point in many directions and distance rules
    (Krum) drop honest outliers: a sign-flipped or noise update has a low or negative cosine to
    the coordinate-wise median (robust while f < n/2) and is dropped; an update longer than
    ``norm_cap`` times the median norm (a scaled one) is shrunk to the median norm. Kept updates are
    weighted by ``n_i / N_kept`` times that shrink factor. Canonical: norms, dot products and the
    median follow the module's arithmetic; ties in cosine go to the lower index. Returns the
    aggregate and the kept indices.
    """
    rows = _rows(updates)
    _check_trim("cosine_trim", len(rows), f, norm_cap)
    counts = _sample_counts(rows, num_samples)
    norms = [math.sqrt(v) for v in sq_norms(rows).tolist()]
    reference = coordinate_median(rows, workers=workers)
    cosines = _cosines(rows, norms, reference, math.sqrt(sq_norm(reference)))
    kept = sorted(sorted(range(len(rows)), key=lambda i: (cosines[i], i))[f:])
    return _capped_mean(rows, counts, norms, kept, norm_cap, workers), kept


def _check_trim(name: str, n: int, f: int, norm_cap: float) -> None:
    if not 0 <= f < n:
        raise AggregationError(f"{name} needs 0 <= f < {n} (updates)")
    if not (math.isfinite(norm_cap) and norm_cap >= 1.0):
        raise AggregationError(f"{name} needs a finite norm_cap >= 1")


def _sample_counts(rows: list[np.ndarray], num_samples: Sequence[float]) -> list[float]:
    counts = list(num_samples)
    if len(counts) != len(rows):
        raise AggregationError(f"{len(rows)} updates but {len(counts)} sample counts")
    return counts


def _cosines(rows: list[np.ndarray], norms: list[float], reference: np.ndarray, ref_norm: float) -> list[float]:
    """Canonical cosine of every update to ``reference`` (0 where either vector is zero)."""
    return [
        d / (norm * ref_norm) if norm > 0.0 and ref_norm > 0.0 else 0.0
        for d, norm in zip(dot_products(rows, reference).tolist(), norms, strict=True)
    ]


def _capped_mean(rows: list[np.ndarray], counts: list[float], norms: list[float], kept: list[int],
                 norm_cap: float, workers: int) -> np.ndarray:
    """Sample-weighted mean of the ``kept`` rows, each longer than ``norm_cap`` times the median norm
    (over all rows) shrunk to that median."""
    typical = _median_of(norms)
    shares = data_shares([counts[i] for i in kept]).tolist()
    coefs = [
        share * (typical / norms[i] if norms[i] > norm_cap * typical else 1.0)
        for share, i in zip(shares, kept, strict=True)
    ]
    return weighted_sum([rows[i] for i in kept], coefs, workers=workers)


# ---------------------------------------------------------------------------------------------
# Trend trim: drop the updates that point against the direction training has been moving


def trend_trim(
    updates: Updates,
    num_samples: Sequence[float],
    reference: np.ndarray | None,
    *,
    f: int,
    min_cosine: float = 0.0,
    norm_cap: float = 3.0,
    workers: int = 1,
) -> tuple[np.ndarray, list[int]]:
    """Sample-weighted mean after dropping up to ``f`` updates whose cosine to ``reference`` is below ``min_cosine``.

    The reference is server state: the previous round's aggregate delta (or a momentum of it). A
    sign-flipped update points against the direction honest training has been moving, even when
    it agrees with the coordinate median; an honest update rarely does, so none is dropped just for
    ranking low (as ``cosine_trim`` must). Lowest cosines go first, ties to the lower index. The
    coordinate-wise median stands in for the reference when there is none or it is zero (the first
    round), and when more than ``f`` updates disagree with it: then the reference itself is in
    doubt (attackers steered an earlier aggregate), and the majority decides. Updates longer than
    ``norm_cap`` times the median norm are shrunk to it, as in ``cosine_trim``. Canonical like
    ``cosine_trim``. Returns the aggregate and the kept indices.
    """
    rows = _rows(updates)
    n = len(rows)
    _check_trim("trend_trim", n, f, norm_cap)
    if not -1.0 <= min_cosine <= 1.0:
        raise AggregationError("trend_trim needs -1 <= min_cosine <= 1")
    counts = _sample_counts(rows, num_samples)
    if reference is not None and (reference.dtype != np.float32 or reference.shape != rows[0].shape):
        raise AggregationError("the trend reference must be a float32 vector as long as the updates")
    norms = [math.sqrt(v) for v in sq_norms(rows).tolist()]

    def cosines_to(ref: np.ndarray) -> list[float]:
        ref_norm = math.sqrt(sq_norm(ref))
        if not math.isfinite(ref_norm):
            raise AggregationError("the trend reference is not finite")
        return _cosines(rows, norms, ref, ref_norm)

    cosines = cosines_to(reference) if reference is not None else []  # all zero: no direction to follow
    if not any(cosines) or sum(c < min_cosine for c in cosines) > f:
        cosines = cosines_to(coordinate_median(rows, workers=workers))
    lowest = sorted(range(n), key=lambda i: (cosines[i], i))[:f]
    dropped = {i for i in lowest if cosines[i] < min_cosine}
    kept = [i for i in range(n) if i not in dropped]
    return _capped_mean(rows, counts, norms, kept, norm_cap, workers), kept


# ---------------------------------------------------------------------------------------------
# Server optimizers (Reddi et al., "Adaptive Federated Optimization", ICLR 2021)


def _server_step(
    pseudo_grad: np.ndarray,
    m: np.ndarray | None,
    v: np.ndarray | None,
    *,
    eta: float,
    beta1: float,
    beta2: float,
    tau: float,
    second_moment: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    g = np.asarray(pseudo_grad, dtype=np.float64)
    m64 = np.zeros_like(g) if m is None else np.asarray(m, dtype=np.float64)
    v64 = np.full_like(g, tau * tau) if v is None else np.asarray(v, dtype=np.float64)
    if m64.shape != g.shape or v64.shape != g.shape:
        raise AggregationError("optimizer state does not match the update size")
    m_new = beta1 * m64 + (1.0 - beta1) * g
    v_new = second_moment(v64, g * g)
    step = eta * m_new / (np.sqrt(v_new) + tau)
    return step.astype(np.float32), m_new.astype(np.float32), v_new.astype(np.float32)


def adam_server_step(
    pseudo_grad: np.ndarray,
    m: np.ndarray | None,
    v: np.ndarray | None,
    *,
    eta: float,
    beta1: float,
    beta2: float,
    tau: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FedAdam: returns (step to add to the model, new m, new v); a fresh state is m = 0, v = tau²."""
    return _server_step(
        pseudo_grad, m, v, eta=eta, beta1=beta1, beta2=beta2, tau=tau,
        second_moment=lambda v64, g2: beta2 * v64 + (1.0 - beta2) * g2,
    )


def yogi_server_step(
    pseudo_grad: np.ndarray,
    m: np.ndarray | None,
    v: np.ndarray | None,
    *,
    eta: float,
    beta1: float,
    beta2: float,
    tau: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FedYogi: like FedAdam, but ``v -= (1 - beta2) * g² * sign(v - g²)`` grows v additively."""
    return _server_step(
        pseudo_grad, m, v, eta=eta, beta1=beta1, beta2=beta2, tau=tau,
        second_moment=lambda v64, g2: v64 - (1.0 - beta2) * g2 * np.sign(v64 - g2),
    )


# ---------------------------------------------------------------------------------------------
# Applying the result


def apply_aggregate(
    base: Mapping[str, np.ndarray], agg_delta: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The next model: ``base + agg_delta`` per tensor in float32 (a new dict; inputs untouched)."""
    if list(base) != list(agg_delta):
        raise AggregationError("aggregate and base model name different tensors")
    out: dict[str, np.ndarray] = {}
    for name, arr in base.items():
        d = agg_delta[name]
        if arr.shape != d.shape or arr.dtype != np.float32 or d.dtype != np.float32:
            raise AggregationError(f"{name}: base and aggregate differ in shape or are not float32")
        out[name] = np.add(arr, d, dtype=np.float32)
    return out
