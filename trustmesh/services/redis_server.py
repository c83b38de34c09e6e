"""A local redis-server (and a loopback Redis Cluster) as child processes, with AOF and ACL users.

Bound to 127.0.0.1 on a free port, its own directory, AOF on, RDB snapshots off; each role of
DESIGN §4 gets its own ACL user, the launcher an admin user. Never touches port 6379.
"""
from __future__ import annotations

import secrets
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import redis

from trustmesh.net import free_port
from trustmesh.services.errors import ServiceError
from trustmesh.services.process import Child, ChildService, ProcessGroup, spawn
from trustmesh.services.redis_acl import ADMIN_USER, DEFAULT_USER_LINE, ROLE_RULES, acl_line

__all__ = ["READY_TIMEOUT", "RedisCluster", "RedisServer"]

READY_TIMEOUT = 30.0
_RESERVED_PORT = 6379


def _redis_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ServiceError(f"{name} not found on PATH; run `bash scripts/install.sh`")
    return path


def _pick_port() -> int:
    return _pick_ports(1)[0]


def _pick_ports(count: int) -> list[int]:
    """``count`` distinct free ports (never 6379): a cluster needs a data and a bus port per node."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port != _RESERVED_PORT and port not in ports:
            ports.append(port)
    return ports


class RedisServer(ChildService):
    """One redis-server child: AOF, ACL users per role, restartable on the same data dir."""

    def __init__(self, *, data_dir: str | Path, port: int | None = None,
                 acl_users: Mapping[str, str] | None = None, appendonly: bool = True,
                 appendfsync: str = "everysec", cluster_port: int | None = None,
                 admin_password: str | None = None, ready_timeout: float = READY_TIMEOUT,
                 group: ProcessGroup | None = None) -> None:
        """``acl_users`` maps role (tps, compute, participant, coordinator) to password; missing
        roles get a random password. ``cluster_port`` turns on cluster mode with that bus port.
        With ``group`` the child is also registered there, so the group's shutdown stops it."""
        if port == _RESERVED_PORT:
            raise ServiceError("port 6379 is reserved for someone else's Redis; pick another")
        unknown = set(acl_users or {}) - set(ROLE_RULES)
        if unknown:
            raise ServiceError(f"unknown Redis roles {sorted(unknown)}; known: {sorted(ROLE_RULES)}")
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.cluster_port = cluster_port
        self.ready_timeout = ready_timeout
        self.group = group
        self.passwords: dict[str, str] = {role: secrets.token_hex(16) for role in ROLE_RULES}
        self.passwords.update(acl_users or {})
        self.passwords[ADMIN_USER] = admin_password or secrets.token_hex(16)
        self._child: Child | None = None

    # -------------------------------------------------------------- addresses

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def url(self) -> str:
        """The admin user's URL (the launcher's own connection)."""
        return self.url_for(ADMIN_USER)

    def url_for(self, role: str) -> str:
        """``redis://role:password@127.0.0.1:port/0`` for one role (tps, compute, participant, ...)."""
        if self.port is None:
            raise ServiceError("the Redis server has no port yet; call start() first")
        if role not in self.passwords:
            raise ServiceError(f"no Redis user for role {role!r}")
        return f"redis://{quote(role)}:{quote(self.passwords[role])}@{self.host}:{self.port}/0"

    def urls(self) -> dict[str, str]:
        """Every role's URL, admin included."""
        return {role: self.url_for(role) for role in self.passwords}

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis.log"

    # -------------------------------------------------------------- files

    def _write_files(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        acl = [acl_line(ADMIN_USER, self.passwords[ADMIN_USER], "~* &* +@all")]
        acl += [acl_line(role, self.passwords[role], ROLE_RULES[role]) for role in ROLE_RULES]
        acl.append(DEFAULT_USER_LINE)
        aclfile = self.data_dir / "users.acl"
        aclfile.write_text("\n".join(acl) + "\n")
        aclfile.chmod(0o600)
        lines = [
            "bind 127.0.0.1",
            f"port {self.port}",
            "protected-mode yes",
            "daemonize no",
            f'dir "{self.data_dir}"',
            f'logfile "{self.log_path}"',
            'save ""',
            f"appendonly {'yes' if self.appendonly else 'no'}",
            f"appendfsync {self.appendfsync}",
            f'aclfile "{aclfile}"',
        ]
        if self.cluster_port is not None:
            lines += [
                "cluster-enabled yes",
                f"cluster-port {self.cluster_port}",
                'cluster-config-file "nodes.conf"',
                "cluster-node-timeout 5000",
                "cluster-require-full-coverage yes",
            ]
        conf = self.data_dir / "redis.conf"
        conf.write_text("\n".join(lines) + "\n")
        conf.chmod(0o600)
        return conf

    # -------------------------------------------------------------- life cycle

    def admin_client(self, **kwargs: object) -> redis.Redis:
        """A redis-py client as the admin user (not a cluster client)."""
        if self.port is None:
            raise ServiceError("the Redis server has no port yet; call start() first")
        return redis.Redis(host=self.host, port=self.port, username=ADMIN_USER,
                           password=self.passwords[ADMIN_USER], socket_timeout=5, **kwargs)  # type: ignore[arg-type]

    def start(self) -> RedisServer:
        """Start redis-server and wait until PING answers; the port stays the same on restarts."""
        if self.alive:
            return self
        chosen_here = self.port is None
        for _attempt in range(3):
            if self.port is None:
                self.port = _pick_port()
            conf = self._write_files()
            self._child = (self.group.spawn if self.group else spawn)(f"redis:{self.port}", [_redis_binary("redis-server"), str(conf)],
                                log_path=self.data_dir / "redis.stdout", cwd=self.data_dir)
            if self._wait_ready():
                return self
            self._child.kill()
            log_text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
            if not (chosen_here and "Address already in use" in log_text[-4000:]):
                break
            self.port = None  # someone took the port between free_port() and bind(): try another
        tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
        raise ServiceError(f"redis-server on port {self.port} did not become ready "
                           f"(see {self.log_path}):\n{tail}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.ready_timeout
        client = self.admin_client()
        try:
            while time.monotonic() < deadline:
                if self._child is None or not self._child.alive:
                    return False
                try:
                    if client.ping():
                        return True
                except redis.BusyLoadingError:
                    pass
                except redis.RedisError:
                    pass
                time.sleep(0.05)
            return False
        finally:
            client.close()

    def restart(self) -> RedisServer:
        self.stop()
        return self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class RedisCluster:
    """A Redis Cluster of ``masters`` nodes on loopback (no replicas), each with its own bus port."""

    def __init__(self, *, data_dir: str | Path, masters: int = 3,
                 acl_users: Mapping[str, str] | None = None, ready_timeout: float = 60.0,
                 group: ProcessGroup | None = None) -> None:
        if masters < 3:
            raise ServiceError("a Redis Cluster needs at least 3 masters")
        self.data_dir = Path(data_dir).resolve()
        self.ready_timeout = ready_timeout
        admin_password = secrets.token_hex(16)
        passwords = {role: secrets.token_hex(16) for role in ROLE_RULES}
        passwords.update(acl_users or {})
        ports = _pick_ports(2 * masters)
        self.nodes = [
            RedisServer(data_dir=self.data_dir / f"node-{i}", port=ports[2 * i], acl_users=passwords,
                        admin_password=admin_password, cluster_port=ports[2 * i + 1], group=group)
            for i in range(masters)
        ]

    @property
    def url(self) -> str:
        """``redis+cluster://admin:…@127.0.0.1:port/0`` of the first node; the client finds the rest."""
        return self.url_for(ADMIN_USER)

    def url_for(self, role: str) -> str:
        """A role's URL with the ``redis+cluster://`` scheme that ``dataplane.connect`` understands."""
        return "redis+cluster://" + self.nodes[0].url_for(role).split("://", 1)[1]

    def startup_nodes(self) -> list[tuple[str, int]]:
        return [(node.host, int(node.port or 0)) for node in self.nodes]

    def start(self) -> RedisCluster:
        """Start every node, join them with ``redis-cli --cluster create``, wait for cluster_state:ok."""
        try:
            for node in self.nodes:
                node.start()
            if not self._state_ok(self.nodes[0]):
                self._create()
            self._wait_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def _create(self) -> None:
        admin = self.nodes[0]
        argv = [_redis_binary("redis-cli"), "--user", ADMIN_USER, "--pass", admin.passwords[ADMIN_USER],
                "--no-auth-warning", "--cluster", "create",
                *[f"{host}:{port}" for host, port in self.startup_nodes()], "--cluster-yes"]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=self.ready_timeout)
        if proc.returncode != 0:
            raise ServiceError(f"redis-cli --cluster create failed: {proc.stdout[-1500:]}{proc.stderr[-500:]}")

    @staticmethod
    def _state_ok(node: RedisServer) -> bool:
        client = node.admin_client()
        try:
            info = client.execute_command("CLUSTER", "INFO")
        except redis.RedisError:
            return False
        finally:
            client.close()
        text = info.decode() if isinstance(info, bytes) else str(info)
        return "cluster_state:ok" in text

    def _wait_ok(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if all(self._state_ok(node) for node in self.nodes):
                return
            time.sleep(0.1)
        raise ServiceError(f"Redis Cluster not ok within {self.ready_timeout:.0f} s")

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
