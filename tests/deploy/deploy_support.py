"""Shared helpers of the deployment checks (a uniquely named module: every test folder has a
conftest.py, so test modules import from here, never from `conftest`)."""
from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import pytest

from trustmesh.deploy.compose import render_compose
from trustmesh.deploy.k8s import render_k8s
from trustmesh.deploy.topology import Topology

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
KUBERNETES = REPO / "kubernetes"
# The participant counts the committed renders were made with (see each file's header).
COMPOSE_PARTICIPANTS = 3
K8S_PARTICIPANTS = {"dev": 3, "prod": 8}
DCLINT = "dclint@3.1.0"


@functools.cache
def fresh_compose() -> dict[str, str]:
    return render_compose(Topology(participants=COMPOSE_PARTICIPANTS))


# dev carries the compose example workflow (its node names match dev's); prod a placeholder.
K8S_WORKFLOW = {"dev": DOCKER / "workflow.json", "prod": None}


@functools.cache
def fresh_k8s(env: str) -> dict[str, str]:
    workflow = K8S_WORKFLOW[env]
    if workflow is None:
        return render_k8s(env=env, participants=K8S_PARTICIPANTS[env])
    return render_k8s(env=env, participants=K8S_PARTICIPANTS[env], workflow_json=workflow.read_text(),
                      workflow_id=json.loads(workflow.read_text())["workflow_id"])


def tool(name: str) -> str:
    """Path of a lint tool that requirements-test.txt installs; a missing one is a setup error."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: pip install -r requirements-test.txt")
    return path
