"""The embedded default on one machine: devnet, both TPs, Redis, PouchDB Server, compute nodes,
a coordinator and participants, each a child process started on free ports and stopped by PID.

With ``url`` / ``redis_url`` / ``couchdb_url`` given, the stack uses those running services (a real
Sawtooth network with the block-info injector, a Redis server or cluster, a CouchDB) and starts
only what is missing. Used by `trustmesh run` and by the end-to-end tests.
"""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from trustmesh.devnet.launch import DevnetProcess
from trustmesh.ledger.keys import write_key_pair
from trustmesh.services.pouch import PouchServer
from trustmesh.services.process import Child, ProcessGroup
from trustmesh.services.redis_server import RedisServer

LOGGER = logging.getLogger(__name__)


def trustmesh_argv(*args: str) -> list[str]:
    """The command line that runs ``trustmesh ARGS`` with this interpreter."""
    return [sys.executable, "-m", "trustmesh.cli", *args]


@dataclass
class NodeKey:
    name: str
    private_path: Path
    public_key: str


@dataclass
class LocalStack:
    """Services and node processes of one run, all under ``run_dir``."""

    run_dir: Path
    url: str | None = None
    redis_url: str | None = None
    couchdb_url: str | None = None
    with_history: bool = True
    with_tps: bool = True
    group: ProcessGroup = field(default_factory=ProcessGroup)
    devnet: DevnetProcess | None = None
    redis: RedisServer | None = None
    pouch: PouchServer | None = None
    keys: dict[str, NodeKey] = field(default_factory=dict)
    nodes: dict[str, Child] = field(default_factory=dict)

    # -- services ---------------------------------------------------------------------------------
    def start_services(self) -> LocalStack:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.redis_url is None:
            self.redis = RedisServer(data_dir=self.run_dir / "redis").start()
        if self.with_history and self.couchdb_url is None:
            self.pouch = PouchServer(data_dir=self.run_dir / "pouchdb").start()
        if self.url is None:
            self.devnet = DevnetProcess(data_dir=self.run_dir / "devnet").start()
        if self.with_tps:
            self.start_tps()  # a real network needs our TPs beside its validators as well
        return self

    def start_tps(self) -> None:
        logs = self.run_dir / "logs"
        self.group.spawn("tp-federation", trustmesh_argv("tp", "federation", "--url", self.ledger_url),
                         log_path=logs / "tp-federation.log")
        self.group.spawn("tp-iot-data", trustmesh_argv("tp", "iot-data", "--url", self.ledger_url,
                                                       "--redis", self.redis_for("tps")),
                         log_path=logs / "tp-iot-data.log")

    @property
    def ledger_url(self) -> str:
        if self.url is not None:
            return self.url
        assert self.devnet is not None, "start_services() first"
        return self.devnet.url

    def redis_for(self, role: str) -> str:
        if self.redis_url is not None:
            return self.redis_url
        assert self.redis is not None, "start_services() first"
        return self.redis.url_for(role)

    @property
    def history_url(self) -> str | None:
        if self.couchdb_url is not None:
            return self.couchdb_url
        return self.pouch.url if self.pouch is not None else None

    @property
    def fauxton_url(self) -> str | None:
        if self.pouch is not None:
            return self.pouch.fauxton_url
        return self.couchdb_url.rstrip("/") + "/_utils" if self.couchdb_url else None

    # -- keys and nodes -----------------------------------------------------------------------------
    def key(self, name: str) -> NodeKey:
        """A key pair for node ``name`` under run_dir/keys (created once)."""
        if name not in self.keys:
            key_dir = self.run_dir / "keys"
            private, public = write_key_pair(name, key_dir, force=True)
            self.keys[name] = NodeKey(name, private, public)
        return self.keys[name]

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Child:
        child = self.group.spawn(name, argv, env=env, log_path=self.run_dir / "logs" / f"{name}.log")
        self.nodes[name] = child
        return child

    def spawn_compute(self, name: str, workflow_id: str, *, heartbeat_every: float = 1.0,
                      env: dict[str, str] | None = None) -> Child:
        argv = ["compute", "--url", self.ledger_url, "--key", str(self.key(name).private_path),
                "--redis", self.redis_for("compute"), "--workflow-id", workflow_id,
                "--heartbeat-every", str(heartbeat_every)]
        if self.history_url:
            argv += ["--couchdb", self.history_url,
                     "--outbox", str(self.run_dir / "outbox" / f"{name}.sqlite")]
        return self._spawn(name, trustmesh_argv(*argv), env=env)

    def spawn_coordinator(self, name: str, workflow_file: Path) -> Child:
        return self._spawn(name, trustmesh_argv(
            "iot", "coordinator", "--workflow", str(workflow_file), "--url", self.ledger_url,
            "--key", str(self.key(name).private_path), "--redis", self.redis_for("coordinator"),
        ))

    def spawn_participant(self, name: str, workflow_id: str, partition: int, *, codec: str = "f32") -> Child:
        return self._spawn(name, trustmesh_argv(
            "iot", "participant", "--workflow-id", workflow_id, "--partition", str(partition),
            "--codec", codec, "--url", self.ledger_url, "--key", str(self.key(name).private_path),
            "--redis", self.redis_for("participant"),
        ))

    # -- shutdown -------------------------------------------------------------------------------------
    def dead_nodes(self) -> list[Child]:
        return [c for c in self.group.dead() if c.returncode not in (0, None)]

    def stop(self) -> None:
        """Stop every child this stack started, newest first, by PID."""
        self.group.stop_all()
        for service in (self.devnet, self.pouch, self.redis):
            if service is not None:
                try:
                    service.stop()
                except Exception as exc:  # keep stopping the others
                    LOGGER.warning("stopping %s: %s", type(service).__name__, exc)

    def __enter__(self) -> LocalStack:
        return self.start_services()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
