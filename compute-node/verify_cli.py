"""`trustmesh verify-round`: re-check a round from the chain, print a verdict per check.

Exit 0: every check passed. Exit 2: mismatch (the posted result, an exclusion or a stored model is
wrong). Exit 3: a blob the check needs is no longer available (nothing concluded).
"""
from __future__ import annotations

import argparse

EXIT_CODES = {"ok": 0, "mismatch": 2, "unavailable": 3}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n")[0] if __doc__ else None
    parser.epilog = "exit codes: 0 ok, 2 mismatch, 3 blob no longer available"
    parser.add_argument("--workflow-id", required=True, help="the workflow")
    parser.add_argument("--round", required=True, type=int, help="the round number")
    parser.add_argument("--url", required=True, help="validator endpoint(s), comma-separated")
    parser.add_argument("--redis", required=True, help="Redis URL (read access to the round's keys)")
    parser.add_argument("--couchdb", default=None, help="CouchDB URL: archived models when Redis expired them")


def run(args: argparse.Namespace) -> int:
    from trustmesh.chain import Chain
    from trustmesh.compute.verify import verify_round
    from trustmesh.dataplane.store import RedisDataPlane
    from trustmesh.ledger.client import LedgerClient
    from trustmesh.ledger.keys import new_signer
    from trustmesh.nodeargs import urls

    chain = Chain(client=LedgerClient(urls=urls(args.url)), signer=new_signer())  # reads only
    archive = None
    if args.couchdb:
        from trustmesh.history.couch import CouchHistory

        archive = CouchHistory(args.couchdb).get_model_attachment
    report = verify_round(chain=chain, dataplane=RedisDataPlane(args.redis), workflow_id=args.workflow_id,
                          round_no=args.round, archive=archive)
    for check in report.checks:
        mark = "ok  " if check.ok else ("gone" if check.unavailable else "FAIL")
        print(f"[{mark}] {check.name}: {check.detail}")
    print(f"verdict: {report.verdict}")
    return EXIT_CODES[report.verdict]
