"""A real PouchDB Server (on disk, free port, temp dir) per module, and a fresh workflow id per test."""
import itertools

import pytest

from trustmesh.services import PouchServer

_ids = itertools.count()


@pytest.fixture(scope="module")
def pouch(tmp_path_factory):
    with PouchServer(data_dir=tmp_path_factory.mktemp("pouch")) as server:
        yield server


@pytest.fixture
def wf():
    return f"wf{next(_ids)}"
