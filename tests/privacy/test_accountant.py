"""Accounting: the library's epsilon for known parameters, and a monotone round cap."""
from __future__ import annotations

import dp_accounting
import pytest
from dp_accounting import rdp

from trustmesh.privacy.accountant import epsilon_after, privacy_record, rounds_allowed
from trustmesh.privacy.errors import PrivacyConfigError


def test_known_epsilon_for_poisson_subsampled_gaussian():
    eps = epsilon_after(100, noise_multiplier=1.0, sampling_rate=0.1, delta=1e-5)
    assert eps == pytest.approx(7.90, abs=0.01)


def test_matches_the_library_called_directly_with_full_participation():
    accountant = rdp.RdpAccountant()
    accountant.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(2.0), 20))
    assert epsilon_after(20, noise_multiplier=2.0, sampling_rate=1.0, delta=1e-5) == pytest.approx(
        accountant.get_epsilon(1e-5))


def test_no_rounds_no_cost_and_no_noise_no_rounds():
    assert epsilon_after(0, noise_multiplier=1.0, sampling_rate=1.0, delta=1e-5) == 0.0
    assert rounds_allowed(8.0, 1e-5, 0.0, 1.0, 50) == 0


def test_rounds_allowed_is_the_largest_count_within_budget():
    cap = rounds_allowed(8.0, 1e-5, 1.0, 0.1, 150)
    assert epsilon_after(cap, noise_multiplier=1.0, sampling_rate=0.1, delta=1e-5) <= 8.0
    assert epsilon_after(cap + 1, noise_multiplier=1.0, sampling_rate=0.1, delta=1e-5) > 8.0
    assert rounds_allowed(8.0, 1e-5, 1.0, 0.1, 20) == 20  # capped by the workflow's rounds


def test_rounds_allowed_is_monotone():
    budgets = [1.0, 2.0, 4.0, 8.0, 16.0]
    caps = [rounds_allowed(eps, 1e-5, 1.5, 1.0, 500) for eps in budgets]
    assert caps == sorted(caps) and caps[0] < caps[-1]
    noises = [0.8, 1.2, 2.0, 4.0]
    by_noise = [rounds_allowed(4.0, 1e-5, z, 1.0, 500) for z in noises]
    assert by_noise == sorted(by_noise) and by_noise[0] < by_noise[-1]


def test_bad_parameters_are_config_errors():
    with pytest.raises(PrivacyConfigError):
        epsilon_after(10, noise_multiplier=1.0, sampling_rate=0.0, delta=1e-5)
    with pytest.raises(PrivacyConfigError):
        rounds_allowed(-1.0, 1e-5, 1.0, 1.0, 10)


def test_privacy_record_for_the_audit_trail():
    record = privacy_record(3, "client-dp-gaussian", 1.0, 1.1, 2.5, 5.5, delta=1e-5)
    assert record["round"] == 3 and record["noise_multiplier"] == 1.1
    assert record["epsilon_spent"] + record["epsilon_remaining"] == pytest.approx(8.0)
    assert record["accountant"].startswith("rdp/dp-accounting")
