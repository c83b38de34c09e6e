"""docker/Dockerfile: the pins and properties the image must keep, and it copies every folder
setup.py installs (so the image never silently lacks a package)."""
from __future__ import annotations

import ast
import re

from deploy_support import DOCKER, REPO

DOCKERFILE = (DOCKER / "Dockerfile").read_text()


def _instructions(keyword: str) -> list[str]:
    return [line.split(None, 1)[1] for line in DOCKERFILE.replace("\\\n", " ").splitlines()
            if line.startswith(keyword + " ")]


def test_multi_stage_slim_python_311_non_root():
    bases = _instructions("FROM")
    assert len(bases) == 2 and all(b.startswith("python:3.11") and "-slim" in b for b in bases)
    user = _instructions("USER")[-1]
    assert re.fullmatch(r"\$\{UID\}:\$\{UID\}", user) and "ARG UID=10001" in DOCKERFILE


def test_pinned_torch_from_the_cpu_index_and_sdk_protobuf():
    assert "--index-url https://download.pytorch.org/whl/cpu torch==2.13.0" in DOCKERFILE
    assert "protobuf==3.20.3" in DOCKERFILE


def test_entrypoint_healthcheck_and_no_keys():
    assert _instructions("ENTRYPOINT") == ['["trustmesh"]']
    assert "trustmesh.deploy.health" in _instructions("HEALTHCHECK")[0]
    assert "/usr/local/bin/trustmesh-node" in DOCKERFILE
    assert not re.search(r"keygen|\.priv", DOCKERFILE)


def test_image_copies_every_folder_setup_py_installs():
    tree = ast.parse((REPO / "setup.py").read_text())
    folders = next(ast.literal_eval(node.value) for node in ast.walk(tree)
                   if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "FOLDERS")
    copied = {src.split()[0].rstrip("/") for src in _instructions("COPY") if not src.startswith("--")}
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
    for folder in {f.split("/")[0] for f in folders.values()}:
        assert folder in copied, f"the Dockerfile does not COPY {folder}/"
        assert f"!{folder}/" in ignore, f"Dockerfile.dockerignore keeps {folder}/ out of the build context"
