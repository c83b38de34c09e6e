"""Every `trustmesh ...` command the compose file, the manifests, the scripts and docs/deploy.md
run is a subcommand in `trustmesh.cli.COMMANDS`, and that subcommand's own parser accepts its
flags. A subcommand whose module does not exist yet fails here until it lands."""
from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import re
import shlex

import pytest
import yaml
from deploy_support import DOCKER, REPO, fresh_compose, fresh_k8s

from trustmesh.cli import COMMANDS
from trustmesh.deploy.scripts import SCRIPTS
from trustmesh.deploy.topology import IMAGES

_COMPOSE_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*)|:?\?[^}]*)?\}")
_K8S_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
_SAMPLE = {"PARTITION": "0", "VERIFY_ROUND": "1"}


def _sample(name: str, default: str | None = None) -> str:
    return default if default else _SAMPLE.get(name, "sample0")


def _compose_commands() -> list[tuple[str, list[str]]]:
    found = []
    doc = yaml.safe_load(fresh_compose()["compose.yaml"])
    for name, service in doc["services"].items():
        if "trustmesh" not in service.get("image", ""):
            continue
        entry = service.get("entrypoint", ["trustmesh"])
        assert entry in (["trustmesh"], ["trustmesh-node"]), f"{name}: unexpected entrypoint {entry}"
        argv = [_COMPOSE_VAR.sub(lambda m: _sample(m.group(1), m.group(2)), a) for a in service["command"]]
        found.append((f"compose:{name}", argv))
    return found


def _k8s_commands() -> list[tuple[str, list[str]]]:
    found = []
    for env in ("dev", "prod"):
        for file, text in fresh_k8s(env).items():
            for doc in yaml.safe_load_all(text):
                spec = doc.get("spec", {})
                pod = spec.get("template", {}).get("spec", {})
                for c in pod.get("initContainers", []) + pod.get("containers", []):
                    if c["image"] != IMAGES["trustmesh"]:
                        continue
                    command = c.get("command", ["trustmesh"])
                    if command[0] == "sh":  # one of the scripts, whose trustmesh lines are checked below
                        assert command[1].startswith("/scripts/") and command[1][9:] in SCRIPTS
                        continue
                    assert command in (["trustmesh"], ["trustmesh-node"]), f"{file}/{c['name']}: {command}"
                    argv = [_K8S_VAR.sub(lambda m: _sample(m.group(1)), a) for a in c["args"]]
                    found.append((f"k8s-{env}:{file}:{doc['metadata']['name']}/{c['name']}", argv))
    return found


def _shell_blocks(markdown: str) -> list[str]:
    """The lines of every ```sh fenced block (indented ones too)."""
    lines, inside = [], None
    for line in markdown.splitlines():
        fence = line.strip()
        if fence.startswith("```"):
            inside = None if inside is not None else fence[3:].strip()
        elif inside in {"sh", "bash", "console"}:
            lines.append(line)
    return lines


def _text_commands() -> list[tuple[str, list[str]]]:
    """`trustmesh ...` lines in shell scripts and in docs/deploy.md's code blocks."""
    found = []
    sources = {p.relative_to(REPO).as_posix(): p.read_text() for p in DOCKER.rglob("*.sh")}
    sources.update({f"scripts:{name}": text for name, text in SCRIPTS.items()})
    docs = REPO / "docs" / "deploy.md"
    if docs.exists():
        sources["docs/deploy.md"] = "\n".join(_shell_blocks(docs.read_text()))
    for where, text in sources.items():
        text = text.replace("\\\n", " ")
        for line in text.splitlines():
            if " sh -c " in line:  # e.g. kubectl exec POD -- sh -c 'trustmesh ...'
                words = shlex.split(line)
                line = next(words[i + 2] for i in range(len(words) - 2) if words[i:i + 2] == ["sh", "-c"])
            match = re.match(r"(?:exec\s+)?trustmesh\s+(.*)$", line.strip())
            if not match or "$@" in line or line.lstrip().startswith("#"):
                continue
            words = shlex.split(match.group(1).split(" | ")[0].split(" && ")[0], comments=True)
            words = [re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: _sample(m.group(1)), w)
                     for w in words]
            found.append((f"{where}: {line.strip()[:60]}", words))
    return found


ALL = _compose_commands() + _k8s_commands() + _text_commands()


def test_the_manifests_run_the_commands_the_brief_lists():
    subcommands = {argv[0] if argv[0] not in {"tp", "iot", "workflow", "deploy"} else " ".join(argv[:2])
                   for _, argv in ALL}
    assert {"tp federation", "tp iot-data", "compute", "iot coordinator", "iot participant", "keygen",
            "workflow validate", "verify-round", "devnet", "deploy secrets"} <= subcommands


@pytest.mark.parametrize(("where", "argv"), ALL, ids=[w for w, _ in ALL])
def test_command_is_accepted_by_its_subcommand_parser(where, argv):
    name, rest = argv[0], argv[1:]
    assert name in COMMANDS, f"{where}: `trustmesh {name}` is not a subcommand in trustmesh.cli.COMMANDS"
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"trustmesh {name}")
    module.configure(parser)
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        try:
            parser.parse_args(rest)
        except SystemExit as exc:
            pytest.fail(f"{where}: `trustmesh {' '.join(argv)}` refused: {errors.getvalue().strip()} ({exc})")
