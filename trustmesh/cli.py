"""The `trustmesh` command. Each subcommand lives in its own module and is imported only when used.

A subcommand module offers ``configure(parser: argparse.ArgumentParser) -> None`` (add its
arguments, or its own sub-subcommands) and ``run(args: argparse.Namespace) -> int`` (the exit code).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from trustmesh.errors import TrustMeshError

# name -> (module, one-line help). Keep the list sorted by name; one row per subcommand.
COMMANDS: dict[str, tuple[str, str]] = {
    "compute": ("trustmesh.compute.cli", "run a compute node: close rounds, aggregate, attest, evaluate"),
    "deploy": ("trustmesh.deploy.cli", "render docker compose files and Kubernetes manifests"),
    "devnet": ("trustmesh.devnet.cli", "run the embedded single-node ledger (Sawtooth 1.2 protocol)"),
    "iot": ("trustmesh.iot.cli", "run an IoT node: the coordinator or a participant"),
    "keygen": ("trustmesh.ledger.keygen", "write a secp256k1 key pair for a node"),
    "privacy": ("trustmesh.privacy.cli", "DP budget: the on-chain round cap and epsilon spent per round"),
    "run": ("trustmesh.runner.cli", "run a whole federated training on this machine (the main job)"),
    "services": ("trustmesh.services.cli", "start a local Redis and PouchDB Server and print their URLs"),
    "tp": ("trustmesh.tp.cli", "run a transaction processor: federation or iot-data"),
    "verify-round": ("trustmesh.compute.verify_cli", "re-check a round's result from the chain (exit 2 on mismatch)"),
    "workflow": ("trustmesh.workflow_cli", "validate a federated-learning workflow file, or register it on-chain"),
}


def _top_parser() -> argparse.ArgumentParser:
    width = max(len(name) for name in COMMANDS)
    listing = "\n".join(f"  {name:<{width}}  {text}" for name, (_, text) in sorted(COMMANDS.items()))
    return argparse.ArgumentParser(
        prog="trustmesh",
        description="Federated learning for open IoT environments, verifiable on a Sawtooth ledger.",
        epilog=f"subcommands:\n{listing}\n\n`trustmesh SUBCOMMAND --help` explains each one.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="trustmesh [-h] [-v] SUBCOMMAND ...",
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    top.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    top.add_argument("subcommand", nargs="?", help=argparse.SUPPRESS)
    verbose = "-v" in argv[:1] or "--verbose" in argv[:1]
    if verbose:
        argv = argv[1:]
    if not argv or argv[0] in {"-h", "--help"}:
        top.print_help()
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"trustmesh: unknown subcommand {name!r}; see `trustmesh --help`", file=sys.stderr)
        return 2
    module_name, text = COMMANDS[name]
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"trustmesh {name}", description=text)
    module.configure(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except TrustMeshError as exc:
        print(f"trustmesh {name}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"trustmesh {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
