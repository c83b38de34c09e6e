"""Named strategies: the registry, thin delegation to the math, and optimizer state round trips."""
from __future__ import annotations

import numpy as np
import pytest

from trustmesh.errors import ConfigError
from trustmesh.fl import aggregate as agg
from trustmesh.fl.codecs import decode_params, encode_params, model_hash
from trustmesh.fl.params import ParamSpec
from trustmesh.fl.strategies import (
    STRATEGIES,
    AggregateResult,
    FedAdam,
    ServerOptState,
    get_strategy,
)


def updates(n: int = 6, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        {"fc.weight": rng.standard_normal((3, 5)).astype(np.float32), "fc.bias": rng.standard_normal(3).astype(np.float32)}
        for _ in range(n)
    ]


def flat(params: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([a.reshape(-1) for a in params.values()])


def test_registry_names():
    assert sorted(STRATEGIES) == sorted(
        ["fedavg", "perffedavg", "median", "trimmed_mean", "krum", "multi_krum", "cosine_trim", "trend_trim",
         "fedadam", "fedyogi"]
    )


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_returns_a_delta_named_like_the_model(name):
    ups = updates()
    result = get_strategy(name).aggregate(ups, [1, 2, 3, 4, 5, 6], metrics=[{"val_accuracy": 0.5}] * 6)
    assert isinstance(result, AggregateResult)
    assert result.arithmetic == agg.CANONICAL_ARITHMETIC
    assert list(result.delta) == ["fc.weight", "fc.bias"]
    assert all(result.delta[k].shape == ups[0][k].shape and result.delta[k].dtype == np.float32 for k in ups[0])
    assert (result.state is not None) == (name in {"fedadam", "fedyogi", "trend_trim"})


def test_get_strategy_rejects_unknown_names_and_parameters():
    with pytest.raises(ConfigError):
        get_strategy("fedsgd")
    with pytest.raises(ConfigError):
        get_strategy("krum", beta=0.1)
    with pytest.raises(ConfigError):
        get_strategy("trimmed_mean", beta=0.5)
    with pytest.raises(ConfigError):
        get_strategy("perffedavg", alpha=1.5)
    assert get_strategy("multi_krum", f=2, m=3).m == 3


def test_strategies_delegate_to_the_canonical_math():
    ups = updates()
    mat = np.stack([flat(u) for u in ups])
    counts = [5, 1, 1, 1, 1, 9]
    fed = get_strategy("fedavg").aggregate(ups, counts)
    assert flat(fed.delta).tobytes() == agg.fedavg(mat, counts).tobytes()
    med = get_strategy("median").aggregate(ups, counts)
    assert flat(med.delta).tobytes() == agg.coordinate_median(mat).tobytes()
    kr = get_strategy("krum", f=1).aggregate(ups, counts)
    assert kr.selected is not None and len(kr.selected) == 1
    assert flat(kr.delta).tobytes() == mat[kr.selected[0]].tobytes()
    ct = get_strategy("cosine_trim", f=9, norm_cap=2.0).aggregate(ups, counts)  # f clamped to n - 1
    vec, kept = agg.cosine_trim(mat, counts, f=5, norm_cap=2.0)
    assert ct.selected == tuple(kept) and flat(ct.delta).tobytes() == vec.tobytes()
    with pytest.raises(ConfigError):
        get_strategy("cosine_trim", norm_cap=0.5)
    tt = get_strategy("trend_trim", f=9, min_cosine=0.2).aggregate(ups, counts)  # f clamped to n - 1
    vec, kept = agg.trend_trim(mat, counts, None, f=5, min_cosine=0.2)
    assert tt.selected == tuple(kept) and flat(tt.delta).tobytes() == vec.tobytes()
    for bad in ({"f": -1}, {"min_cosine": 1.5}, {"norm_cap": 0.5}, {"momentum": 1.0}):
        with pytest.raises(ConfigError):
            get_strategy("trend_trim", **bad)


def test_perffedavg_alpha_one_equals_fedavg_and_metrics_matter():
    ups = updates()
    counts = [5, 1, 1, 1, 1, 9]
    metrics = [{"val_accuracy": a} for a in (0.9, 0.1, 0.5, 0.5, 0.5, 0.2)]
    fed = flat(get_strategy("fedavg").aggregate(ups, counts).delta)
    one = flat(get_strategy("perffedavg", alpha=1.0).aggregate(ups, counts, metrics=metrics).delta)
    half = flat(get_strategy("perffedavg", alpha=0.5).aggregate(ups, counts, metrics=metrics).delta)
    assert one.tobytes() == fed.tobytes()
    assert half.tobytes() != fed.tobytes()
    # a missing accuracy counts as 0.5, as in the source design
    missing = [{}, {"val_accuracy": 0.5}] + [{"val_accuracy": 0.5}] * 4
    a = flat(get_strategy("perffedavg", alpha=0.5).aggregate(ups, counts, metrics=missing).delta)
    b = flat(get_strategy("perffedavg", alpha=0.5).aggregate(ups, counts, metrics=[{"val_accuracy": 0.5}] * 6).delta)
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("name", ["fedadam", "fedyogi"])
def test_optimizer_state_chains_and_round_trips(name):
    strategy = get_strategy(name)
    assert isinstance(strategy, FedAdam)
    assert (strategy.eta, strategy.beta1, strategy.beta2, strategy.tau) == (1e-2, 0.9, 0.99, 1e-3)
    first = strategy.aggregate(updates(seed=1), [1] * 6)
    blob = first.state.to_params()
    assert list(blob) == ["m/fc.weight", "m/fc.bias", "v/fc.weight", "v/fc.bias"]
    restored = ServerOptState.from_params(blob)
    second_a = strategy.aggregate(updates(seed=2), [1] * 6, state=restored)
    second_b = strategy.aggregate(updates(seed=2), [1] * 6, state=first.state)
    fresh = strategy.aggregate(updates(seed=2), [1] * 6)
    assert flat(second_a.delta).tobytes() == flat(second_b.delta).tobytes()
    assert flat(second_a.delta).tobytes() != flat(fresh.delta).tobytes()
    with pytest.raises(agg.AggregationError):
        ServerOptState.from_params({"m/a": np.zeros(2, np.float32)})
    wrong = ServerOptState(m={"x": np.zeros(2, np.float32)}, v={"x": np.zeros(2, np.float32)})
    with pytest.raises(agg.AggregationError):
        strategy.aggregate(updates(), [1] * 6, state=wrong)


def test_mismatched_inputs_raise():
    with pytest.raises(agg.AggregationError):
        get_strategy("fedavg").aggregate(updates(), [1, 2])
    with pytest.raises(agg.AggregationError):
        get_strategy("fedavg").aggregate([], [])


def _along(direction: np.ndarray, signs: list[int], seed: int) -> list[dict[str, np.ndarray]]:
    """Updates along +-direction (one sign each) with a little noise, named like ``updates()``."""
    rng = np.random.default_rng(seed)
    rows = [(s * direction + 0.1 * rng.standard_normal(direction.size)).astype(np.float32) for s in signs]
    return [dict(agg.unstack(r, [("fc.weight", (3, 5)), ("fc.bias", (3,))])) for r in rows]


def test_trend_trim_state_is_the_trend_and_round_trips_through_the_blob():
    """The reference travels in the FedAdam blob layout (m/<name>, v/<name>) and decides the next round."""
    strategy = get_strategy("trend_trim", f=2)
    direction = np.random.default_rng(3).standard_normal(18)
    first = strategy.aggregate(_along(direction, [1] * 6, seed=4), [1, 2, 3, 4, 5, 6])
    assert first.state is not None
    assert flat(first.state.m).tobytes() == flat(first.delta).tobytes()  # momentum 0: the last aggregate
    assert not any(a.any() for a in first.state.v.values())
    blob = encode_params(first.state.to_params())
    model = [("fc.weight", (3, 5)), ("fc.bias", (3,))]
    spec = ParamSpec.of([(f"m/{n}", s) for n, s in model] + [(f"v/{n}", s) for n, s in model])  # as roundwork
    restored = ServerOptState.from_params(decode_params(blob, spec))
    # round 2: four updates reverse the trend, two keep it. The trend is in doubt (4 > f): the median rules
    second = _along(direction, [1, -1, -1, 1, -1, -1], seed=5)
    counts = [3, 3, 3, 3, 3, 3]
    in_doubt = strategy.aggregate(second, counts, state=restored)
    assert in_doubt.selected == (1, 2, 4, 5)
    # two against the trend (<= f): they go, with the state from the blob or straight from the result
    third = _along(direction, [1, -1, 1, 1, -1, 1], seed=6)
    via_blob = strategy.aggregate(third, counts, state=restored)
    direct = strategy.aggregate(third, counts, state=first.state)
    assert via_blob.selected == direct.selected == (0, 2, 3, 5)
    assert flat(via_blob.delta).tobytes() == flat(direct.delta).tobytes()
    assert model_hash(encode_params(via_blob.state.to_params())) == model_hash(encode_params(direct.state.to_params()))
    # the state matters: all six move a little along the trend, split two to four across it; the
    # median sides with the four and would drop the two, the trend keeps everyone
    across = np.random.default_rng(8).standard_normal(18)
    across -= (across @ direction) / (direction @ direction) * direction
    trend = flat(restored.m).astype(np.float64)
    split = [(0.05 * trend / np.linalg.norm(trend) + sign * across / np.linalg.norm(across)).astype(np.float32)
             for sign in (1, -1, 1, 1, -1, 1)]
    fourth = [dict(agg.unstack(r, model)) for r in split]
    assert strategy.aggregate(fourth, counts).selected == (0, 2, 3, 5)
    assert strategy.aggregate(fourth, counts, state=restored).selected == (0, 1, 2, 3, 4, 5)
    # a momentum mixes the old reference and the new aggregate
    mixed = get_strategy("trend_trim", f=2, momentum=0.25).aggregate(third, counts, state=restored)
    expect = agg.weighted_sum([flat(restored.m), flat(mixed.delta)], [0.25, 0.75])
    assert flat(mixed.state.m).tobytes() == expect.tobytes()
    wrong = ServerOptState(m={"x": np.zeros(2, np.float32)}, v={"x": np.zeros(2, np.float32)})
    with pytest.raises(agg.AggregationError):
        strategy.aggregate(third, counts, state=wrong)
