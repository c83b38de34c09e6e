"""Linters on what the deployment ships: hadolint (Dockerfile), shellcheck (every script, as
committed and as rendered into ConfigMaps), yamllint (compose file and manifests)."""
from __future__ import annotations

import subprocess

from deploy_support import DOCKER, KUBERNETES, REPO, tool

from trustmesh.deploy.scripts import SCRIPTS

YAMLLINT_CONFIG = """
extends: default
rules:
  line-length: disable
  document-start: {present: true}
  comments: {min-spaces-from-content: 1}
  truthy: {allowed-values: ["true", "false"], check-keys: false}
"""


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=REPO)


def test_dockerfile_passes_hadolint():
    result = _run([tool("hadolint"), "--failure-threshold", "info", str(DOCKER / "Dockerfile")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n")
    assert _run([tool("hadolint"), str(bad)]).returncode != 0


def test_committed_scripts_pass_shellcheck():
    scripts = sorted(str(p) for p in DOCKER.rglob("*.sh"))
    assert len(scripts) >= 6
    result = _run([tool("shellcheck"), "--severity=style", *scripts])
    assert result.returncode == 0, result.stdout + result.stderr


def test_scripts_in_configmaps_are_the_checked_ones(k8s_docs):
    """The ConfigMaps carry exactly the script texts that shellcheck checked."""
    for env, docs in k8s_docs.items():
        for doc in docs:
            if doc["kind"] != "ConfigMap":
                continue
            for name, text in doc["data"].items():
                if name.endswith(".sh"):
                    assert text == SCRIPTS[name], f"{env}: ConfigMap {doc['metadata']['name']}/{name}"


def test_shellcheck_catches_a_bad_script(tmp_path):
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/bin/sh\nrm -rf $DIR/*\n")
    assert _run([tool("shellcheck"), str(bad)]).returncode != 0


def test_yaml_passes_yamllint(tmp_path):
    config = tmp_path / "yamllint.yaml"
    config.write_text(YAMLLINT_CONFIG)
    manifests = sorted(str(p) for p in KUBERNETES.glob("*/*.yaml"))
    assert len(manifests) >= 20
    result = _run([tool("yamllint"), "--strict", "-c", str(config), *manifests])
    assert result.returncode == 0, result.stdout + result.stderr
    # A compose file needs no leading ---; everything else is checked as for the manifests.
    config.write_text(YAMLLINT_CONFIG.replace("{present: true}", "disable"))
    result = _run([tool("yamllint"), "--strict", "-c", str(config), *sorted(str(p) for p in DOCKER.glob("*.yaml"))])
    assert result.returncode == 0, result.stdout + result.stderr
