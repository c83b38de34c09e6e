"""Local training lowers the loss, is reproducible from its seed, and FedProx pulls toward the base."""
from __future__ import annotations

import numpy as np
import pytest

from trustmesh.errors import ConfigError
from trustmesh.fl.data import load_digits_dataset, load_w1
from trustmesh.fl.models import build_model
from trustmesh.fl.params import delta, flatten, get_params
from trustmesh.fl.train import evaluate, train_local


@pytest.fixture(scope="module")
def digits():
    return load_digits_dataset()


def test_training_lowers_the_loss(digits):
    model = build_model("digits-mlp")
    before, acc_before = evaluate(model, digits.x_test, digits.y_test)
    result = train_local(model, digits.x_train, digits.y_train, lr=0.1, batch_size=32, epochs=3, seed=7)
    after, acc_after = evaluate(model, digits.x_test, digits.y_test)
    assert result.num_samples == len(digits.x_train) and result.seconds > 0
    assert after < before * 0.7 and acc_after > acc_before + 0.3
    assert np.isfinite(result.loss)


def test_reported_accuracy_is_the_last_epochs_share_of_correct_minibatch_predictions(digits):
    import torch

    model, reference = build_model("digits-mlp"), build_model("digits-mlp")
    reference.load_state_dict(model.state_dict())
    result = train_local(model, digits.x_train, digits.y_train, lr=0.1, batch_size=32, epochs=2, seed=5)
    # the same two epochs by hand, counting the last epoch's correct predictions batch by batch
    x, y = torch.from_numpy(digits.x_train.copy()), torch.from_numpy(digits.y_train.astype(np.int64))
    optimizer, rng, correct = torch.optim.SGD(reference.parameters(), lr=0.1), np.random.default_rng(5), 0
    for epoch in range(2):
        order = torch.from_numpy(rng.permutation(len(x)))
        for start in range(0, len(x), 32):
            batch = order[start:start + 32]
            optimizer.zero_grad(set_to_none=True)
            logits = reference(x[batch])
            torch.nn.functional.cross_entropy(logits, y[batch]).backward()
            optimizer.step()
            correct += int((logits.argmax(1) == y[batch]).sum()) if epoch == 1 else 0
    assert result.accuracy == correct / len(x)
    np.testing.assert_array_equal(flatten(get_params(model)), flatten(get_params(reference)))  # training unchanged
    _, after = evaluate(model, digits.x_train, digits.y_train)
    assert 0.5 < result.accuracy <= 1.0 and abs(result.accuracy - after) < 0.15


def test_same_seed_same_model_different_seed_differs(digits):
    runs = []
    for seed in (3, 3, 4):
        model = build_model("digits-mlp")
        train_local(model, digits.x_train, digits.y_train, lr=0.05, batch_size=32, epochs=1, seed=seed)
        runs.append(flatten(get_params(model)))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_fedprox_keeps_the_model_closer_to_base(digits):
    base = get_params(build_model("digits-mlp"))
    norms = []
    for mu in (0.0, 1.0):
        model = build_model("digits-mlp")
        train_local(model, digits.x_train, digits.y_train, lr=0.1, batch_size=32, epochs=2, seed=1,
                    prox_mu=mu, base_params=base)
        norms.append(np.linalg.norm(flatten(delta(get_params(model), base))))
    assert norms[1] < norms[0]


def test_mnist_subset_with_the_w1_models():
    w1 = load_w1()
    x, y = w1.x_train[:256], w1.y_train[:256]
    for name in ("mlp", "cnn"):
        model = build_model(name)
        before, _ = evaluate(model, x, y)
        train_local(model, x, y, lr=0.05, batch_size=32, epochs=2, seed=0)
        after, _ = evaluate(model, x, y)
        assert after < before


def test_bad_arguments(digits):
    model = build_model("digits-mlp")
    with pytest.raises(ConfigError):
        train_local(model, digits.x_train, digits.y_train[:-1], lr=0.1, batch_size=32, epochs=1, seed=0)
    with pytest.raises(ConfigError):
        train_local(model, digits.x_train, digits.y_train, lr=0.1, batch_size=0, epochs=1, seed=0)
    with pytest.raises(ConfigError):
        evaluate(model, digits.x_test[:0], digits.y_test[:0])
