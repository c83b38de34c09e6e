"""Shared pieces of the end-to-end tests (a uniquely named module: test folders are not packages)."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from trustmesh.chain import Chain
from trustmesh.contracts.workflow import load_workflow
from trustmesh.ledger.client import LedgerClient
from trustmesh.ledger.keys import load_signer
from trustmesh.runner.stack import LocalStack

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


class Nodes:
    """Node threads of the test; each stops when its flag is set."""

    def __init__(self) -> None:
        self.threads: list[tuple[threading.Thread, threading.Event]] = []

    def start(self, run: Callable[..., Any]) -> threading.Event:
        flag = threading.Event()
        thread = threading.Thread(target=run, kwargs={"stop": flag.is_set}, daemon=True)
        thread.start()
        self.threads.append((thread, flag))
        return flag

    def stop_all(self) -> None:
        for _, flag in self.threads:
            flag.set()
        for thread, _ in self.threads:
            thread.join(timeout=30)


def node_chain(stack: LocalStack, name: str) -> Chain:
    """A Chain signing as node ``name`` of the stack."""
    return Chain(client=LedgerClient(urls=[stack.ledger_url]), signer=load_signer(stack.key(name).private_path))
