"""`trustmesh deploy`: render the compose folder and the Kubernetes manifests; publish key Secrets."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from trustmesh.deploy.compose import render_compose
from trustmesh.deploy.k8s import ENVS, PLACEHOLDER_WORKFLOW_ID, render_k8s
from trustmesh.deploy.topology import Topology
from trustmesh.errors import ConfigError

__all__ = ["configure", "run", "write_files"]


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="target", required=True, metavar="{compose,k8s,secrets}")
    compose = sub.add_parser("compose", help="render docker/compose.yaml and its config files")
    compose.add_argument("--participants", type=int, default=3, help="number of participants (default 3)")
    compose.add_argument("--ledger", choices=["pbft", "devnet"], default="pbft",
                         help="4 Sawtooth validators with PBFT (default) or one embedded devnet")
    compose.add_argument("--out", required=True, type=Path, help="folder to write (e.g. docker)")

    k8s = sub.add_parser("k8s", help="render plain Kubernetes manifests")
    k8s.add_argument("--env", choices=sorted(ENVS), required=True, help="dev (devnet, small) or prod (PBFT)")
    k8s.add_argument("--participants", type=int, default=3, help="number of participants (default 3)")
    k8s.add_argument("--compute-nodes", type=int, default=None,
                     help="number of compute nodes (default 2); each gets a key the workflow can name")
    k8s.add_argument("--workflow", type=Path, help="workflow JSON to put into the workflow ConfigMap")
    k8s.add_argument("--workflow-id", default=None,
                     help="the workflow id participants join (default: the workflow file's workflow_id)")
    k8s.add_argument("--out", required=True, type=Path, help="folder to write (e.g. kubernetes/prod)")

    secrets = sub.add_parser("secrets", help="(in a Job) publish key files as Kubernetes Secrets")
    secrets.add_argument("--dir", required=True, type=Path, help="folder holding NAME.priv / NAME.pub")
    secrets.add_argument("--namespace", required=True)
    secrets.add_argument("--secret", action="append", required=True, metavar="SECRET=KEY[,KEY...]",
                         help="one Secret and the key names it holds (repeatable)")
    secrets.add_argument("--api", help="API server URL (default: the in-cluster service)")
    secrets.add_argument("--token-file", type=Path, help="bearer token file (with --api)")
    secrets.add_argument("--ca", help="CA bundle to verify the API server (with --api)")


def write_files(out: Path, files: dict[str, str]) -> list[Path]:
    """Write each rendered file under `out`; shell scripts are made executable."""
    written = []
    for name, text in sorted(files.items()):
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if name.endswith(".sh"):
            path.chmod(0o755)
        written.append(path)
    return written


def run(args: argparse.Namespace) -> int:
    if args.target == "compose":
        topology = (Topology(participants=args.participants) if args.ledger == "pbft"
                    else Topology(participants=args.participants, ledger="devnet", validators=1))
        written = write_files(args.out, render_compose(topology))
    elif args.target == "k8s":
        workflow, workflow_id = None, args.workflow_id
        if args.workflow is not None:
            if not args.workflow.is_file():
                raise ConfigError(f"workflow file {args.workflow} not found")
            workflow = args.workflow.read_text()
            if workflow_id is None:
                try:
                    workflow_id = json.loads(workflow)["workflow_id"]
                except (ValueError, KeyError, TypeError) as exc:
                    raise ConfigError(f"{args.workflow} has no workflow_id; pass --workflow-id") from exc
        written = write_files(args.out, render_k8s(env=args.env, participants=args.participants,
                                                   compute_nodes=args.compute_nodes, workflow_json=workflow,
                                                   workflow_id=workflow_id or PLACEHOLDER_WORKFLOW_ID))
    else:
        from trustmesh.deploy.secrets import SecretSpec, publish_secrets

        specs = [SecretSpec.parse(text) for text in args.secret]
        token = args.token_file.read_text().strip() if args.token_file else None
        results = publish_secrets(key_dir=args.dir, namespace=args.namespace, specs=specs, api=args.api,
                                  token=token, verify=args.ca or True)
        for name, outcome in results.items():
            print(f"secret {args.namespace}/{name}: {outcome}")
        return 0
    for path in written:
        print(path)
    return 0
