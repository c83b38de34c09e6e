"""`trustmesh run`'s privacy options land in the workflow's privacy section, and bad ones are refused."""
from __future__ import annotations

import pytest

from trustmesh.contracts.workflow import load_workflow, validate_workflow
from trustmesh.errors import ConfigError
from trustmesh.runner.plan import apply_privacy_options


@pytest.fixture
def doc():
    from pathlib import Path

    return load_workflow(Path(__file__).resolve().parents[2] / "examples" / "mnist-federated.json")


def test_secure_aggregation_threshold_switches_it_on_and_zero_off(doc):
    on = apply_privacy_options(doc, secure_aggregation=2)
    assert on["privacy"]["secure_aggregation"] == {"enabled": True, "threshold": 2}
    assert validate_workflow(on) == []
    off = apply_privacy_options(on, secure_aggregation=0)
    assert off["privacy"]["secure_aggregation"] == {"enabled": False, "threshold": None}
    assert doc["privacy"]["secure_aggregation"]["enabled"] is False  # the input is not changed


def test_threshold_above_the_participants_is_a_workflow_problem(doc):
    problems = validate_workflow(apply_privacy_options(doc, secure_aggregation=4))
    assert problems == ["privacy.secure_aggregation.threshold: 4 exceeds expected_nodes 3"]


def test_dp_takes_the_budget_and_fills_sane_defaults(doc):
    out = apply_privacy_options(doc, dp="client", epsilon=8.0, clip=0.5)
    assert out["privacy"]["dp"] == {"mode": "client", "clip": 0.5, "noise_multiplier": 1.0, "epsilon": 8.0,
                                    "delta": 1e-5}
    assert validate_workflow(out) == []


@pytest.mark.parametrize("kwargs, message", [
    ({"dp": "client"}, "needs a privacy budget: --epsilon E"),
    ({"epsilon": 3.0}, "need --dp client or --dp sample"),
    ({"secure_aggregation": -1}, "threshold >= 2, or 0"),
    ({"neighbours": 4}, "--neighbours needs secure aggregation"),
])
def test_incomplete_privacy_options_are_refused(doc, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        apply_privacy_options(doc, **kwargs)


def test_neighbours_make_a_sparse_secagg_plus_graph(doc):
    doc["expected_nodes"] = 6
    out = apply_privacy_options(doc, secure_aggregation=3, neighbours=4)
    assert out["privacy"]["secure_aggregation"]["neighbours"] == 4
    problems = validate_workflow(apply_privacy_options(doc, secure_aggregation=3, neighbours=6))
    assert any("neighbours" in p for p in problems)
