"""bench/dp.py: each budget becomes the noise multiplier that spends exactly it, accounted as participants do."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import dp  # noqa: E402

from trustmesh.privacy.accountant import epsilon_after  # noqa: E402
from trustmesh.privacy.errors import PrivacyAlreadyApplied  # noqa: E402


def test_client_level_accounting_is_one_full_participation_step_a_round():
    assert dp.accounting("client10", 10, 20) == (1.0, 20)
    assert dp.accounting("client100", 100, 20) == (1.0, 20)


def test_dpsgd_accounting_counts_every_batch_of_every_round():
    rate, steps = dp.accounting("dpsgd10", 10, 20)
    assert rate == pytest.approx(32 / 400)
    assert steps == 20 * 13  # ceil(400 / 32) Poisson batches a local epoch


def test_noise_multiplier_spends_the_budget():
    target = 8.0
    z = dp.noise_for(target, sampling_rate=1.0, steps=20)
    spent = epsilon_after(20, noise_multiplier=z, sampling_rate=1.0, delta=dp.DELTA)
    assert spent == pytest.approx(target, rel=1e-3)
    # a smaller budget needs more noise
    assert dp.noise_for(target / 2, sampling_rate=1.0, steps=20) > z


def test_plan_has_one_baseline_per_participant_count_and_every_budget():
    args = argparse.Namespace(mechanisms=["client10", "client100"], rounds=3, budgets=[4.0, 16.0],
                              clip=dp.DEFAULT_CLIP, seed=0)
    runs = dp.plan(args)
    baselines = sorted(r.participants for r in runs if r.epsilon is None)
    assert baselines == [10, 100]
    assert sorted((r.mechanism, r.epsilon) for r in runs if r.epsilon is not None) == [
        (m, e) for m in sorted(args.mechanisms) for e in args.budgets]
    assert runs[0].participants == 100  # the slowest go first


def test_client_level_submissions_are_clipped_and_noised_once_a_round():
    run = dp.Run(mechanism="client10", participants=2, rounds=1, epsilon=8.0, noise_multiplier=1.0, clip=0.5)
    submit = dp._privatized(run)
    update = {"w": np.full((10, 10), 1.0, dtype=np.float32)}
    first = submit(1, 0, update)["w"]
    assert not np.allclose(first, first.flat[0])  # noise was added
    # noise std z*C/sqrt(n) around the clipped delta (norm C spread evenly: 0.05 a coordinate)
    assert abs(float(first.mean()) - 0.05) < 4 * 0.5 / np.sqrt(2) / 10
    with pytest.raises(PrivacyAlreadyApplied):
        submit(1, 0, update)
    submit(1, 1, update)  # another participant's own privatizer
