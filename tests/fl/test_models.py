"""Model registry (W1 shapes and counts), parameter helpers, safetensors files at rest."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from trustmesh.errors import ConfigError, UpdateRejected
from trustmesh.fl.models import MODEL_NAMES, build_model, count_params, load_model, save_model
from trustmesh.fl.params import (
    ParamSpec,
    apply_delta,
    delta,
    flatten,
    get_params,
    set_params,
    spec_for_model,
    spec_of,
    unflatten,
)


@pytest.mark.parametrize(("name", "count"), [("mlp", 199_210), ("cnn", 582_026), ("digits-mlp", 2_410)])
def test_param_counts(name, count):
    model = build_model(name)
    assert count_params(model) == count
    assert spec_for_model(name).num_params == count


def test_registry_names_and_unknown():
    assert {"mlp", "cnn"} <= set(MODEL_NAMES)
    with pytest.raises(ConfigError):
        build_model("resnet")


def test_w1_shapes_and_outputs():
    assert spec_for_model("mlp").shapes == ((200, 784), (200,), (200, 200), (200,), (10, 200), (10,))
    cnn_spec = dict(spec_for_model("cnn"))
    assert cnn_spec["conv1.weight"] == (32, 1, 5, 5) and cnn_spec["fc1.weight"] == (512, 1024)
    x = torch.zeros(3, 784)
    assert build_model("mlp")(x).shape == (3, 10)
    assert build_model("cnn")(x).shape == (3, 10)  # flat input is reshaped to 1x28x28
    assert build_model("cnn")(x.view(3, 1, 28, 28)).shape == (3, 10)


def test_seeded_construction():
    a, b, c = (get_params(build_model("mlp", seed=s)) for s in (0, 0, 1))
    np.testing.assert_array_equal(flatten(a), flatten(b))
    assert not np.array_equal(flatten(a), flatten(c))


def test_get_set_delta_apply():
    base = get_params(build_model("mlp", seed=0))
    local = get_params(build_model("mlp", seed=1))
    assert all(v.dtype == np.float32 and v.flags.c_contiguous for v in base.values())
    d = delta(local, base)
    back = apply_delta(base, d)
    np.testing.assert_allclose(flatten(back), flatten(local), atol=1e-6)
    model = build_model("mlp", seed=5)
    set_params(model, local)
    np.testing.assert_array_equal(flatten(get_params(model)), flatten(local))
    with pytest.raises(UpdateRejected):
        set_params(model, {k: v for k, v in list(local.items())[:-1]})
    with pytest.raises(UpdateRejected):
        delta(local, {**base, "fc1.bias": np.zeros(3, np.float32)})


def test_flatten_unflatten_and_spec():
    params = get_params(build_model("digits-mlp"))
    spec = spec_of(params)
    assert spec == spec_for_model("digits-mlp") and spec.names == tuple(params)
    vec = flatten(params)
    assert vec.shape == (spec.num_params,)
    back = unflatten(vec, spec)
    assert list(back) == list(params)
    for name in params:
        np.testing.assert_array_equal(back[name], params[name])
    with pytest.raises(UpdateRejected):
        unflatten(vec[:-1], spec)
    spec.check(params)
    with pytest.raises(UpdateRejected):
        spec.check({**params, "fc1.bias": params["fc1.bias"].astype(np.float64)})
    assert ParamSpec.of([("a", [2, 3])]).sizes == (6,)


def test_safetensors_round_trip(tmp_path):
    params = get_params(build_model("cnn"))
    path = tmp_path / "model.safetensors"
    save_model(params, path)
    back = load_model(path, spec_for_model("cnn"))
    assert list(back) == list(params)  # state_dict order survives the file
    for name in params:
        np.testing.assert_array_equal(back[name], params[name])
    with pytest.raises(ConfigError):
        load_model(path, spec_for_model("mlp"))
    (tmp_path / "junk.safetensors").write_bytes(b"not a model")
    with pytest.raises(ConfigError):
        load_model(tmp_path / "junk.safetensors")
