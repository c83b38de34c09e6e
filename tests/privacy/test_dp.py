"""Client-level distributed DP: clipping, noise calibration, once-per-round, and the dropout consequence."""
from __future__ import annotations

import math

import numpy as np
import pytest

from trustmesh.privacy.dp import (
    DistributedNoise,
    RoundPrivatizer,
    add_gaussian_noise,
    clip_delta,
    l2_norm,
    weighted_noise_multiplier,
)
from trustmesh.privacy.errors import PrivacyAlreadyApplied, PrivacyConfigError


def _delta(scale: float = 1.0, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"fc1.weight": (rng.normal(size=(20, 8)) * scale).astype(np.float32),
            "fc1.bias": (rng.normal(size=20) * scale).astype(np.float32)}


def test_clip_scales_the_whole_delta_to_the_bound_and_reports_the_norm():
    delta = _delta(scale=3.0)
    norm = l2_norm(delta)
    clipped, original = clip_delta(delta, 1.5)
    assert original == pytest.approx(norm)
    assert l2_norm(clipped) == pytest.approx(1.5, rel=1e-5)
    assert l2_norm(clipped) <= 1.5
    # the direction is kept: every tensor shrinks by the same factor
    for name in delta:
        np.testing.assert_allclose(clipped[name], delta[name] * (1.5 / norm), rtol=1e-5, atol=1e-7)


def test_clip_leaves_a_small_delta_unchanged():
    delta = _delta(scale=0.001)
    clipped, original = clip_delta(delta, 10.0)
    assert original < 10.0
    for name in delta:
        np.testing.assert_array_equal(clipped[name], delta[name])


def test_clip_rejects_a_bad_bound():
    with pytest.raises(PrivacyConfigError):
        clip_delta(_delta(), 0.0)


def test_noise_std_is_calibrated():
    zeros = {"w": np.zeros((400, 500), dtype=np.float32)}
    noisy = add_gaussian_noise(zeros, 0.3, np.random.default_rng(7))
    assert noisy["w"].dtype == np.float32
    assert float(np.std(noisy["w"])) == pytest.approx(0.3, rel=0.01)
    assert abs(float(np.mean(noisy["w"]))) < 0.003


def test_participant_shares_add_up_to_z_times_c_when_all_submit():
    plan = DistributedNoise(noise_multiplier=1.1, clip=0.5, expected_nodes=8, min_nodes=5)
    assert plan.participant_std == pytest.approx(1.1 * 0.5 / math.sqrt(8))
    assert plan.sum_std(8) == pytest.approx(1.1 * 0.5)
    # empirically: the sum of 8 participants' noise has std z*C
    rng = np.random.default_rng(3)
    zeros = {"w": np.zeros(40_000, dtype=np.float32)}
    total = sum(add_gaussian_noise(zeros, plan.participant_std, rng)["w"].astype(np.float64) for _ in range(8))
    assert float(np.std(total)) == pytest.approx(1.1 * 0.5, rel=0.02)


def test_dropouts_leave_less_noise_so_accounting_uses_the_minimum_quorum():
    plan = DistributedNoise(noise_multiplier=1.0, clip=1.0, expected_nodes=10, min_nodes=4)
    assert plan.sum_std(4) < plan.sum_std(10)
    assert plan.accounting_noise_multiplier == pytest.approx(math.sqrt(4 / 10))
    safe = DistributedNoise(noise_multiplier=1.0, clip=1.0, expected_nodes=10, min_nodes=4,
                            calibrate_to="min_nodes")
    assert safe.accounting_noise_multiplier == pytest.approx(1.0)
    assert safe.sum_std(10) == pytest.approx(math.sqrt(10 / 4))


def test_privatizer_applies_clip_and_noise_exactly_once_per_round():
    plan = DistributedNoise(noise_multiplier=1.0, clip=1.0, expected_nodes=4, min_nodes=2)
    privatizer = RoundPrivatizer(noise=plan, rng=np.random.default_rng(0))
    delta = _delta(scale=5.0)
    first = privatizer.privatize(3, delta)
    assert first.clipped and first.noise_std == pytest.approx(0.5)
    with pytest.raises(PrivacyAlreadyApplied):
        privatizer.privatize(3, delta)
    with pytest.raises(PrivacyAlreadyApplied):
        privatizer.privatize(3, first.params)
    assert privatizer.applied(3) is first
    assert privatizer.privatize(4, delta).round == 4


def test_sample_weighting_weakens_the_guarantee():
    assert weighted_noise_multiplier([0.25] * 4, 1.0) == pytest.approx(1.0)
    skewed = weighted_noise_multiplier([0.7, 0.1, 0.1, 0.1], 1.0)
    assert skewed < 0.6


def test_plan_rejects_a_quorum_above_the_expected_nodes():
    with pytest.raises(PrivacyConfigError):
        DistributedNoise(noise_multiplier=1.0, clip=1.0, expected_nodes=3, min_nodes=5)


def test_noise_keeps_the_parameter_order_the_codec_expects() -> None:
    import numpy as np

    from trustmesh.privacy.dp import add_gaussian_noise

    params = {"z.weight": np.zeros(3, np.float32), "a.bias": np.zeros(2, np.float32)}
    noisy = add_gaussian_noise(params, 0.1, np.random.default_rng(0))
    assert list(noisy) == ["z.weight", "a.bias"]
