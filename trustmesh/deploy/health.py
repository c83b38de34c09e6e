"""Container health check: `python -m trustmesh.deploy.health`.

A TrustMesh node is healthy when it can reach its ledger: it opens a TCP connection to any of the
``host:port`` pairs in TRUSTMESH_HEALTH_TCP (comma-separated). Without that variable it only checks
that the interpreter and the package load.
"""
from __future__ import annotations

import os
import socket
import sys

__all__ = ["check", "main"]

TIMEOUT = 3.0


def _split(target: str) -> tuple[str, int]:
    host, _, port = target.strip().removeprefix("tcp://").rpartition(":")
    return host, int(port)


def check(targets: str, *, timeout: float = TIMEOUT) -> str | None:
    """None when one target accepts a connection, else a one-line reason."""
    reasons = []
    for target in filter(None, (t.strip() for t in targets.split(","))):
        try:
            host, port = _split(target)
            with socket.create_connection((host, port), timeout=timeout):
                return None
        except (OSError, ValueError) as exc:
            reasons.append(f"{target}: {exc}")
    return "; ".join(reasons) or "no target given"


def main() -> int:
    targets = os.environ.get("TRUSTMESH_HEALTH_TCP", "")
    if not targets:
        return 0
    reason = check(targets)
    if reason:
        print(f"unhealthy: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
