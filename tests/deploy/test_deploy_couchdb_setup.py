"""couchdb-setup.sh, run for real with a stand-in for curl (no CouchDB cluster runs here): the
_cluster_setup calls a multi-node and a single-node cluster need, in order, then the history
databases; an already finished cluster is left alone."""
from __future__ import annotations

import json
import os
import subprocess

import pytest
from deploy_support import DOCKER

# Logs each call's method, URL and body; answers the setup state from $STATE and 201 to PUTs.
_CURL = r"""#!/bin/bash
method=GET; data=""; url=""; write=""
while [ $# -gt 0 ]; do
  case "$1" in
    -X) method="$2"; shift ;;
    -d) data="$2"; shift ;;
    -w) write="$2"; shift ;;
    -u|-H|-o) shift ;;
    -*) ;;
    *) url="$1" ;;
  esac
  shift
done
printf '%s\t%s\t%s\n' "$method" "$url" "$data" >> "$CALLS"
case "$url" in
  */_up) echo '{"status":"ok"}' ;;
  */_cluster_setup) if [ "$method" = GET ]; then echo "{\"state\":\"$STATE\"}"; else echo '{"ok":true}'; fi ;;
  *) if [ -n "$write" ]; then printf 201; fi ;;
esac
"""


@pytest.fixture
def curl(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "curl").write_text(_CURL)
    (bin_dir / "curl").chmod(0o755)
    calls = tmp_path / "calls.jsonl"
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", CALLS=str(calls),
               COUCHDB_USER="trustmesh", COUCHDB_PASSWORD="0a1b2c", STATE="cluster_disabled")

    def run(**extra: str) -> list[list[str]]:
        calls.unlink(missing_ok=True)
        subprocess.run(["sh", str(DOCKER / "couchdb" / "couchdb-setup.sh")], env={**env, **extra},
                       check=True, timeout=60, capture_output=True)
        return [line.split("\t") for line in calls.read_text().splitlines()]

    return run


def _actions(calls):
    return [(json.loads(body)["action"], json.loads(body).get("remote_node") or json.loads(body).get("host"))
            for method, url, body in calls if method == "POST"]


def test_three_nodes_join_into_one_cluster_then_databases(curl):
    calls = curl(COUCHDB_NODES="couchdb-0 couchdb-1 couchdb-2")
    assert [url for m, url, _ in calls if url.endswith("/_up")] == [
        f"http://couchdb-{i}:5984/_up" for i in range(3)]
    assert _actions(calls) == [("enable_cluster", "couchdb-1"), ("add_node", "couchdb-1"),
                               ("enable_cluster", "couchdb-2"), ("add_node", "couchdb-2"),
                               ("finish_cluster", None)]
    assert all(url == "http://couchdb-0:5984/_cluster_setup" for m, url, _ in calls if m == "POST")
    enable = next(json.loads(b) for m, _, b in calls if m == "POST")
    assert enable["node_count"] == "3" and enable["password"] == "0a1b2c"
    assert [url for m, url, _ in calls if m == "PUT"] == [
        f"http://couchdb-0:5984/{db}" for db in ("fl_workflows", "fl_rounds", "fl_nodes", "fl_models")]


def test_one_node_is_finished_as_a_single_node(curl):
    calls = curl(COUCHDB_NODES="couchdb-0")
    assert _actions(calls) == [("enable_single_node", None)]


def test_a_finished_cluster_is_left_alone(curl):
    calls = curl(COUCHDB_NODES="couchdb-0 couchdb-1 couchdb-2", STATE="cluster_finished")
    assert _actions(calls) == []
    assert len([c for c in calls if c[0] == "PUT"]) == 4
