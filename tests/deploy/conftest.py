"""Fixtures for the deployment checks: the repo's rendered files, fresh renders, lint tools.

No Docker engine or Kubernetes cluster runs here: every check is static, except the Redis ACL
test, which boots a real redis-server through the rendered start script.
"""
from __future__ import annotations

import functools
import json
import shutil
import subprocess
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


@functools.cache
def fresh_k8s(env: str) -> dict[str, str]:
    return render_k8s(env=env, participants=K8S_PARTICIPANTS[env])


def tool(name: str) -> str:
    """Path of a lint tool that requirements-test.txt installs; a missing one is a setup error."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: pip install -r requirements-test.txt")
    return path


@pytest.fixture(scope="session")
def compose_schema() -> dict:
    """The compose-spec JSON Schema shipped by the npm package dclint, installed into .local/dclint."""
    prefix = REPO / ".local" / "dclint"
    schema = prefix / "node_modules" / "dclint" / "schemas" / "compose.schema.json"
    if not schema.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is absent, so the compose-spec schema (npm package dclint@3.1.0) cannot be had")
        prefix.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "install", "--ignore-scripts", "--no-audit", "--no-fund", "--silent",
                        "--prefix", str(prefix), DCLINT], check=True, timeout=300)
    return json.loads(schema.read_text())


@pytest.fixture(scope="session")
def compose_files() -> dict[str, str]:
    """A fresh render of the compose folder, as committed under docker/."""
    return fresh_compose()


@pytest.fixture(scope="session")
def compose_doc(compose_files: dict[str, str]) -> dict:
    import yaml

    return yaml.safe_load(compose_files["compose.yaml"])


@pytest.fixture(scope="session")
def k8s_docs() -> dict[str, list[dict]]:
    """Every Kubernetes document of both profiles, by profile."""
    import yaml

    return {env: [doc for text in fresh_k8s(env).values() for doc in yaml.safe_load_all(text) if doc]
            for env in K8S_PARTICIPANTS}
