"""`trustmesh keygen NAME`: write a node's secp256k1 key pair (NAME.priv mode 0600, NAME.pub)."""
from __future__ import annotations

import argparse
from pathlib import Path

from trustmesh.errors import ConfigError
from trustmesh.ledger.keys import write_key_pair

DEFAULT_KEY_DIR = Path("~/.trustmesh/keys")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="key name: writes NAME.priv and NAME.pub")
    parser.add_argument(
        "--dir", type=Path, default=DEFAULT_KEY_DIR, help=f"directory for the key files (default {DEFAULT_KEY_DIR})"
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing key pair")


def run(args: argparse.Namespace) -> int:
    """Write the pair and print the public key (the node's identity on-chain)."""
    if not args.name or "/" in args.name or args.name.startswith("."):
        raise ConfigError(f"bad key name {args.name!r}: use a plain file name")
    _, public_key = write_key_pair(args.name, Path(args.dir).expanduser(), force=args.force)
    print(public_key)
    return 0
