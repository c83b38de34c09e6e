"""Sample-level DP-SGD through Opacus: trains in place, counts its steps, accounts them, runs once."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from trustmesh.privacy.accountant import epsilon_after, rounds_allowed
from trustmesh.privacy.dpsgd import make_private_trainer
from trustmesh.privacy.errors import PrivacyAlreadyApplied


def _data(n: int = 96):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    return x, y


def test_dp_sgd_trains_the_model_in_place_and_accounts_its_steps():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    x, y = _data()
    trainer = make_private_trainer(model, x, y, noise_multiplier=1.0, clip=1.0, batch_size=16, epochs=2, lr=0.1)
    result = trainer.train()

    assert set(model.state_dict()) == set(before)  # names unchanged: the wrapper is gone from the model
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert result.steps == 2 * trainer.steps_per_epoch == 12
    assert result.sampling_rate == pytest.approx(16 / 96)
    assert result.epsilon(1e-5) == pytest.approx(
        epsilon_after(12, noise_multiplier=1.0, sampling_rate=16 / 96, delta=1e-5))
    with pytest.raises(PrivacyAlreadyApplied):
        trainer.train()


def test_round_cap_counts_every_dp_sgd_step():
    cap = rounds_allowed(8.0, 1e-5, 3.0, 1.0, 100, steps_per_round=5)
    assert 0 < cap < 100
    assert epsilon_after(cap * 5, noise_multiplier=3.0, sampling_rate=1.0, delta=1e-5) <= 8.0
    assert epsilon_after((cap + 1) * 5, noise_multiplier=3.0, sampling_rate=1.0, delta=1e-5) > 8.0


def test_a_model_left_in_eval_mode_still_trains() -> None:
    import numpy as np

    from trustmesh.fl.models import build_model
    from trustmesh.privacy.dpsgd import make_private_trainer

    model = build_model("digits-mlp")
    model.eval()
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 64), dtype=np.float32), rng.integers(0, 10, 64)
    result = make_private_trainer(model, x, y, noise_multiplier=1.0, clip=1.0, batch_size=16, epochs=1,
                                  lr=0.05).train()
    assert result.steps > 0
