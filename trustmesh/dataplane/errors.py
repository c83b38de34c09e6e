"""Data-plane errors, and the one place where redis-py's exceptions become ours."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.exceptions import RedisClusterException

from trustmesh.errors import DataPlaneError

__all__ = ["BlobHashMismatch", "DataPlaneError", "mapped_errors"]


class BlobHashMismatch(DataPlaneError, ValueError):
    """The bytes given to store do not hash (sha512) to the hash given. A caller bug: do not retry."""


@contextmanager
def mapped_errors(action: str) -> Iterator[None]:
    """Turn any redis-py error raised inside into DataPlaneError (retry later)."""
    try:
        yield
    except (redis.RedisError, RedisClusterException) as exc:
        raise DataPlaneError(f"redis: {action} failed: {type(exc).__name__}: {exc}") from exc
