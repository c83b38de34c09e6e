"""Fixtures for the devnet tests: a real devnet process, demo TP processes, a raw ZMQ client."""
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from devnet_rawclient import RawClient, TpProcess  # noqa: E402
from sawtooth_signing import Signer  # noqa: E402

import trustmesh  # noqa: E402,F401  (installs the SDK stream replacement)
from trustmesh.devnet.launch import DevnetProcess  # noqa: E402
from trustmesh.ledger.keys import new_signer  # noqa: E402


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevnetProcess]:
    """One devnet per test module, with one demo TP attached."""
    data_dir = tmp_path_factory.mktemp("devnet")
    process = DevnetProcess(data_dir=data_dir)
    process.start()
    tp = TpProcess(url=process.url, name="tp-main", log_dir=data_dir)
    yield process
    tp.stop()
    process.stop()


@pytest.fixture
def client(devnet: DevnetProcess) -> Iterator[RawClient]:
    raw = RawClient(devnet.url)
    yield raw
    raw.close()


@pytest.fixture(scope="module")
def signer() -> Signer:
    return new_signer()
