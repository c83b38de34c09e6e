"""Opening a redis-py client from a URL: a single server, or a Redis Cluster."""
from __future__ import annotations

from typing import TypeAlias

import redis
from redis.cluster import RedisCluster

from trustmesh.dataplane.errors import mapped_errors

__all__ = ["CLUSTER_SCHEME", "DEFAULT_TIMEOUT", "RedisClient", "connect"]

DEFAULT_TIMEOUT = 5.0
CLUSTER_SCHEME = "redis+cluster://"
RedisClient: TypeAlias = "redis.Redis | RedisCluster"


def connect(url: str, *, cluster: bool | None = None, timeout: float = DEFAULT_TIMEOUT) -> RedisClient:
    """A client for ``url`` (``redis://user:pass@host:port/0``); ``redis+cluster://`` or
    ``cluster=True`` gives a cluster client that discovers every node from the one named."""
    if url.startswith(CLUSTER_SCHEME):
        url = "redis://" + url[len(CLUSTER_SCHEME):]
        cluster = True if cluster is None else cluster
    with mapped_errors(f"connect to {url.rsplit('@', 1)[-1]}"):
        if cluster:
            return RedisCluster.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
