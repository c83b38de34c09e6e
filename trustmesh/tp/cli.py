"""`trustmesh tp federation|iot-data`: run a transaction processor against a validator.

The same processes serve the embedded devnet and a real Sawtooth network's validators.
"""
from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="family", required=True, metavar="FAMILY")
    fed = sub.add_parser("federation", help="workflows, rounds, task claims, results, the validation gate")
    fed.add_argument("--url", required=True, help="validator component endpoint, e.g. tcp://127.0.0.1:4004")
    iot = sub.add_parser("iot-data", help="submissions: on-chain index plus the idempotent Redis append")
    iot.add_argument("--url", required=True, help="validator component endpoint, e.g. tcp://127.0.0.1:4004")
    iot.add_argument("--redis", required=True, help="Redis URL of the TP role, e.g. redis://tps:PASS@host:6379/0")


def run(args: argparse.Namespace) -> int:
    from trustmesh.tp.common import run_processor

    if args.family == "federation":
        from trustmesh.tp.federation.handler import FederationHandler

        return run_processor(args.url, FederationHandler())
    from trustmesh.dataplane.store import RedisDataPlane
    from trustmesh.tp.iot_data.handler import IotDataHandler

    return run_processor(args.url, IotDataHandler(dataplane=RedisDataPlane(args.redis)))
