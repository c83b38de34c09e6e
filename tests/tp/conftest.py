"""TP tests: every module gets its own stack (devnet, both TP processes, a Redis server)."""
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tp_harness import Federation  # noqa: E402

from trustmesh.runner.stack import LocalStack  # noqa: E402


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A devnet, the federation and iot-data TPs as real processes, and a real Redis with AOF."""
    local = LocalStack(run_dir=tmp_path_factory.mktemp("tp"), with_history=False)
    try:
        local.start_services()
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="module")
def fed(stack: LocalStack) -> Iterator[Federation]:
    helper = Federation(stack)
    try:
        yield helper
    finally:
        helper.close()
