"""`trustmesh privacy`: the round cap and epsilon per round, as the coordinator computes them."""
from __future__ import annotations

import json

from trustmesh.cli import main
from trustmesh.privacy.accountant import rounds_allowed


def test_privacy_command_prints_the_cap_for_the_minimum_quorum(capsys):
    code = main(["privacy", "--epsilon", "8", "--noise-multiplier", "2.0", "--max-rounds", "20",
                 "--expected-nodes", "10", "--min-nodes", "6", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["accounting_noise_multiplier"] < 2.0  # dropouts down to 6 of 10 leave less noise
    assert out["rounds_allowed"] == rounds_allowed(8.0, 1e-5, out["accounting_noise_multiplier"], 1.0, 20)
    assert len(out["epsilon_per_round"]) == out["rounds_allowed"]
    assert out["epsilon_per_round"][-1] <= 8.0


def test_privacy_command_rejects_a_bad_rate_in_one_line(capsys):
    code = main(["privacy", "--epsilon", "8", "--noise-multiplier", "1", "--max-rounds", "5",
                 "--sampling-rate", "2"])
    assert code == 1
    assert "sampling rate" in capsys.readouterr().err
