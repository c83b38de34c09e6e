"""Command-line arguments every node shares (ledger URLs, key, Redis), parsed in one place."""
from __future__ import annotations

import argparse
from pathlib import Path

from trustmesh.chain import Chain
from trustmesh.errors import ConfigError
from trustmesh.ledger.client import LedgerClient
from trustmesh.ledger.keys import load_signer


def add_ledger_args(parser: argparse.ArgumentParser, *, redis: bool = True, redis_required: bool = True) -> None:
    parser.add_argument("--url", required=True,
                        help="validator component endpoint(s), comma-separated for failover (tcp://HOST:4004)")
    parser.add_argument("--key", required=True, type=Path, help="this node's private key file (NAME.priv)")
    if redis:
        parser.add_argument("--redis", required=redis_required, default=None,
                            help="Redis URL for this node's role, e.g. redis://user:pass@127.0.0.1:6379/0")


def urls(value: str) -> list[str]:
    found = [u.strip() for u in value.split(",") if u.strip()]
    if not found:
        raise ConfigError("--url names no validator")
    return found


def chain_from_args(args: argparse.Namespace) -> Chain:
    return Chain(client=LedgerClient(urls=urls(args.url)), signer=load_signer(args.key))


def resolver_for(key_dir: Path):  # type: ignore[no-untyped-def]
    """Resolve a node name in a workflow file to its public key via ``KEY_DIR/NAME.pub``."""

    def resolve(name: str) -> str:
        path = key_dir / f"{name}.pub"
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"node {name!r}: no public key at {path}") from exc

    return resolve
