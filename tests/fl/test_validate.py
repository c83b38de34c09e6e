"""Update validation: each reason code, the canonical norm, and screening a round's submissions."""
from __future__ import annotations

import math

import numpy as np
import pytest

from trustmesh.fl.aggregate import AggregationError
from trustmesh.fl.validate import (
    EXCLUSION_REASONS,
    check_rows,
    check_update,
    check_vector,
    screen_submissions,
    update_norm,
)

SPEC = [("w", (3, 4)), ("b", (4,))]


def good(value: float = 0.1) -> dict[str, np.ndarray]:
    return {"w": np.full((3, 4), value, np.float32), "b": np.full(4, value, np.float32)}


def test_reason_codes_are_exactly_the_documented_ones():
    assert set(EXCLUSION_REASONS) == {
        "wrong_shape", "non_finite", "norm_bound", "hash_mismatch", "blob_unavailable", "duplicate"
    }


def test_a_good_update_passes_and_fills_out():
    out = np.empty(16, np.float32)
    assert check_update(good(), SPEC, norm_bound=10.0, out=out) is None
    assert out.tolist() == pytest.approx([0.1] * 16)
    assert check_update(good(), dict(SPEC), norm_bound=None) is None


@pytest.mark.parametrize(
    "update",
    [
        {"w": np.zeros((4, 3), np.float32), "b": np.zeros(4, np.float32)},  # transposed
        {"b": np.zeros(4, np.float32), "w": np.zeros((3, 4), np.float32)},  # order
        {"w": np.zeros((3, 4), np.float32)},  # missing tensor
        {"w": np.zeros((3, 4), np.float32), "b": np.zeros(4, np.float32), "x": np.zeros(1, np.float32)},
        {"w": np.zeros((3, 4), np.float64), "b": np.zeros(4, np.float32)},  # dtype
    ],
)
def test_wrong_shape(update):
    assert check_update(update, SPEC, norm_bound=None) == "wrong_shape"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite(bad):
    update = good()
    update["b"][2] = bad
    assert check_update(update, SPEC, norm_bound=None) == "non_finite"
    assert check_update(update, SPEC, norm_bound=1e-9) == "non_finite"  # reported before the norm


def test_norm_bound():
    update = good(1.0)  # 16 ones: norm 4
    assert update_norm(update) == 4.0
    assert check_update(update, SPEC, norm_bound=4.0) is None
    assert check_update(update, SPEC, norm_bound=3.999) == "norm_bound"
    huge = np.full(8, 3e38, np.float32)  # finite values whose squares would overflow float32
    assert check_vector(huge, norm_bound=None) is None
    assert math.isclose(update_norm(huge), 3e38 * math.sqrt(8), rel_tol=1e-6)


def test_screen_submissions_splits_and_sorts_by_signer():
    entries = [
        ("cc", good(), None),
        ("aa", good(), None),
        ("bb", None, "hash_mismatch"),
        ("dd", good(100.0), None),
        ("ee", None, "blob_unavailable"),
        ("ff", {"w": np.zeros(12, np.float32), "b": np.zeros(4, np.float32)}, None),
    ]
    result = screen_submissions(entries, spec=SPEC, norm_bound=10.0)
    assert result.signers == ["aa", "cc"]
    assert result.excluded == {
        "bb": "hash_mismatch", "dd": "norm_bound", "ee": "blob_unavailable", "ff": "wrong_shape"
    }
    # without a spec, only the caller's reasons exclude
    assert screen_submissions(entries[:4]).signers == ["aa", "cc", "dd"]


def test_screen_submissions_rejects_bad_entries():
    with pytest.raises(AggregationError):
        screen_submissions([("aa", good(), None), ("aa", good(), None)])
    with pytest.raises(AggregationError):
        screen_submissions([("aa", None, None)])
    with pytest.raises(AggregationError):
        screen_submissions([("aa", None, "bogus")])


def test_check_rows_agrees_with_check_vector():
    rng = np.random.default_rng(4)
    m = rng.standard_normal((12, 3000)).astype(np.float32)
    m[2, 5] = np.nan
    m[7] *= 100
    m[9, 0] = np.inf
    verdicts = check_rows(m, norm_bound=200.0)
    assert verdicts == [check_vector(row, norm_bound=200.0) for row in m]
    assert verdicts[2] == "non_finite" and verdicts[9] == "non_finite" and verdicts[7] == "norm_bound"
    assert verdicts.count(None) == 9
