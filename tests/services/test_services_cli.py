"""`trustmesh services` as a real process: prints working URLs, stops its servers on SIGTERM."""
import json
import sys

import redis
import requests

from trustmesh.net import wait_for_port
from trustmesh.services import ProcessGroup


def test_services_command_starts_and_stops_its_servers(tmp_path):
    log = tmp_path / "services.log"
    with ProcessGroup() as group:
        child = group.spawn("services", [sys.executable, "-m", "trustmesh.cli", "services", "--dir",
                                         str(tmp_path / "svc"), "--json"], log_path=log)
        assert child.wait_for_log('"fauxton"', timeout=90), child.log_tail()
        report = json.loads(next(line for line in log.read_text().splitlines() if line.startswith("{")))
        participant = redis.Redis.from_url(report["redis"]["participant"])
        assert participant.ping()
        assert requests.get(report["fauxton"], timeout=10).status_code == 200
        redis_port = participant.connection_pool.connection_kwargs["port"]
        participant.close()
        assert child.terminate(timeout=30) == 0
    assert not wait_for_port("127.0.0.1", redis_port, timeout=0.5)
