"""Real redis-server (one per module, free port, temp dir) and the in-memory fake, side by side."""
import itertools

import pytest

from trustmesh.dataplane import MemoryDataPlane, RedisDataPlane
from trustmesh.services import RedisServer

_ids = itertools.count()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    with RedisServer(data_dir=tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def wf():
    """A fresh workflow id per test, so tests sharing one server never see each other's keys."""
    return f"wf{next(_ids)}"


@pytest.fixture(params=["memory", "redis"])
def plane(request, redis_server):
    """The same behaviour checked on the fake and on the real server (admin user)."""
    if request.param == "memory":
        yield MemoryDataPlane()
    else:
        real = RedisDataPlane(redis_server.url)
        yield real
        real.close()
