"""Process-level behaviour: kill -9 and restart, TPs dying mid-request, several TPs sharing a family."""
from __future__ import annotations

import time
from pathlib import Path

from devnet_rawclient import RawClient, TpProcess, kv_batch
from sawtooth_sdk.protobuf.block_pb2 import BlockHeader
from sawtooth_sdk.protobuf.client_batch_submit_pb2 import ClientBatchStatus, ClientBatchSubmitResponse
from sawtooth_sdk.protobuf.client_block_pb2 import ClientBlockListRequest, ClientBlockListResponse
from sawtooth_sdk.protobuf.validator_pb2 import Message
from sawtooth_signing import Signer

from trustmesh.devnet.launch import DevnetProcess

OK = ClientBatchSubmitResponse.OK
COMMITTED = ClientBatchStatus.COMMITTED


def _chain(client: RawClient) -> list[BlockHeader]:
    """Every block header, newest first."""
    request = ClientBlockListRequest()
    request.paging.limit = 1000
    response = ClientBlockListResponse.FromString(
        client.request(Message.CLIENT_BLOCK_LIST_REQUEST, request.SerializeToString()).content
    )
    return [BlockHeader.FromString(b.header) for b in response.blocks]


def _wait_for_file(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_killed_devnet_restarts_with_blocks_and_state(tmp_path: Path, signer: Signer) -> None:
    devnet = DevnetProcess(data_dir=tmp_path / "chain")
    devnet.start()
    tp = TpProcess(url=devnet.url, name="survivor", log_dir=tmp_path)
    try:
        client = RawClient(devnet.url)
        batches = [kv_batch(signer, f"set durable-{i} v{i}") for i in range(3)]
        for batch in batches:
            assert client.submit([batch]) == OK
        assert [s.status for s in client.statuses([b.header_signature for b in batches])] == [COMMITTED] * 3
        before = _chain(client)
        client.close()

        devnet.kill()  # SIGKILL: no chance to flush anything
        devnet.start()
        client = RawClient(devnet.url)
        assert _chain(client) == before
        assert devnet.stats()["blocks"] == len(before)
        assert [client.value(f"durable-{i}") for i in range(3)] == ["v0", "v1", "v2"]
        assert client.status(batches[0].header_signature, wait=False).status == COMMITTED

        after = kv_batch(signer, "set durable-after yes")  # the same TP reconnects and registers again
        assert client.submit([after]) == OK
        assert client.status(after.header_signature).status == COMMITTED
        head = _chain(client)[0]
        assert head.block_num == before[0].block_num + 1
        assert head.previous_block_id == _block_id_of_head(before, client)
        client.close()
    finally:
        tp.stop()
        devnet.stop()


def _block_id_of_head(before: list[BlockHeader], client: RawClient) -> str:
    request = ClientBlockListRequest()
    request.paging.limit = 2
    response = ClientBlockListResponse.FromString(
        client.request(Message.CLIENT_BLOCK_LIST_REQUEST, request.SerializeToString()).content
    )
    previous = response.blocks[1]
    assert BlockHeader.FromString(previous.header) == before[0]
    return str(previous.header_signature)


def test_tp_killed_mid_request_then_another_takes_over(tmp_path: Path, signer: Signer) -> None:
    with DevnetProcess(data_dir=tmp_path / "chain") as devnet:
        client = RawClient(devnet.url)
        marker = tmp_path / "inside-apply"
        slow = kv_batch(signer, f"stall {marker} 60; set handed-over yes", keys=["handed-over"])
        rest = [kv_batch(signer, f"set queued-{i} {i}", keys=[f"queued-{i}"]) for i in range(5)]
        assert client.submit([slow, *rest]) == OK
        # no TP yet: everything waits, as on a validator
        assert client.status(slow.header_signature, wait=True, timeout=1).status == ClientBatchStatus.PENDING
        first = TpProcess(url=devnet.url, name="first", log_dir=tmp_path)
        _wait_for_file(marker)
        first.kill()  # dies inside apply with the request in flight
        assert client.status(slow.header_signature, wait=True, timeout=1).status == ClientBatchStatus.PENDING
        second = TpProcess(url=devnet.url, name="second", log_dir=tmp_path, raw_headers=True)
        try:
            ids = [b.header_signature for b in (slow, *rest)]
            statuses = client.statuses(ids, timeout=60)
            assert [s.status for s in statuses] == [COMMITTED] * 6
            assert client.value("handed-over") == "yes"
            assert [client.value(f"queued-{i}") for i in range(5)] == [str(i) for i in range(5)]
        finally:
            second.stop()
            client.close()


def test_two_tps_of_one_family_share_the_load(tmp_path: Path, signer: Signer) -> None:
    with DevnetProcess(data_dir=tmp_path / "chain") as devnet:
        client = RawClient(devnet.url)
        tps = [TpProcess(url=devnet.url, name=name, log_dir=tmp_path) for name in ("left", "right")]
        try:
            for tp in tps:
                tp.wait_registered()
            keys = [f"who-{i}" for i in range(16)]
            batches = [kv_batch(signer, f"whoami {k}", keys=[k]) for k in keys]
            assert client.submit(batches) == OK
            statuses = client.statuses([b.header_signature for b in batches], timeout=60)
            assert [s.status for s in statuses] == [COMMITTED] * len(batches)
            names = [client.value(k) for k in keys]
            assert set(names) == {"left", "right"}  # round robin: both took part of the load
        finally:
            for tp in tps:
                tp.stop()
            client.close()
