"""Child processes started and stopped by PID: the one place that spawns local servers and nodes.

A :class:`ProcessGroup` remembers every child it started and stops them in reverse order on exit
or error, so `trustmesh run` and the tests never leave strays and never stop anything by name.
"""
from __future__ import annotations

import atexit
import ctypes
import logging
import os
import signal
import subprocess
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from trustmesh.services.errors import ServiceError

__all__ = ["DEFAULT_STOP_TIMEOUT", "Child", "ProcessGroup", "spawn"]

log = logging.getLogger(__name__)

DEFAULT_STOP_TIMEOUT = 10.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Run in the child before exec: the kernel sends SIGTERM to it when its parent thread ends."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except Exception:  # pragma: no cover - non-Linux: best effort only
        pass


class Child:
    """One child process: its name, PID and log file. Stopped only through its own PID."""

    def __init__(self, *, name: str, argv: Sequence[str], popen: subprocess.Popen[bytes],
                 log_path: Path | None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._popen = popen

    def __repr__(self) -> str:
        state = "alive" if self.alive else f"exited {self.returncode}"
        return f"Child({self.name!r}, pid={self.pid}, {state})"

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def alive(self) -> bool:
        """True while the process runs (it is reaped as soon as it has exited)."""
        return self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait up to ``timeout`` seconds for the exit; the return code, or None if still running."""
        try:
            return self._popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def terminate(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL. Returns the exit code."""
        if not self.alive:
            return self.returncode
        try:
            self._popen.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            return self.returncode
        code = self.wait(timeout)
        if code is None:
            log.warning("%s (pid %d) ignored SIGTERM for %.0f s; killing it", self.name, self.pid, timeout)
            return self.kill()
        return code

    def kill(self) -> int | None:
        """SIGKILL (crash tests, or a child that ignores SIGTERM) and reap it."""
        if self.alive:
            try:
                self._popen.kill()
            except ProcessLookupError:
                pass
        return self.wait(DEFAULT_STOP_TIMEOUT)

    def wait_for_log(self, text: str, *, timeout: float = 30.0) -> bool:
        """Wait until ``text`` appears in the child's log (a readiness line); False on timeout or exit."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log_path is not None and self.log_path.exists() and text in self.log_path.read_text(
                    errors="replace"):
                return True
            if not self.alive:
                return False
            time.sleep(0.05)
        return False

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the child's log, for error messages."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def _before_exec(die_with_parent: bool, niceness: int) -> Callable[[], None] | None:
    if not die_with_parent and not niceness:
        return None

    def prepare() -> None:
        if die_with_parent:
            _die_with_parent()
        if niceness:
            os.nice(niceness)
    return prepare


def spawn(name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
          log_path: str | os.PathLike[str] | None = None, cwd: str | os.PathLike[str] | None = None,
          die_with_parent: bool = True, niceness: int = 0) -> Child:
    """Start ``argv`` as a child in its own session, stdout and stderr into ``log_path``.

    Its own session keeps a terminal's Ctrl-C away from it: the parent decides the stop order.
    ``die_with_parent`` asks the kernel to SIGTERM it if the spawning *thread* ends (Linux).
    ``niceness`` > 0 runs it at a lower CPU priority (background work that must not slow a round).
    """
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    path = Path(log_path) if log_path is not None else None
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        out = open(path, "ab")  # noqa: SIM115 - handed to the child, closed right after
    else:
        out = open(os.devnull, "wb")  # noqa: SIM115
    try:
        popen = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=full_env, cwd=cwd, start_new_session=True,
            preexec_fn=_before_exec(die_with_parent, niceness),  # noqa: PLW1509 - no threads started in it
        )
    except OSError as exc:
        raise ServiceError(f"cannot start {name}: {argv[0]}: {exc}") from exc
    finally:
        out.close()
    log.debug("started %s pid %d: %s", name, popen.pid, " ".join(argv))
    return Child(name=name, argv=argv, popen=popen, log_path=path)


_LIVE_GROUPS: weakref.WeakSet[ProcessGroup] = weakref.WeakSet()


@atexit.register
def _stop_live_groups() -> None:
    for group in list(_LIVE_GROUPS):
        group.stop_all()


class ProcessGroup:
    """Starts children, remembers them, and stops them all in reverse order on exit or error."""

    def __init__(self, *, stop_timeout: float = DEFAULT_STOP_TIMEOUT, die_with_parent: bool = True) -> None:
        self.stop_timeout = stop_timeout
        self.die_with_parent = die_with_parent
        self._children: list[Child] = []
        self._lock = threading.Lock()
        _LIVE_GROUPS.add(self)

    @property
    def children(self) -> list[Child]:
        with self._lock:
            return list(self._children)

    def spawn(self, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              log_path: str | os.PathLike[str] | None = None,
              cwd: str | os.PathLike[str] | None = None, niceness: int = 0) -> Child:
        """Start one child and remember it; see :func:`spawn`."""
        child = spawn(name, argv, env=env, log_path=log_path, cwd=cwd, die_with_parent=self.die_with_parent,
                      niceness=niceness)
        with self._lock:
            self._children.append(child)
        return child

    def adopt(self, child: Child) -> Child:
        """Remember a child started elsewhere so that this group stops it too."""
        with self._lock:
            self._children.append(child)
        return child

    def dead(self) -> list[Child]:
        """Children that have exited (a supervisor reports them)."""
        return [child for child in self.children if not child.alive]

    def stop_all(self) -> None:
        """Terminate every child, newest first; children already gone are skipped."""
        with self._lock:
            children, self._children = list(self._children), []
        for child in reversed(children):
            if child.alive:
                log.debug("stopping %s (pid %d)", child.name, child.pid)
                child.terminate(self.stop_timeout)

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop_all()


class ChildService:
    """What a launcher of one server child shares: its process, PID, liveness, stop and kill."""

    _child: Child | None = None

    @property
    def child(self) -> Child | None:
        """The running child process (None before start)."""
        return self._child

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child else None

    @property
    def alive(self) -> bool:
        return self._child is not None and self._child.alive

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """SIGTERM to its PID, wait, SIGKILL as a fallback (Redis flushes its AOF on SIGTERM)."""
        if self._child is not None:
            self._child.terminate(timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self._child is not None:
            self._child.kill()
