"""`trustmesh services`: start a local Redis and PouchDB Server, print their URLs, wait for Ctrl-C.

For trying the data plane and browsing history by hand; `trustmesh run` starts its own.
"""
from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path

from trustmesh.history.couch import CouchHistory
from trustmesh.services.pouch import PouchServer
from trustmesh.services.process import ProcessGroup
from trustmesh.services.redis_server import RedisCluster, RedisServer


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, default=Path("runs/services"), help="data directory (kept)")
    parser.add_argument("--cluster", action="store_true", help="a 3-master Redis Cluster instead of one server")
    parser.add_argument("--no-couchdb", action="store_true", help="start Redis only")
    parser.add_argument("--json", action="store_true", help="print the URLs as one JSON object")


def run(args: argparse.Namespace) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with ProcessGroup() as group:
        redis: RedisServer | RedisCluster
        if args.cluster:
            redis = RedisCluster(data_dir=args.dir / "redis-cluster", group=group).start()
            urls = {role: redis.url_for(role) for role in redis.nodes[0].passwords}
        else:
            redis = RedisServer(data_dir=args.dir / "redis", group=group).start()
            urls = redis.urls()
        report: dict[str, object] = {"redis": urls}
        if not args.no_couchdb:
            pouch = PouchServer(data_dir=args.dir / "pouchdb", group=group).start()
            CouchHistory(pouch.url).ensure_databases()
            report.update(couchdb=pouch.url, fauxton=pouch.fauxton_url)
        if args.json:
            print(json.dumps(report), flush=True)
        else:
            for role, url in urls.items():
                print(f"redis {role:<12} {url}")
            if "couchdb" in report:
                print(f"couchdb            {report['couchdb']}")
                print(f"fauxton            {report['fauxton']}  (log in with the couchdb user)")
            print("Ctrl-C stops them.", flush=True)
        try:
            while not stop.wait(1.0):
                dead = group.dead()
                if dead:
                    print(f"stopped: {', '.join(c.name for c in dead)} exited", flush=True)
                    return 1
        except KeyboardInterrupt:
            pass
    return 0
