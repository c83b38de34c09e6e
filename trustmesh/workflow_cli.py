"""`trustmesh workflow validate|register`: check a workflow file, or register it on-chain.

``validate`` checks the schema and the cross-field rules. ``register`` signs ``register_workflow``
with the coordinator's key (the key the file names), records the initial model's hash and the
privacy cap, and prints the workflow id and status; the chain's reason when it refuses.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from trustmesh.contracts.workflow import (
    coordinator_key,
    load_workflow,
    read_workflow_file,
    register_payload,
    resolve_node,
    validate_workflow,
)
from trustmesh.errors import ConfigError, TransactionRejected
from trustmesh.nodeargs import add_ledger_args, resolver_for

REGISTER_WAIT = 30.0
"""Seconds `register` waits for the chain to commit or refuse the transaction."""


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
    register = sub.add_parser("register", help="register a workflow on-chain, signed by its coordinator's key")
    register.add_argument("file", metavar="FILE", type=Path, help="workflow JSON file")
    register.add_argument("--keys-dir", type=Path, default=None,
                          help="where NAME.pub files resolve node names of the workflow (default: the key's folder)")
    add_ledger_args(register, redis_required=False)


def _unresolved(doc: dict[str, Any], directory: Path) -> list[str]:
    resolve = resolver_for(directory.expanduser())
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


def _validate(args: argparse.Namespace) -> int:
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


def _register(args: argparse.Namespace) -> int:
    from trustmesh.fl.initial import initial_model
    from trustmesh.iot.coordinator import privacy_cap
    from trustmesh.nodeargs import chain_from_args

    doc = load_workflow(args.file)
    resolve = resolver_for(args.keys_dir or Path(args.key).parent)
    chain = chain_from_args(args)
    try:
        expected = coordinator_key(doc, resolve)
        if chain.public_key != expected:
            raise ConfigError(f"{args.key} is not the coordinator named in {args.file} "
                              f"({doc['federation_config']['coordinator_node']} = {expected[:12]}…)")
        blob, digest = initial_model(doc["model"]["name"])
        payload = register_payload(doc, initial_model_hash=digest, privacy_cap=privacy_cap(doc), resolve=resolve)
        if args.redis:
            from trustmesh.dataplane.store import MODEL_BLOB_TTL, RedisDataPlane

            dataplane = RedisDataPlane(args.redis)
            try:
                dataplane.put_model(doc["workflow_id"], digest, blob, ttl=MODEL_BLOB_TTL)
            finally:
                dataplane.close()
        fields = {k: v for k, v in payload.items() if k not in ("schema_version", "action")}
        try:
            chain.act("register_workflow", wait=REGISTER_WAIT, **fields)
        except TransactionRejected as exc:
            print(f"workflow {doc['workflow_id']}: refused by the chain: {exc}", file=sys.stderr)
            return 1
        workflow = chain.workflow(doc["workflow_id"])
    finally:
        chain.client.close()
    status = workflow.status if workflow is not None else "unknown"
    print(f"{doc['workflow_id']} {status}")
    return 0


def run(args: argparse.Namespace) -> int:
    """validate: print "ok" (0) or one problem per line (1). register: print "ID STATUS" (0) or the reason (1)."""
    if args.action == "register":
        return _register(args)
    return _validate(args)
