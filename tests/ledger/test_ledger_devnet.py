"""The client against a real devnet process and the demo tm-kv processor (real ZMQ, real signatures)."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from ledger_fakes import TcpProxy
from sawtooth_sdk.protobuf.batch_pb2 import Batch
from sawtooth_sdk.protobuf.events_pb2 import EventFilter

from trustmesh.errors import TransactionRejected
from trustmesh.ledger.batch import make_batch, make_transaction
from trustmesh.ledger.client import LedgerClient
from trustmesh.ledger.events import BLOCK_COMMIT, attribute, subscription
from trustmesh.ledger.keys import new_signer
from trustmesh.net import free_port

launch = pytest.importorskip("trustmesh.devnet.launch")
demo_tp = pytest.importorskip("trustmesh.devnet.demo_tp")

FAMILY, VERSION = demo_tp.FAMILY_NAME, demo_tp.FAMILY_VERSION
NAMESPACE = demo_tp.NAMESPACE
kv_address = demo_tp.address


class Ledger:
    """devnet + one demo TP, restartable on the same port and data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.devnet = launch.DevnetProcess(data_dir=data_dir, port=self.port)
        self.tp: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return str(self.devnet.url)

    def start(self) -> None:
        self.devnet.start()
        if self.tp is None or self.tp.poll() is not None:
            self.tp = subprocess.Popen(
                [sys.executable, "-m", "trustmesh.devnet.demo_tp", "--url", self.url],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    def restart_devnet(self) -> None:
        self.devnet.stop()
        self.devnet = launch.DevnetProcess(data_dir=self.data_dir, port=self.port)
        self.devnet.start()

    def stop(self) -> None:
        if self.tp is not None and self.tp.poll() is None:
            self.tp.terminate()
            try:
                self.tp.wait(10)
            except subprocess.TimeoutExpired:
                self.tp.kill()
                self.tp.wait(5)
        self.devnet.stop()


@pytest.fixture(scope="module")
def ledger(tmp_path_factory):
    running = Ledger(tmp_path_factory.mktemp("devnet"))
    running.start()
    yield running
    running.stop()


@pytest.fixture
def client(ledger):
    with LedgerClient(urls=[ledger.url], timeout=10.0) as ledger_client:
        yield ledger_client


def _set(client: LedgerClient, key: str, value: str, *, wait: float = 30.0):
    return client.submit_transaction(
        new_signer(), FAMILY, VERSION, f"set {key} {value}".encode(), [kv_address(key)], [kv_address(key)], wait=wait
    )


def _run(client: LedgerClient, commands: str):
    """Commit a transaction running demo-TP ``commands`` (which touch no state)."""
    submitted = client.submit_transaction(new_signer(), FAMILY, VERSION, commands.encode(), [NAMESPACE], [NAMESPACE])
    assert submitted.committed
    return submitted


def _kv_batch(key: str, value: str) -> Batch:
    signer = new_signer()
    txn = make_transaction(
        signer,
        family_name=FAMILY,
        family_version=VERSION,
        payload=f"set {key} {value}".encode(),
        inputs=[kv_address(key)],
        outputs=[kv_address(key)],
    )
    return make_batch(signer, [txn])


def test_submit_commits_and_reads_back(client):
    submitted = _set(client, "alpha", "1")

    assert submitted.committed
    assert client.batch_status([submitted.batch_id])[0].committed
    assert client.get_state(kv_address("alpha")) is not None
    assert client.get_state(kv_address("never-written")) is None


def test_processor_rejection_raises_with_its_message_and_writes_nothing(client):
    signer = new_signer()
    payload = b"set rejected 1; fail quota exceeded for rejected"
    bad = make_transaction(
        signer,
        family_name=FAMILY,
        family_version=VERSION,
        payload=payload,
        inputs=[kv_address("rejected")],
        outputs=[kv_address("rejected")],
    )
    with pytest.raises(TransactionRejected, match="quota exceeded for rejected"):
        client.submit([make_batch(signer, [bad])])
    assert client.get_state(kv_address("rejected")) is None


def test_tampered_batch_is_refused_at_submit(client):
    batch = _kv_batch("tampered", "1")
    batch.transactions[0].payload = b"set tampered 2"  # no longer matches payload_sha512

    with pytest.raises(TransactionRejected, match="refused at submit"):
        client.submit([batch])
    assert client.get_state(kv_address("tampered")) is None


def test_list_state_by_prefix_pages_through_everything(client):
    keys = [f"list-{i}" for i in range(7)]
    client.submit([_kv_batch(key, "v") for key in keys], wait=30)

    listed = dict(client.list_state(NAMESPACE, page_size=3))

    assert {kv_address(key) for key in keys} <= set(listed)
    assert all(address.startswith(NAMESPACE) for address in listed)
    assert list(listed) == sorted(listed)


def test_filtered_subscription_gets_only_matching_events(client):
    stream = client.subscribe([subscription("tm-kv/ping", {"round": "2"})])
    try:
        for round_number in (1, 2, 3):
            _run(client, f"event tm-kv/ping round={round_number} node=n{round_number}")
        _run(client, "event tm-kv/other round=2")
        event = stream.get(timeout=20)
        assert event is not None and event.event_type == "tm-kv/ping"
        assert (attribute(event, "round"), attribute(event, "node")) == ("2", "n2")
        assert stream.get(timeout=1.0) is None  # rounds 1 and 3, the other type and block commits: filtered
    finally:
        stream.close()


def test_state_delta_events_filter_by_address(client):
    watched = subscription("sawtooth/state-delta", {"address": kv_address("watched")}, kind=EventFilter.SIMPLE_ANY)
    stream = client.subscribe([watched])
    try:
        _set(client, "unwatched", "1")
        _set(client, "watched", "2")
        event = stream.get(timeout=20)
        assert event is not None and event.event_type == "sawtooth/state-delta"
        addresses = [a.value for a in event.attributes if a.key == "address"]
        assert kv_address("watched") in addresses and kv_address("unwatched") not in addresses
        assert stream.get(timeout=1.0) is None
    finally:
        stream.close()


def test_events_resume_after_a_devnet_restart_without_a_gap(ledger, client):
    proxy = TcpProxy(target_port=ledger.port).start()
    watcher = LedgerClient(urls=[proxy.url], timeout=5.0)
    stream = watcher.subscribe([subscription(BLOCK_COMMIT)])
    try:
        _set(client, "resume-0", "0")
        first = stream.get(timeout=20)
        assert first is not None
        seen = [int(attribute(first, "block_num") or -1)]

        proxy.cut()  # the stream is now deaf
        ledger.restart_devnet()
        for i in range(1, 4):
            _set(client, f"resume-{i}", str(i), wait=60)
        proxy.resume()

        deadline = time.monotonic() + 30
        while len(seen) < 4 and time.monotonic() < deadline:
            event = stream.get(timeout=1)
            if event is not None:
                seen.append(int(attribute(event, "block_num") or -1))
        assert seen == list(range(seen[0], seen[0] + 4))
    finally:
        stream.close()
        watcher.close()
        proxy.stop()


def test_failover_from_a_dead_url_to_a_live_one(ledger):
    dead = f"tcp://127.0.0.1:{free_port()}"
    with LedgerClient(urls=[dead, ledger.url], timeout=5.0) as client:
        assert _set(client, "failover", "1").committed
        assert client.get_state(kv_address("failover")) is not None
