"""`trustmesh run`, the main job, as a user runs it: the embedded default end to end, and the same
command pointed at a ledger and a Redis server that already run."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_support import EXAMPLE

from trustmesh.devnet.launch import DevnetProcess
from trustmesh.fl.models import load_model
from trustmesh.services.redis_server import RedisServer

pytestmark = pytest.mark.slow


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "trustmesh.cli", "run", str(EXAMPLE), "--local-epochs", "1",
                           "--runs-dir", str(cwd / "runs"), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=600, check=False)


def _only_run_dir(root: Path) -> Path:
    [run_dir] = list((root / "runs").iterdir())
    return run_dir


def test_the_embedded_default_writes_the_round_table_plot_and_model(tmp_path: Path) -> None:
    result = _run("--participants", "2", "--rounds", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "round 2/2  accepted" in result.stdout
    assert "/_utils" in result.stdout  # where to browse the history
    run_dir = _only_run_dir(tmp_path)
    rounds = json.loads((run_dir / "rounds.json").read_text())
    assert [r["round"] for r in rounds] == [1, 2]
    assert all(r["status"] == "accepted" and r["participants"] == 2 for r in rounds)
    assert rounds[1]["accuracy"] > 0.5
    assert (run_dir / "rounds.csv").read_text().startswith("round,")
    assert (run_dir / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = load_model(run_dir / "final_model.safetensors")
    assert sum(arr.size for arr in model.values()) == 199_210


def test_running_services_are_used_instead_of_embedded_ones(tmp_path: Path) -> None:
    with DevnetProcess(data_dir=tmp_path / "ledger") as ledger, RedisServer(data_dir=tmp_path / "redis") as redis:
        result = _run("--participants", "2", "--rounds", "1", "--url", ledger.url, "--redis", redis.url,
                      "--no-history", cwd=tmp_path)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        run_dir = _only_run_dir(tmp_path)
        assert not (run_dir / "devnet").exists() and not (run_dir / "redis").exists()
        assert json.loads((run_dir / "rounds.json").read_text())[0]["status"] == "accepted"
        # register, open, two submissions, close+claim+post, attest-free evaluation: all on this ledger
        assert ledger.stats()["transactions"] >= 6
