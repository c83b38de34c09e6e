"""Aggregation math: hand-computed cases, Byzantine robustness, byte determinism, a slow reference."""
from __future__ import annotations

import math

import numpy as np
import pytest

from trustmesh.fl import aggregate as agg
from trustmesh.fl.aggregate import AggregationError

# ---------------------------------------------------------------------------------------------
# The slow reference: pure Python floats (IEEE double, one rounding per operation), per element.


def ref_weighted_sum(rows: list[list[float]], coefs: list[float]) -> np.ndarray:
    out = []
    for k in range(len(rows[0])):
        acc = 0.0
        for row, c in zip(rows, coefs, strict=True):
            acc = acc + row[k] * c
        out.append(acc)
    return np.array(out, dtype=np.float64).astype(np.float32)


def ref_shares(counts: list[float]) -> list[float]:
    total = 0.0
    for n in counts:
        total += n
    return [n / total for n in counts]


def ref_sqsum(values: list[float], lanes: int = agg.SQSUM_LANES) -> float:
    acc = [0.0] * lanes
    for k, x in enumerate(values):
        acc[k % lanes] = acc[k % lanes] + x * x
    total = 0.0
    for v in acc:
        total += v
    return total


def ref_order_stat(rows: list[list[float]], trim: int | None) -> np.ndarray:
    """Median (trim None) or trimmed mean, coordinate by coordinate."""
    n = len(rows)
    out = []
    for k in range(len(rows[0])):
        col = sorted(row[k] + 0.0 for row in rows)
        if trim is None:
            out.append(col[n // 2] if n % 2 else (col[n // 2 - 1] + col[n // 2]) * 0.5)
        else:
            acc = 0.0
            for v in col[trim : n - trim]:
                acc += v
            out.append(acc / (n - 2 * trim))
    return np.array(out, dtype=np.float64).astype(np.float32)


def bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


def rand_matrix(n: int, p: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((n, p)).astype(np.float32)
    m[0, :3] = [0.0, -0.0, 1e-40]  # zeros of both signs and a subnormal must survive too
    return m


# ---------------------------------------------------------------------------------------------
# Hand-computed cases


def test_fedavg_hand_computed():
    updates = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    out = agg.fedavg(updates, [1, 3])
    assert out.dtype == np.float32
    assert out.tolist() == [2.5, 3.5]


def test_perffedavg_hand_computed():
    updates = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    # data shares .25/.75, accuracy shares .8/.2 -> weights .525/.475
    w = agg.perffedavg_weights([1, 3], [0.8, 0.2], alpha=0.5)
    assert w.tolist() == pytest.approx([0.525, 0.475], abs=1e-15)
    out = agg.perffedavg(updates, [1, 3], [0.8, 0.2], alpha=0.5)
    assert out.tolist() == pytest.approx([1.95, 2.95], abs=1e-6)
    pure_acc = agg.perffedavg(updates, [1, 3], [0.8, 0.2], alpha=0.0)
    assert pure_acc.tolist() == pytest.approx([1.4, 2.4], abs=1e-6)


def test_perffedavg_alpha_one_is_fedavg_to_the_byte():
    m = rand_matrix(7, 5000, seed=3)
    counts = [10, 250, 33, 7, 1000, 5, 64]
    accs = [0.9, 0.1, 0.5, 0.7, 0.3, 0.99, 0.0]
    assert bits(agg.perffedavg(m, counts, accs, alpha=1.0)) == bits(agg.fedavg(m, counts))


def test_perffedavg_zero_accuracies_fall_back_to_data_shares():
    w = agg.perffedavg_weights([1, 3], [0.0, 0.0], alpha=0.25)
    assert w.tolist() == pytest.approx([0.25, 0.75])


def test_median_and_trimmed_mean_hand_computed():
    m = np.array([[1, 10], [2, -5], [100, 0], [3, 7], [-50, 1]], dtype=np.float32)
    assert agg.coordinate_median(m).tolist() == [2.0, 1.0]
    assert agg.coordinate_median(m[:4]).tolist() == [2.5, 3.5]
    # beta 0.2 of 5 drops one value at each end
    assert agg.trimmed_mean(m, beta=0.2).tolist() == pytest.approx([2.0, 8 / 3])


def test_krum_picks_the_update_in_the_dense_cluster():
    m = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [40, 40]], dtype=np.float32)
    d = agg.pairwise_sq_distances(m)
    assert d[0, 4] == 3200.0 and d[1, 2] == 2.0 and d[3, 3] == 0.0
    # f=1: each score sums the 2 nearest; all corners tie at 2.0, so the lowest index wins
    vec, best = agg.krum(m, f=1)
    assert best == 0 and vec.tolist() == [0.0, 0.0]
    avg, chosen = agg.multi_krum(m, [1, 1, 1, 1, 1], f=1)
    assert chosen == [0, 1, 2, 3] and avg.tolist() == [0.5, 0.5]


def test_certified_krum_shortcut_agrees_with_canonical_selection():
    rng = np.random.default_rng(21)
    certified = 0
    for _ in range(25):
        n, p = int(rng.integers(3, 14)), int(rng.integers(10, 3000))
        m = (rng.standard_normal((n, p)) * rng.random((n, 1))).astype(np.float32)
        f, keep = int(rng.integers(0, n)), int(rng.integers(1, n + 1))
        quick = agg._certified_krum(list(m), f=f, m=keep)
        certified += quick is not None
        assert quick is None or quick == agg.krum_select(m, f=f, m=keep, certify=False)
    assert certified >= 15  # the shortcut usually proves its answer
    # exact ties (two equal updates) cannot be certified: the canonical path decides
    tied = np.array([[0, 0], [0, 0], [5, 5], [9, 1]], dtype=np.float32)
    assert agg._certified_krum(list(tied), f=0, m=1) is None
    assert agg.krum_select(tied, f=0) == [0]


def test_apply_aggregate_and_stack_roundtrip():
    base = {"w": np.ones((2, 2), np.float32), "b": np.zeros(3, np.float32)}
    upd = {"w": np.full((2, 2), 0.5, np.float32), "b": np.arange(3, dtype=np.float32)}
    new = agg.apply_aggregate(base, upd)
    assert new["w"].tolist() == [[1.5, 1.5], [1.5, 1.5]] and new["b"].tolist() == [0, 1, 2]
    assert base["w"][0, 0] == 1.0
    spec = [("w", (2, 2)), ("b", (3,))]
    out = np.empty((2, 7), np.float32)
    mat = agg.stack_updates([base, upd], spec, out=out)
    assert mat is out and mat[1].tolist() == [0.5] * 4 + [0, 1, 2]
    back = agg.unstack(mat[1], spec)
    assert list(back) == ["w", "b"] and back["w"].shape == (2, 2)
    with pytest.raises(AggregationError):
        agg.stack_updates([{"w": np.ones((2, 3), np.float32), "b": base["b"]}], spec)


def test_inputs_are_checked():
    with pytest.raises(AggregationError):
        agg.fedavg([], [])
    with pytest.raises(AggregationError):
        agg.fedavg(np.ones((2, 3), np.float32), [1])
    with pytest.raises(AggregationError):
        agg.fedavg(np.ones((2, 3), np.float64), [1, 1])
    with pytest.raises(AggregationError):
        agg.fedavg(np.ones((2, 3), np.float32), [0, 0])
    with pytest.raises(AggregationError):
        agg.trimmed_mean(np.ones((2, 3), np.float32), beta=0.5)


# ---------------------------------------------------------------------------------------------
# Byzantine robustness: 2 of 10 updates scaled by 100 or sign-flipped


def _byzantine_case(attack: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    p = 2000
    mu = rng.standard_normal(p).astype(np.float32)
    honest = (mu + 0.05 * rng.standard_normal((8, p))).astype(np.float32)
    victims = honest[:2]
    bad = victims * 100.0 if attack == "scale" else -victims
    rows = np.concatenate([bad[:1], honest[:4], bad[1:], honest[4:]]).astype(np.float32)
    return rows, honest.astype(np.float64).mean(axis=0)


def _previous_aggregate(honest_mean: np.ndarray) -> np.ndarray:
    """A trend reference like last round's aggregate: the honest direction, noisy and shorter."""
    rng = np.random.default_rng(12)
    return (0.5 * honest_mean + 0.5 * rng.standard_normal(honest_mean.size)).astype(np.float32)


@pytest.mark.parametrize("attack", ["scale", "sign_flip"])
def test_robust_aggregators_stay_near_the_honest_mean(attack):
    rows, honest_mean = _byzantine_case(attack)
    limit = 0.1 * np.linalg.norm(honest_mean)
    ones = [1] * len(rows)
    results = {
        "median": agg.coordinate_median(rows),
        "trimmed_mean": agg.trimmed_mean(rows, beta=0.2),
        "krum": agg.krum(rows, f=2)[0],
        "multi_krum": agg.multi_krum(rows, ones, f=2)[0],
        "cosine_trim": agg.cosine_trim(rows, ones, f=2)[0],
        "trend_trim (first round)": agg.trend_trim(rows, ones, None, f=2)[0],
        "trend_trim": agg.trend_trim(rows, ones, _previous_aggregate(honest_mean), f=2)[0],
    }
    for name, vec in results.items():
        err = np.linalg.norm(vec.astype(np.float64) - honest_mean)
        assert err <= limit, f"{name} under {attack}: {err:.3f} > {limit:.3f}"
    fedavg_err = np.linalg.norm(agg.fedavg(rows, ones).astype(np.float64) - honest_mean)
    assert fedavg_err > limit


# ---------------------------------------------------------------------------------------------
# Canonical arithmetic: equal to the slow reference, and byte-stable


def test_weighted_sum_matches_slow_reference_across_blocks(monkeypatch):
    m = rand_matrix(6, 1500, seed=5)
    counts = [3, 1, 4, 1, 5, 9]
    shares = ref_shares([float(c) for c in counts])
    assert agg.data_shares(counts).tolist() == shares
    expected = ref_weighted_sum(m.tolist(), shares)
    assert bits(agg.fedavg(m, counts)) == bits(expected)
    monkeypatch.setattr(agg, "_SUM_BLOCK", 7)  # many small column blocks, a ragged last one
    monkeypatch.setattr(agg, "_MIN_VALUES_PER_THREAD", 1)
    assert bits(agg.fedavg(m, counts)) == bits(expected)
    assert bits(agg.fedavg(m, counts, workers=2)) == bits(expected)


def test_order_statistics_match_slow_reference(monkeypatch):
    m = rand_matrix(7, 900, seed=6)
    m[3, 10] = m[4, 10] = m[5, 10]  # ties
    monkeypatch.setattr(agg, "_SORT_BLOCK", 64)
    rows = m.tolist()
    assert bits(agg.coordinate_median(m)) == bits(ref_order_stat(rows, None))
    assert bits(agg.coordinate_median(m[:6])) == bits(ref_order_stat(rows[:6], None))
    assert bits(agg.trimmed_mean(m, beta=0.3)) == bits(ref_order_stat(rows, 2))


def test_median_never_returns_negative_zero():
    m = np.array([[-0.0], [0.0], [-0.0]], dtype=np.float32)
    assert bits(agg.coordinate_median(m)) == bits(np.zeros(1, np.float32))


@pytest.mark.parametrize("size", [3, 5, agg.SQSUM_LANES, agg.SQSUM_LANES + 1, 3 * agg.SQSUM_LANES - 7, 199210])
def test_one_vector_norm_is_the_batched_norm(size):
    v = rand_matrix(1, size, seed=size)[0]
    assert agg.sq_norm(v) == agg.sq_norms([v])[0]
    if size < 5000:
        assert agg.sq_norm(v) == ref_sqsum(v.tolist())
    v[size // 2] = np.inf
    assert agg.sq_norm(v) == np.inf
    v[0] = np.nan
    assert np.isnan(agg.sq_norm(v))


def test_sq_sums_match_slow_reference(monkeypatch):
    m = rand_matrix(4, 2 * agg.SQSUM_LANES + 77, seed=7)
    rows = m.tolist()
    assert agg.sq_norm(m[1]) == ref_sqsum(rows[1])
    d = agg.pairwise_sq_distances(m)
    for i in range(4):
        for j in range(4):
            diff = [a - b for a, b in zip(rows[i], rows[j], strict=True)]
            assert d[i, j] == (0.0 if i == j else ref_sqsum(diff))
    # batched norms: the same float per row, few rows or many, matrix or separate rows
    many = rand_matrix(11, 1500, seed=12)
    per_row = [agg.sq_norm(r) for r in many]
    assert per_row[3] == ref_sqsum(many[3].tolist())
    assert agg.sq_norms(many).tolist() == per_row
    assert agg.sq_norms([r.copy() for r in many[:3]]).tolist() == per_row[:3]
    # lanes held for one first index at a time (several passes), on two threads: the same bytes
    monkeypatch.setattr(agg, "_DIST_LANE_BYTES", 4 * agg.SQSUM_LANES * 8)
    monkeypatch.setattr(agg, "_MIN_VALUES_PER_THREAD", 1)
    assert bits(agg.pairwise_sq_distances(m, workers=2)) == bits(d)


def test_server_steps_match_slow_reference():
    g1 = np.array([0.5, -0.25, 0.0, 3.0], np.float32)
    g2 = np.array([-0.5, 1.0, 1e-3, 3.0], np.float32)
    eta, b1, b2, tau = 0.01, 0.9, 0.99, 1e-3

    def ref(step_kind: str) -> list[list[float]]:
        m = [0.0] * 4
        v = [tau * tau] * 4
        steps = []
        for g in (g1.tolist(), g2.tolist()):
            for k in range(4):
                m[k] = b1 * m[k] + (1.0 - b1) * g[k]
                g2k = g[k] * g[k]
                if step_kind == "adam":
                    v[k] = b2 * v[k] + (1.0 - b2) * g2k
                else:
                    v[k] = v[k] - (1.0 - b2) * g2k * math.copysign(1.0, v[k] - g2k) * (v[k] != g2k)
            steps.append([eta * m[k] / (math.sqrt(v[k]) + tau) for k in range(4)])
            m = [float(np.float32(x)) for x in m]  # the state is stored as float32
            v = [float(np.float32(x)) for x in v]
        return steps

    for kind, fn in (("adam", agg.adam_server_step), ("yogi", agg.yogi_server_step)):
        s1, m1, v1 = fn(g1, None, None, eta=eta, beta1=b1, beta2=b2, tau=tau)
        s2, _, _ = fn(g2, m1, v1, eta=eta, beta1=b1, beta2=b2, tau=tau)
        expected = ref(kind)
        assert bits(s1) == bits(np.array(expected[0]).astype(np.float32)), kind
        assert bits(s2) == bits(np.array(expected[1]).astype(np.float32)), kind


def _all_outputs(m, workers: int = 1) -> list[bytes]:
    """Every canonical output for one input, as bytes."""
    n = len(m) if isinstance(m, list) else m.shape[0]
    counts = list(range(1, n + 1))
    accs = [0.1 * (i % 10) for i in range(n)]
    step = agg.adam_server_step(agg.fedavg(m, counts), None, None, eta=0.01, beta1=0.9, beta2=0.99, tau=1e-3)
    return [
        bits(agg.fedavg(m, counts, workers=workers)),
        bits(agg.perffedavg(m, counts, accs, alpha=0.3, workers=workers)),
        bits(agg.coordinate_median(m, workers=workers)),
        bits(agg.trimmed_mean(m, beta=0.1, workers=workers)),
        bits(agg.pairwise_sq_distances(m, workers=workers)),
        bits(agg.multi_krum(m, counts, f=2, workers=workers)[0]),
        bits(agg.cosine_trim(m, counts, f=2, norm_cap=1.0, workers=workers)[0]),
        bits(agg.trend_trim(m, counts, m[3], f=2, min_cosine=0.005, norm_cap=1.0, workers=workers)[0]),
        bits(agg.trend_trim(m, counts, None, f=3, min_cosine=0.5, workers=workers)[0]),
        bits(agg.dot_products(m, np.ascontiguousarray(m[1]))),
        bits(step[0]),
    ]


def test_identical_bytes_run_twice_and_in_other_layouts(monkeypatch):
    m = rand_matrix(12, 40_000, seed=8)
    expected = _all_outputs(m)
    assert _all_outputs(m) == expected
    assert _all_outputs(np.asfortranarray(m)) == expected
    wide = np.zeros((12, 80_000), np.float32)
    wide[:, ::2] = m
    assert _all_outputs(wide[:, ::2]) == expected  # a strided, non-contiguous view
    assert _all_outputs([row.copy() for row in m]) == expected  # separate rows
    monkeypatch.setattr(agg, "_MIN_VALUES_PER_THREAD", 1)  # threads even for this small input
    assert _all_outputs(m, workers=2) == expected


def test_identical_bytes_with_one_or_two_threads():
    torch = pytest.importorskip("torch")
    threadpoolctl = pytest.importorskip("threadpoolctl")
    m = rand_matrix(10, 30_000, seed=9)
    before = torch.get_num_threads()
    outputs = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            with threadpoolctl.threadpool_limits(limits=threads):
                outputs.append(_all_outputs(m))
    finally:
        torch.set_num_threads(before)
    assert outputs[0] == outputs[1]


def _pinned_input() -> np.ndarray:
    """12 x 70,001 float32 values made with exact integer and power-of-two arithmetic only."""
    k = np.arange(12 * 70_001, dtype=np.int64)
    v = ((k * 2654435761) % 1000003).astype(np.float64) / 1000003.0 - 0.5
    m = np.ldexp(v, (k % 17) - 8).astype(np.float32).reshape(12, 70_001)
    m[0, :4] = [0.0, -0.0, 1e-40, -1e-42]
    m[:, 5] = -0.0
    return m


def test_canonical_bytes_are_pinned(monkeypatch):
    """Faster kernels must not move a byte: these hashes were taken before any speed-up."""
    import hashlib

    m = _pinned_input()
    counts = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8]
    pinned = {
        "fedavg": "322a5ef9c6a1e70aea7f79e878299d3a62ccafee664491120dc63d10ea93baa1",
        "perffedavg": "4c5667021457b6bf0bb2efa690c1cf885243cce5cdef0a1c10ab0e92879cec4d",
        "multi_krum": "0f94184ec48771df85e80b97322f7450d699eeb3d5f3e3ab8216d686a86fbd69",
        "trend_trim": "c89b840af383d4f96eb159e4d74b53484f63f3e26d2123129a58d3aa6b7f5269",  # pinned at its start
    }

    def digests(workers: int) -> dict[str, str]:
        outs = {
            "fedavg": agg.fedavg(m, counts, workers=workers),
            "perffedavg": agg.perffedavg(m, counts, [0.1 * i for i in range(12)], alpha=0.3, workers=workers),
            "multi_krum": agg.multi_krum(m, counts, f=2, workers=workers)[0],
            "trend_trim": agg.trend_trim(m, counts, m[1].copy(), f=3, min_cosine=0.01, norm_cap=1.5,
                                         workers=workers)[0],
        }
        return {name: hashlib.sha256(out.tobytes()).hexdigest() for name, out in outs.items()}

    assert digests(1) == pinned
    monkeypatch.setattr(agg, "_SUM_BLOCK", 1000)  # ragged blocks, several per thread
    monkeypatch.setattr(agg, "_MIN_VALUES_PER_THREAD", 1)
    assert digests(2) == pinned


# ---------------------------------------------------------------------------------------------
# Krum's certified selection: sound under any BLAS rounding the error model allows


def _exact_gram(m: np.ndarray) -> tuple[list[list[object]], list[list[object]]]:
    """The exact Gram matrix and the exact ``sum_k |a_k b_k|`` of float32 rows (as Fractions)."""
    from fractions import Fraction

    rows = [[Fraction(float(x)) for x in row] for row in m]
    gram = [[sum((a * b for a, b in zip(r, s, strict=True)), Fraction(0)) for s in rows] for r in rows]
    absd = [[sum((abs(a * b) for a, b in zip(r, s, strict=True)), Fraction(0)) for s in rows] for r in rows]
    return gram, absd


def _near_ties(rng: np.random.Generator, n: int, p: int) -> np.ndarray:
    """``n`` updates a few float32 ulps apart, far from the origin: Gram cancellation makes near-ties."""
    base = rng.uniform(0.5, 1.0, p).astype(np.float32)
    spacing = float(2 ** int(rng.integers(-24, -14)))
    offsets = rng.integers(-6, 7, size=(n, p)).astype(np.float64) * spacing
    return (base.astype(np.float64) + offsets).astype(np.float32)


def test_certified_krum_is_sound_under_any_blas_rounding_within_the_error_model():
    """Another machine's BLAS may round each Gram entry anywhere within gamma_P * sum|a_k b_k|.

    Whatever it proposes, the shortcut either proves the canonical selection or steps aside.
    """
    rng = np.random.default_rng(4)
    p = 16
    unit = 2.0**-53
    gamma = p * unit / (1.0 - p * unit)
    certified = declined = 0
    for _ in range(60):
        n = int(rng.integers(4, 8))
        m = _near_ties(rng, n, p)
        f, keep = int(rng.integers(0, n - 2)), int(rng.integers(1, n))
        canonical = agg.krum_select(m, f=f, m=keep, certify=False)
        exact, absd = _exact_gram(m)
        for _ in range(4):
            signs = rng.choice([-1.0, 1.0], size=(n, n))
            signs = np.triu(signs) + np.triu(signs, 1).T  # a GEMM of a symmetric product stays symmetric
            blas = np.array([[float(exact[i][j] + signs[i, j] * 0.9 * gamma * absd[i][j])  # type: ignore[operator]
                              for j in range(n)] for i in range(n)])
            proposal = agg._certified_selection(blas, p, f=f, m=keep)
            if proposal is None:
                declined += 1
            else:
                certified += 1
                assert proposal == canonical
    assert certified > 20 and declined > 20  # both the proof and the canonical fallback are exercised


def test_krum_near_ties_fall_back_to_the_canonical_selection():
    rng = np.random.default_rng(5)
    fell_back = 0
    for _ in range(30):
        m = _near_ties(rng, 6, 16)
        fell_back += agg._certified_krum(list(m), f=1, m=1) is None
        for keep in (1, 3):
            assert agg.krum_select(m, f=1, m=keep) == agg.krum_select(m, f=1, m=keep, certify=False)
    assert fell_back > 0


# ---------------------------------------------------------------------------------------------
# Cosine trim


def ref_dot(a: list[float], b: list[float], lanes: int = agg.SQSUM_LANES) -> float:
    acc = [0.0] * lanes
    for k, (x, y) in enumerate(zip(a, b, strict=True)):
        acc[k % lanes] = acc[k % lanes] + x * y
    total = 0.0
    for v in acc:
        total += v
    return total


def test_dot_products_match_slow_reference():
    m = rand_matrix(5, 2 * agg.SQSUM_LANES + 301, seed=13)
    ref = rand_matrix(1, m.shape[1], seed=14)[0]
    expected = [ref_dot(row, ref.tolist()) for row in m.tolist()]
    assert agg.dot_products(m, ref).tolist() == expected
    assert agg.dot_products([r.copy() for r in m], ref).tolist() == expected
    assert agg.dot_products(m, m[2])[2] == agg.sq_norm(m[2])
    with pytest.raises(AggregationError):
        agg.dot_products(m, ref.astype(np.float64))


def test_cosine_trim_matches_a_slow_reference():
    """Drop the f least aligned with the coordinate median, shrink overlong ones, weight by samples."""
    rng = np.random.default_rng(15)
    mu = rng.standard_normal(300)
    m = (mu + 0.8 * rng.standard_normal((7, 300))).astype(np.float32)
    m[2] = -m[2]  # sign-flipped: least aligned
    m[5] = m[5] * np.float32(50.0)  # scaled: aligned, but shrunk to the median norm
    counts = [10, 20, 30, 40, 50, 60, 70]
    out, kept = agg.cosine_trim(m, counts, f=2, norm_cap=3.0)

    rows = m.tolist()
    norms = [math.sqrt(ref_sqsum(r)) for r in rows]
    median = ref_order_stat(rows, None)
    med_norm = math.sqrt(ref_sqsum(median.tolist()))
    cos = [ref_dot(r, median.tolist()) / (nr * med_norm) for r, nr in zip(rows, norms, strict=True)]
    expect_kept = sorted(sorted(range(7), key=lambda i: (cos[i], i))[2:])
    assert kept == expect_kept and 2 not in kept and 5 in kept
    typical = sorted(norms)[3]
    shares = ref_shares([float(counts[i]) for i in kept])
    coefs = [s * (typical / norms[i] if norms[i] > 3.0 * typical else 1.0) for s, i in zip(shares, kept, strict=True)]
    assert coefs[kept.index(5)] < shares[kept.index(5)]
    assert bits(out) == bits(ref_weighted_sum([rows[i] for i in kept], coefs))


def test_cosine_trim_checks_its_settings():
    m = rand_matrix(4, 10, seed=16)
    with pytest.raises(AggregationError):
        agg.cosine_trim(m, [1, 1, 1, 1], f=4)
    with pytest.raises(AggregationError):
        agg.cosine_trim(m, [1, 1, 1, 1], f=1, norm_cap=0.5)
    with pytest.raises(AggregationError):
        agg.cosine_trim(m, [1, 1, 1], f=1)
    out, kept = agg.cosine_trim(np.zeros((3, 4), np.float32), [1, 2, 3], f=1)  # all zero: no division by 0
    assert kept == [1, 2] and not out.any()


def _trend_case(flipped: list[int]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    rng = np.random.default_rng(17)
    mu = rng.standard_normal(2 * agg.SQSUM_LANES + 77)
    m = (mu + 0.8 * rng.standard_normal((8, mu.size))).astype(np.float32)
    for i in flipped:
        m[i] = -m[i]  # sign-flipped: against the trend
    m[5] = m[5] * np.float32(50.0)  # scaled: along the trend, but shrunk to the median norm
    trend = (mu + 0.5 * rng.standard_normal(mu.size)).astype(np.float32)
    return m, trend, [10, 20, 30, 40, 50, 60, 70, 80]


def ref_trend_trim(m: np.ndarray, counts: list[int], reference: list[float], *, f: int, min_cosine: float,
                   norm_cap: float) -> tuple[np.ndarray, list[int]]:
    """Slow trend trim on a given reference (no median fallback): pure Python floats."""
    rows = m.tolist()
    norms = [math.sqrt(ref_sqsum(r)) for r in rows]
    ref_norm = math.sqrt(ref_sqsum(reference))
    cos = [ref_dot(r, reference) / (nr * ref_norm) for r, nr in zip(rows, norms, strict=True)]
    lowest = sorted(range(len(rows)), key=lambda i: (cos[i], i))[:f]
    kept = [i for i in range(len(rows)) if not (i in lowest and cos[i] < min_cosine)]
    typical = sorted(norms)[len(norms) // 2 - 1 : len(norms) // 2 + 1]
    median_norm = (typical[0] + typical[1]) * 0.5
    shares = ref_shares([float(counts[i]) for i in kept])
    coefs = [s * (median_norm / norms[i] if norms[i] > norm_cap * median_norm else 1.0)
             for s, i in zip(shares, kept, strict=True)]
    return ref_weighted_sum([rows[i] for i in kept], coefs), kept


def test_trend_trim_matches_a_slow_reference():
    """Drop the updates pointing against the trend (at most f of them); shrink overlong ones."""
    m, trend, counts = _trend_case(flipped=[1, 6])
    for f, min_cosine, expect_kept in ((3, 0.0, [0, 2, 3, 4, 5, 7]),  # no honest update dropped
                                       (2, 0.0, [0, 2, 3, 4, 5, 7]),  # exactly f disagree: trusted
                                       (4, 0.7, [0, 2, 4, 5])):  # a raised bar: honest 3 (0.698), 7 (0.68)
        out, kept = agg.trend_trim(m, counts, trend, f=f, min_cosine=min_cosine, norm_cap=3.0)
        expected, ref_kept = ref_trend_trim(m, counts, trend.tolist(), f=f, min_cosine=min_cosine, norm_cap=3.0)
        assert kept == ref_kept == expect_kept
        assert bits(out) == bits(expected)


def test_trend_trim_lets_the_median_decide_without_a_trusted_trend():
    """No reference, a zero one, or more than f updates disagreeing with it: the coordinate median decides."""
    m, trend, counts = _trend_case(flipped=[1, 6])
    median = agg.coordinate_median(m)
    for f in (1, 3):
        on_median = agg.trend_trim(m, counts, median, f=f)
        slow, _ = ref_trend_trim(m, counts, median.tolist(), f=f, min_cosine=0.0, norm_cap=3.0)
        assert bits(on_median[0]) == bits(slow)
        for reference in (None, np.zeros_like(trend), -trend):  # -trend: six of eight disagree
            out, kept = agg.trend_trim(m, counts, reference, f=f)
            assert kept == on_median[1] and bits(out) == bits(on_median[0])
    # two disagree with the trend but f = 1: in doubt, so the median ranks; it drops only the lowest
    out, kept = agg.trend_trim(m, counts, trend, f=1)
    assert len(kept) == 7 and bits(out) == bits(agg.trend_trim(m, counts, None, f=1)[0])


def test_trend_trim_checks_its_settings():
    m, trend, counts = _trend_case(flipped=[])
    with pytest.raises(AggregationError):
        agg.trend_trim(m, counts, trend, f=8)
    with pytest.raises(AggregationError):
        agg.trend_trim(m, counts, trend, f=1, norm_cap=0.5)
    with pytest.raises(AggregationError):
        agg.trend_trim(m, counts, trend, f=1, min_cosine=1.5)
    with pytest.raises(AggregationError):
        agg.trend_trim(m, counts[:3], trend, f=1)
    with pytest.raises(AggregationError):
        agg.trend_trim(m, counts, trend.astype(np.float64), f=1)
    with pytest.raises(AggregationError):
        agg.trend_trim(m, counts, trend[:-1], f=1)
    inf = trend.copy()
    inf[3] = np.inf
    with pytest.raises(AggregationError):
        agg.trend_trim(m, counts, inf, f=1)
    zeros = np.zeros((3, 4), np.float32)
    out, kept = agg.trend_trim(zeros, [1, 2, 3], np.ones(4, np.float32), f=1)  # no division by 0
    assert kept == [0, 1, 2] and not out.any()
