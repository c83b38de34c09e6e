"""`trustmesh workflow validate FILE`: check a workflow file against the schema and the cross-field rules."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trustmesh.contracts.workflow import read_workflow_file, resolve_node, validate_workflow
from trustmesh.errors import ConfigError


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    validate = sub.add_parser("validate", help="check a workflow JSON file; prints ok or one line per problem")
    validate.add_argument("file", metavar="FILE", type=Path, help="workflow JSON file")
    validate.add_argument(
        "--key-dir",
        type=Path,
        default=None,
        help="also check that every key name resolves to DIR/NAME.pub (a public key)",
    )


def _key_dir_resolver(directory: Path):  # type: ignore[no-untyped-def]
    def resolve(name: str) -> str:
        path = directory.expanduser() / f"{name}.pub"
        try:
            return path.read_text("utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"no public key file {path}") from exc

    return resolve


def _unresolved(doc: dict, directory: Path) -> list[str]:
    resolve = _key_dir_resolver(directory)
    fed = doc["federation_config"]
    named = [("federation_config.coordinator_node", fed["coordinator_node"])]
    for field in ("participant_nodes", "compute_nodes"):
        named += [(f"federation_config.{field}[{i}]", node) for i, node in enumerate(fed[field])]
    problems = []
    for path, node in named:
        try:
            resolve_node(node, resolve)
        except ConfigError as exc:
            problems.append(f"{path}: {exc}")
    return problems


def run(args: argparse.Namespace) -> int:
    """Print "ok" and return 0, or print one problem per line (JSON path first) and return 1."""
    doc = read_workflow_file(args.file)
    problems = validate_workflow(doc)
    if not problems and args.key_dir is not None:
        problems = _unresolved(doc, args.key_dir)
    if problems:
        for line in problems:
            print(line, file=sys.stderr)
        return 1
    print("ok")
    return 0
