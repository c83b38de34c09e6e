"""Fixtures for the deployment checks: fresh renders, the compose-spec schema.

No Docker engine or Kubernetes cluster runs here: the checks are static, except the Redis tests,
which boot real redis-servers through the rendered start scripts, and the script tests, which run
the scripts against stand-ins for the commands that exist only inside third-party images.
"""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml
from deploy_support import DCLINT, K8S_PARTICIPANTS, REPO, fresh_compose, fresh_k8s


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
    return yaml.safe_load(compose_files["compose.yaml"])


@pytest.fixture(scope="session")
def k8s_docs() -> dict[str, list[dict]]:
    """Every Kubernetes document of both profiles, by profile."""
    return {env: [doc for text in fresh_k8s(env).values() for doc in yaml.safe_load_all(text) if doc]
            for env in K8S_PARTICIPANTS}
