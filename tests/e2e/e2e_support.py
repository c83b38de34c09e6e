"""Shared pieces of the end-to-end tests: a small W1 workflow and waiting on chain state."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from trustmesh.contracts.workflow import load_workflow

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "mnist-federated.json"

T = TypeVar("T")


def small_workflow(**fed: Any) -> dict[str, Any]:
    """The example workflow with one local epoch (fast) and the given federation_config fields."""
    doc = load_workflow(EXAMPLE)
    doc["local_training"]["local_epochs"] = 1
    doc["federation_config"].update(fed)
    return doc


def wait_for(what: str, probe: Callable[[], T | None], *, timeout: float, every: float = 0.2) -> T:
    """Poll ``probe`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:g}s waiting for {what}")


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "trustmesh.cli", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def write_json(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(json.dumps(doc, indent=2))
    return path
