"""The in-memory ledger runs real SDK handlers with the checks rule code relies on."""
from __future__ import annotations

import pytest
from sawtooth_sdk.protobuf.block_info_pb2 import BlockInfo, BlockInfoConfig

from trustmesh.contracts.blockinfo import CONFIG_ADDRESS, block_address
from trustmesh.errors import LedgerError, TransactionRejected
from trustmesh.ledger.batch import make_batch, make_transaction
from trustmesh.ledger.client import BatchInvalid
from trustmesh.ledger.events import BLOCK_COMMIT, attribute, subscription
from trustmesh.ledger.keys import new_signer
from trustmesh.ledger.memory import MemoryLedger

demo_tp = pytest.importorskip("trustmesh.devnet.demo_tp")
kv = demo_tp.address
NS = demo_tp.NAMESPACE


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def ledger(clock):
    with MemoryLedger(handlers=[demo_tp.KvHandler(name="mem")], clock=clock) as memory:
        yield memory


def _txn(signer, payload: str, inputs=None, outputs=None):
    return make_transaction(
        signer,
        family_name="tm-kv",
        family_version="1.0",
        payload=payload.encode(),
        inputs=inputs or [NS, "00b10c"],
        outputs=outputs or [NS],
    )


def _run(ledger, payload: str, **kwargs):
    signer = new_signer()
    return ledger.submit([make_batch(signer, [_txn(signer, payload, **kwargs)])])


def test_commit_and_read_back(ledger):
    [status] = _run(ledger, "set a 1; set b 2")

    assert status.committed and ledger.head_block_num == 1
    assert ledger.get_state(kv("a")) == b"1"
    assert ledger.batch_status([status.batch_id])[0].committed
    assert dict(ledger.list_state(NS)) == {kv("a"): b"1", kv("b"): b"2"}


def test_invalid_transaction_rolls_back_its_whole_batch_and_builds_no_block(ledger):
    signer = new_signer()
    batch = make_batch(signer, [_txn(signer, "set a 1"), _txn(signer, "fail over quota")])

    with pytest.raises(BatchInvalid, match="over quota") as caught:
        ledger.submit([batch])

    assert caught.value.reason == "over quota"
    assert ledger.get_state(kv("a")) is None and ledger.head_block_num == 0
    assert ledger.batch_status([batch.header_signature])[0].status == "INVALID"


def test_tampered_payload_is_refused_at_submit(ledger):
    signer = new_signer()
    batch = make_batch(signer, [_txn(signer, "set a 1")])
    batch.transactions[0].payload = b"set a 2"

    with pytest.raises(TransactionRejected, match="refused at submit"):
        ledger.submit([batch])


def test_writes_outside_declared_outputs_are_a_processor_bug(ledger):
    with pytest.raises(LedgerError, match="unauthorized"):
        _run(ledger, "set a 1", outputs=[kv("b")])


def test_block_time_comes_from_blockinfo_stamped_by_the_clock(ledger, clock):
    _run(ledger, "set a 1")
    clock.now += 90
    _run(ledger, "now t")

    assert ledger.get_state(kv("t")) == str(int(clock.now)).encode()
    config = BlockInfoConfig.FromString(ledger.get_state(CONFIG_ADDRESS))
    assert config.latest_block == 1
    assert BlockInfo.FromString(ledger.get_state(block_address(1))).timestamp == int(clock.now)


def test_events_filtered_and_replayed_from_a_known_block(ledger):
    stream = ledger.subscribe([subscription("tm-kv/ping", {"round": "2"}), subscription(BLOCK_COMMIT)])
    _run(ledger, "event tm-kv/ping round=1")
    _run(ledger, "event tm-kv/ping round=2")

    got = [stream.get(timeout=0) for _ in range(4)]
    kinds = [(e.event_type, attribute(e, "round")) for e in got if e is not None]
    assert kinds == [(BLOCK_COMMIT, None), (BLOCK_COMMIT, None), ("tm-kv/ping", "2")]
    first_block = attribute(got[0], "block_id")
    stream.close()
    assert stream.get(timeout=0) is None

    replay = ledger.subscribe([subscription("tm-kv/ping")], last_known_block_id=first_block)
    event = replay.get(timeout=0)
    assert event is not None and attribute(event, "round") == "2"
    with pytest.raises(LedgerError, match="UNKNOWN_BLOCK"):
        ledger.subscribe([subscription(BLOCK_COMMIT)], last_known_block_id="ff" * 64)


def test_submit_transaction_convenience(ledger):
    submitted = ledger.submit_transaction(new_signer(), "tm-kv", "1.0", b"set z 9", [kv("z")], [kv("z")])
    assert submitted.committed and ledger.get_state(kv("z")) == b"9"
