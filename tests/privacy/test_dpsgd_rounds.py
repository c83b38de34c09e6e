"""Sample-level DP-SGD in the round protocol: the coordinator's cap and the epsilon per round against
the libraries, the partitions it is accounted for, the participant's once-a-round DP-SGD run and
the audit entry of the history."""
from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

import dp_accounting
import pytest
from dp_accounting import rdp

from trustmesh.contracts.workflow import apply_defaults
from trustmesh.fl.partition import client_partition
from trustmesh.iot.coordinator import privacy_cap
from trustmesh.iot.participant import Participant
from trustmesh.privacy.accountant import dpsgd_round_steps
from trustmesh.privacy.audit import round_audit
from trustmesh.privacy.errors import PrivacyAlreadyApplied, PrivacyConfigError, PrivacyError
from trustmesh.privacy.rounds import SampleDP, client_dp, partition_sizes, round_privacy, sample_dp

DP = {"mode": "sample", "clip": 1.0, "noise_multiplier": 1.1, "epsilon": 8.0, "delta": 1e-5}
TRAINING = {"lr": 0.05, "momentum": 0.0, "batch_size": 32, "local_epochs": 2, "fedprox_mu": 0.0}


def _plan(sizes: tuple[int, ...], **dp: Any) -> SampleDP:
    plan = sample_dp({**DP, **dp}, training=TRAINING, sizes=sizes)
    assert plan is not None
    return plan


def test_round_steps_bound_what_opacus_takes() -> None:
    assert dpsgd_round_steps(400, batch_size=32, epochs=2) == (0.08, 26)  # 2 * ceil(400 / 32)
    assert dpsgd_round_steps(320, batch_size=32, epochs=1) == (0.1, 10)  # exact: no float ceil error
    assert dpsgd_round_steps(20, batch_size=32, epochs=3) == (1.0, 3)  # the whole partition every step
    with pytest.raises(PrivacyConfigError):
        dpsgd_round_steps(0, batch_size=32, epochs=1)


def test_epsilon_per_round_is_the_library_composition_of_every_step() -> None:
    plan = _plan((400,))
    accountant = rdp.RdpAccountant()
    step = dp_accounting.PoissonSampledDpEvent(32 / 400, dp_accounting.GaussianDpEvent(1.1))
    accountant.compose(dp_accounting.SelfComposedDpEvent(step, 3 * 26))  # 3 rounds of 2 epochs of 13 batches
    assert plan.epsilon_spent(3) == pytest.approx(accountant.get_epsilon(1e-5), rel=1e-9)


def test_epsilon_per_round_agrees_with_opacus_and_errs_on_the_safe_side() -> None:
    from opacus.accountants import RDPAccountant

    plan = _plan((400,))
    same = RDPAccountant()
    same.history = [(1.1, 32 / 400, 3 * 26)]
    assert plan.epsilon_spent(3) == pytest.approx(same.get_epsilon(1e-5), rel=0.03)  # other RDP orders
    as_opacus_samples = RDPAccountant()
    as_opacus_samples.history = [(1.1, 1 / 13, 3 * 26)]  # Opacus' loader samples at 1/len(loader)
    assert as_opacus_samples.get_epsilon(1e-5) < plan.epsilon_spent(3)


def test_round_cap_is_the_largest_within_budget_for_the_partition_that_spends_most() -> None:
    small, large = _plan((150,), noise_multiplier=2.0), _plan((2000,), noise_multiplier=2.0)
    both = _plan((2000, 150, 2000), noise_multiplier=2.0)
    assert both.round_cap(500) == min(small.round_cap(500), large.round_cap(500))
    cap = both.round_cap(500)
    assert 3 < cap < 500
    assert both.epsilon_spent(cap) <= 8.0 < both.epsilon_spent(cap + 1)
    assert both.epsilon_spent(cap) == max(small.epsilon_spent(cap), large.epsilon_spent(cap))
    assert [both.epsilon_spent(r) for r in (1, 2, 3)] == sorted({both.epsilon_spent(r) for r in (1, 2, 3)})
    assert both.round_cap(3) == 3  # capped by the workflow's rounds


def test_partition_sizes_are_what_participants_train_on() -> None:
    data = {"dataset": "digits", "partition": "dirichlet", "num_partitions": 4, "alpha": 0.5,
            "shards_per_node": None}
    sizes = partition_sizes(data)
    assert sizes == tuple(len(client_partition("digits", "dirichlet", 4, k, alpha=0.5)[0]) for k in range(4))
    assert len(set(sizes)) > 1


def test_the_modes_do_not_mix_and_fedprox_is_refused() -> None:
    with pytest.raises(PrivacyConfigError, match="not client-level"):
        client_dp(DP, expected_nodes=3, min_nodes=3)
    with pytest.raises(PrivacyConfigError, match="not sample-level"):
        sample_dp({**DP, "mode": "client"}, training=TRAINING, sizes=(100,))
    with pytest.raises(PrivacyConfigError, match="fedprox_mu"):
        sample_dp(DP, training={**TRAINING, "fedprox_mu": 0.1}, sizes=(100,))
    assert sample_dp({"mode": "none"}, training=TRAINING, sizes=(100,)) is None


def _workflow_doc(dp: dict[str, Any]) -> dict[str, Any]:
    keys = [f"02{i:064x}" for i in range(1, 6)]
    return apply_defaults({
        "workflow_id": "dpsgd-cap", "app_id": "local-train", "expected_nodes": 3, "rounds": 50,
        "federation_config": {"coordinator_node": keys[0], "participant_nodes": keys[1:4],
                              "compute_nodes": [keys[4]], "min_nodes_required": 2},
        "model": {"name": "digits-mlp"}, "local_training": TRAINING, "privacy": {"dp": dp},
        "data": {"dataset": "digits", "partition": "dirichlet", "alpha": 0.5},
    })


def test_coordinator_records_the_cap_of_the_worst_partition() -> None:
    doc = _workflow_doc(DP)
    sizes = tuple(len(client_partition("digits", "dirichlet", 3, k, alpha=0.5)[0]) for k in range(3))
    expected = _plan(sizes)
    assert privacy_cap(copy.deepcopy(doc)) == expected.round_cap(50) < 50
    plan = round_privacy(doc["privacy"]["dp"], expected_nodes=3, min_nodes=2, training=doc["local_training"],
                         data=doc["data"])
    assert isinstance(plan, SampleDP) and plan.partition_sizes == sizes


def _workflow_record(dp: dict[str, Any]) -> Any:
    spec = SimpleNamespace(privacy=SimpleNamespace(dp=SimpleNamespace(**dp)), training=SimpleNamespace(**TRAINING),
                           expected_nodes=3, min_nodes_required=3)
    return SimpleNamespace(spec=spec)


def test_participant_runs_dp_sgd_once_a_round_and_never_beyond_its_budget() -> None:
    import numpy as np

    from trustmesh.fl.models import build_model
    from trustmesh.fl.params import get_params

    participant = Participant(chain=None, dataplane=None, workflow_id="w", partition=0)  # type: ignore[arg-type]
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 64), dtype=np.float32), rng.integers(0, 10, 64)
    workflow = _workflow_record(DP)
    model = build_model("digits-mlp")
    base = get_params(model)
    result = participant._train(workflow, 1, model, x, y, base)
    assert result.steps <= dpsgd_round_steps(64, batch_size=32, epochs=2)[1] == 4
    assert result.noise_multiplier == 1.1 and result.clip == 1.0
    assert any(not np.array_equal(base[k], v) for k, v in get_params(model).items())
    with pytest.raises(PrivacyAlreadyApplied):
        participant._train(workflow, 1, build_model("digits-mlp"), x, y, base)
    own = _plan((64,))
    beyond = next(r for r in range(1, 10_000) if own.epsilon_spent(r) > 8.0)
    with pytest.raises(PrivacyError, match="beyond the budget"):
        participant._train(workflow, beyond, build_model("digits-mlp"), x, y, base)
    # plain SGD without DP and with client-level DP (whose noise comes after training), as often as asked
    for mode in ("none", "client", "client"):
        plain = participant._train(_workflow_record({**DP, "mode": mode}), 1, build_model("digits-mlp"), x, y, base)
        assert not hasattr(plain, "noise_multiplier")
    assert participant._privatize(_workflow_record({**DP, "mode": "none"}), 1, base) is base


def test_audit_entry_names_the_mechanism_its_parameters_and_the_budget_left() -> None:
    sample = _workflow_record(DP)
    entry = round_audit(sample.spec, 2, 3.25)
    assert entry is not None
    assert entry["mechanism"] == "dp-sgd-opacus" and entry["unit"] == "example"
    assert (entry["clip"], entry["noise_multiplier"], entry["delta"]) == (1.0, 1.1, 1e-5)
    assert (entry["epsilon_spent"], entry["epsilon_remaining"], entry["epsilon_budget"]) == (3.25, 4.75, 8.0)
    assert (entry["batch_size"], entry["local_epochs"]) == (32, 2)
    client = round_audit(_workflow_record({**DP, "mode": "client"}).spec, 1, 1.0)
    assert client is not None and client["mechanism"] == "client-dp-gaussian" and client["unit"] == "participant"
    assert round_audit(_workflow_record({**DP, "mode": "none"}).spec, 1, None) is None
