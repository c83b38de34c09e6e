"""`trustmesh iot coordinator|participant`: run an IoT node."""
from __future__ import annotations

import argparse
from pathlib import Path

from trustmesh.nodeargs import add_ledger_args, chain_from_args, resolver_for

EVENT_POLL = 2.0
"""Seconds between chain reads when no event wakes the node earlier."""


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="role", required=True, metavar="ROLE")
    coord = sub.add_parser("coordinator", help="register a workflow and open its rounds one after another")
    coord.add_argument("--workflow", required=True, type=Path, help="workflow JSON file")
    coord.add_argument("--keys-dir", type=Path, default=None,
                       help="where NAME.pub files resolve node names of the workflow (default: the key's folder)")
    add_ledger_args(coord, redis_required=False)
    part = sub.add_parser("participant", help="train on one partition and submit to every open round")
    part.add_argument("--workflow-id", required=True, help="the workflow to take part in")
    part.add_argument("--partition", required=True, type=int, help="this node's partition index (0-based)")
    part.add_argument("--codec", default="f32", choices=["f32", "f16", "int8", "topk"], help="update codec")
    part.add_argument("--threads", type=int, default=1, help="torch threads for local training (default 1)")
    add_ledger_args(part)


def run(args: argparse.Namespace) -> int:
    from trustmesh.dataplane.store import RedisDataPlane
    from trustmesh.wakeup import Waker

    chain = chain_from_args(args)
    dataplane = RedisDataPlane(args.redis) if args.redis else None
    if args.role == "coordinator":
        from trustmesh.contracts.workflow import load_workflow
        from trustmesh.iot.coordinator import Coordinator

        doc = load_workflow(args.workflow)
        resolve = resolver_for(args.keys_dir or Path(args.key).parent)
        waker = Waker(chain.client, doc["workflow_id"])
        Coordinator(chain=chain, doc=doc, dataplane=dataplane, resolve=resolve,
                    poll_interval=EVENT_POLL, wait=waker.wait).run()
        return 0
    import torch

    from trustmesh.iot.participant import Participant

    torch.set_num_threads(max(1, args.threads))
    assert dataplane is not None
    waker = Waker(chain.client, args.workflow_id)
    Participant(chain=chain, dataplane=dataplane, workflow_id=args.workflow_id, partition=args.partition,
                codec=args.codec, poll_interval=EVENT_POLL, wait=waker.wait).run()
    return 0
