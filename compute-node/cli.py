"""`trustmesh compute`: run a compute node (close rounds, aggregate, attest, evaluate, history)."""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from trustmesh.nodeargs import add_ledger_args, chain_from_args

EVENT_POLL = 1.0
FAULT_DELAY_ENV = "TRUSTMESH_FAULT_AGGREGATE_DELAY"
"""Tests only: seconds a node waits between claiming the aggregate task and running it."""


def configure(parser: argparse.ArgumentParser) -> None:
    add_ledger_args(parser)
    parser.add_argument("--workflow-id", action="append", required=True, dest="workflow_ids",
                        help="a workflow this node serves (repeat for several)")
    parser.add_argument("--couchdb", default=None,
                        help="CouchDB URL with credentials for the round history (omit to keep no history)")
    parser.add_argument("--outbox", type=Path, default=None,
                        help="history outbox file (default: beside the key, NAME.outbox.sqlite)")
    parser.add_argument("--heartbeat-every", type=float, default=2.0,
                        help="seconds between heartbeat transactions while a round waits on block time")


def run(args: argparse.Namespace) -> int:
    import torch

    from trustmesh.compute.node import ComputeNode
    from trustmesh.dataplane.store import RedisDataPlane
    from trustmesh.wakeup import Waker

    torch.set_num_threads(1)
    chain = chain_from_args(args)
    history = None
    if args.couchdb:
        from trustmesh.compute.recorder import open_recorder

        outbox = args.outbox or Path(args.key).with_suffix(".outbox.sqlite")
        history = open_recorder(args.couchdb, outbox)
    waker = Waker(chain.client, args.workflow_ids[0] if len(args.workflow_ids) == 1 else None)
    node = ComputeNode(chain=chain, dataplane=RedisDataPlane(args.redis), workflow_ids=args.workflow_ids,
                       history=history, poll_interval=EVENT_POLL, wait=waker.wait,
                       heartbeat_every=args.heartbeat_every,
                       aggregate_delay=float(os.environ.get(FAULT_DELAY_ENV, "0") or 0))
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        node.run()
    finally:
        if history is not None:
            history.close()
    return 0


def _exit_on_sigterm(_signum: int, _frame: object) -> None:
    """Unwind normally on SIGTERM so the history outbox gets flushed and closed."""
    sys.exit(0)
