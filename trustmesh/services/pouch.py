"""PouchDB Server (CouchDB HTTP API + Fauxton at /_utils) as a child process on a free port.

Quirks guarded here: it answers text/plain unless asked for ``Accept: application/json``, and it
crashes on an anonymous ``PUT /db`` once an admin exists, so every request authenticates.
"""
from __future__ import annotations

import json
import logging
import secrets
import time
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import requests

from trustmesh.net import free_port
from trustmesh.services.errors import ServiceError
from trustmesh.services.process import Child, ChildService, ProcessGroup, spawn

__all__ = ["POUCHDB_BIN", "READY_TIMEOUT", "PouchServer", "pouchdb_binary", "repo_root"]

log = logging.getLogger(__name__)

READY_TIMEOUT = 60.0
POUCHDB_BIN = Path(".local/pouchdb/node_modules/.bin/pouchdb-server")
JSON_HEADERS = {"Accept": "application/json"}
HISTORY_NICENESS = 10
"""The round history is archival and written behind an outbox: its server runs at a lower CPU
priority, so on a busy machine participants' training and the ledger go first."""


def repo_root() -> Path:
    """The checkout this package runs from (trustmesh/services/pouch.py -> two levels up)."""
    return Path(__file__).resolve().parents[2]


def pouchdb_binary() -> Path:
    """The project-local pouchdb-server, or a ServiceError naming the install command."""
    path = repo_root() / POUCHDB_BIN
    if not path.exists():
        raise ServiceError(f"PouchDB Server is not installed ({path} is missing); run `bash scripts/install.sh`")
    return path


class PouchServer(ChildService):
    """One pouchdb-server child with an admin user, on disk (``data_dir/db``) or in memory."""

    def __init__(self, *, data_dir: str | Path, port: int | None = None,
                 admin: tuple[str, str] | None = None, in_memory: bool = False,
                 ready_timeout: float = READY_TIMEOUT, group: ProcessGroup | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.admin = admin or ("admin", secrets.token_hex(16))
        self.in_memory = in_memory
        self.ready_timeout = ready_timeout
        self.group = group
        self._child: Child | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def base_url(self) -> str:
        """The URL without credentials (for display)."""
        if self.port is None:
            raise ServiceError("PouchDB Server has no port yet; call start() first")
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """``http://admin:password@127.0.0.1:port`` — what the history client takes."""
        user, password = self.admin
        return f"http://{quote(user)}:{quote(password, safe='')}@{self.host}:{self.port}"

    @property
    def fauxton_url(self) -> str:
        return f"{self.base_url}/_utils"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "pouchdb.stdout"

    def _write_config(self) -> Path:
        """config.json with the admin in the clear: the server replaces it with a pbkdf2 hash."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path = self.data_dir / "config.json"
        try:
            config = json.loads(path.read_text()) if path.exists() else {}
        except ValueError:
            config = {}
        user, password = self.admin
        config["admins"] = {user: password}
        config.setdefault("log", {})["file"] = str(self.data_dir / "pouchdb.log")
        config.setdefault("httpd", {})["port"] = str(self.port)
        path.write_text(json.dumps(config, indent=2))
        path.chmod(0o600)
        return path

    def start(self) -> PouchServer:
        """Start the server and wait until it answers JSON and accepts the admin's credentials."""
        if self.alive:
            return self
        binary = pouchdb_binary()
        chosen_here = self.port is None
        for _attempt in range(3):
            if self.port is None:
                self.port = free_port()
            config = self._write_config()
            argv = [str(binary), "--port", str(self.port), "--host", self.host, "--config", str(config),
                    "--no-stdout-logs", "--no-color"]
            if self.in_memory:
                argv.append("--in-memory")
            else:
                db_dir = self.data_dir / "db"
                db_dir.mkdir(parents=True, exist_ok=True)
                argv += ["--dir", str(db_dir)]
            child = (self.group.spawn if self.group else spawn)(f"pouchdb:{self.port}", argv, log_path=self.log_path,
                                                                 cwd=self.data_dir, niceness=HISTORY_NICENESS)
            self._child = child
            if self._wait_ready():
                return self
            child.kill()
            if not (chosen_here and "EADDRINUSE" in child.log_tail(50)):
                break
            self.port = None  # someone took the port between free_port() and listen(): try another
        raise ServiceError(f"PouchDB Server on port {self.port} did not become ready:\n"
                           f"{self._child.log_tail() if self._child else ''}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.ready_timeout
        with requests.Session() as session:
            session.auth = self.admin
            session.headers.update(JSON_HEADERS)
            while time.monotonic() < deadline:
                if self._child is None or not self._child.alive:
                    return False
                try:
                    reply = session.get(f"{self.base_url}/_session", timeout=2)
                    if reply.ok and "_admin" in reply.json().get("userCtx", {}).get("roles", []):
                        return True
                except (requests.RequestException, ValueError):
                    pass
                time.sleep(0.1)
        return False

    def ensure_running(self) -> bool:
        """Start it again if it died (it crashes on an anonymous ``PUT /db``); True if it had to."""
        if self.alive:
            return False
        log.warning("PouchDB Server on port %s had exited (%s); starting it again", self.port,
                    self._child.returncode if self._child else "never started")
        self.start()
        return True

    def restart(self) -> PouchServer:
        self.stop()
        return self.start()

    def __enter__(self) -> PouchServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
