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


def start_workflow(stack: LocalStack, nodes: Nodes, doc: dict[str, Any], *, workflow_id: str, participants: int,
                   compute_nodes: int = 1, history: Any = None,
                   transform: Callable[[int], Any] | None = None) -> tuple[Any, Any]:
    """Register ``doc`` and run its compute nodes, participants and coordinator as threads.

    Returns the coordinator and the registered workflow record; ``transform(i)`` gives participant
    i's update transform (tests play misbehaving or crashing participants with it).
    """
    from trustmesh.compute.node import ComputeNode
    from trustmesh.dataplane.store import RedisDataPlane
    from trustmesh.iot.coordinator import Coordinator
    from trustmesh.iot.participant import Participant
    from trustmesh.runner.plan import COORDINATOR, compute_name, participant_name

    coordinator = Coordinator(chain=node_chain(stack, COORDINATOR), doc=doc,
                              dataplane=RedisDataPlane(stack.redis_for("coordinator")))
    workflow = coordinator.register()
    for c in range(compute_nodes):
        node = ComputeNode(chain=node_chain(stack, compute_name(c)), dataplane=RedisDataPlane(stack.redis_for("compute")),
                           workflow_ids=[workflow_id], history=history, poll_interval=0.2, heartbeat_every=0.5)
        nodes.start(node.run)
    for i in range(participants):
        nodes.start(Participant(chain=node_chain(stack, participant_name(i)), workflow_id=workflow_id,
                                dataplane=RedisDataPlane(stack.redis_for("participant")), partition=i,
                                poll_interval=0.2, transform=transform(i) if transform else None).run)
    nodes.start(coordinator.run)
    return coordinator, workflow


def wait_completed(stack: LocalStack, workflow_id: str, *, timeout: float = 300) -> tuple[Chain, Any]:
    """A reader of the stack's chain and the workflow record once it is completed."""
    from trustmesh.ledger.keys import new_signer

    reader = Chain(client=LedgerClient(urls=[stack.ledger_url]), signer=new_signer())
    done = wait_for(f"workflow {workflow_id} to complete",
                    lambda: (w := reader.workflow(workflow_id)) and w.status == "completed" and w, timeout=timeout)
    return reader, done
