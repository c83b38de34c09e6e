"""``trustmesh devnet``: run the single-node ledger until SIGTERM or Ctrl-C."""
from __future__ import annotations

import argparse
import fcntl
import logging
import os
import signal
from pathlib import Path
from types import FrameType

import zmq

from trustmesh.errors import ConfigError, LedgerError
from trustmesh.ledger.keys import load_signer, write_key_pair

LOGGER = logging.getLogger(__name__)

KEY_NAME = "devnet"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bind", default="tcp://127.0.0.1:4004", help="component endpoint (ZMQ ROUTER)")
    parser.add_argument("--data", required=True, type=Path, help="directory for the chain database and key")
    parser.add_argument(
        "--max-batches-per-block", type=int, default=100, help="most user batches a block takes (default 100)"
    )
    parser.add_argument(
        "--ping-interval", type=float, default=5.0, help="seconds between pings to each TP (default 5)"
    )
    parser.add_argument(
        "--ping-timeout", type=float, default=10.0, help="seconds a TP may leave a ping unanswered (default 10)"
    )


def _lock(data_dir: Path) -> int:
    """Hold an exclusive lock on the data directory for the life of the process."""
    fd = os.open(data_dir / "devnet.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise ConfigError(f"another devnet is using {data_dir}") from exc
    return fd


def run(args: argparse.Namespace) -> int:
    from trustmesh.devnet.server import Devnet

    data_dir: Path = args.data
    if args.max_batches_per_block < 1:
        raise ConfigError("--max-batches-per-block must be at least 1")
    data_dir.mkdir(parents=True, exist_ok=True)
    lock_fd = _lock(data_dir)
    key_file = data_dir / f"{KEY_NAME}.priv"
    if not key_file.exists():
        write_key_pair(KEY_NAME, data_dir)
    signer = load_signer(key_file)
    try:
        devnet = Devnet(
            bind=args.bind,
            data_dir=data_dir,
            signer=signer,
            max_batches_per_block=args.max_batches_per_block,
            ping_interval=args.ping_interval,
            ping_timeout=args.ping_timeout,
        )
    except zmq.ZMQError as exc:
        raise LedgerError(f"cannot bind {args.bind}: {exc}") from exc

    def _stop(signum: int, _frame: FrameType | None) -> None:
        LOGGER.info("signal %d: stopping", signum)
        devnet.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        devnet.serve_forever()
    finally:
        os.close(lock_fd)
    return 0
