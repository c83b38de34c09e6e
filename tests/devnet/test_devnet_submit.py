"""Submit, commit, read; submit-time refusals; batch atomicity; authorization of state access."""
from __future__ import annotations

from devnet_rawclient import RawClient, kv_batch
from sawtooth_sdk.protobuf.batch_pb2 import Batch, BatchHeader
from sawtooth_sdk.protobuf.client_batch_submit_pb2 import ClientBatchStatus, ClientBatchSubmitResponse
from sawtooth_sdk.protobuf.client_state_pb2 import ClientStateListResponse
from sawtooth_sdk.protobuf.transaction_pb2 import TransactionHeader
from sawtooth_signing import Signer

from trustmesh.devnet.demo_tp import FAMILY_NAME, FAMILY_VERSION, NAMESPACE, address
from trustmesh.ledger.batch import make_batch, make_transaction
from trustmesh.ledger.keys import new_signer, public_key_hex

OK = ClientBatchSubmitResponse.OK
INVALID_BATCH = ClientBatchSubmitResponse.INVALID_BATCH


def _resign_batch(signer: Signer, batch: Batch, transaction_ids: list[str] | None = None) -> Batch:
    """Rebuild the batch header over (possibly edited) transactions and sign it again."""
    header = BatchHeader(
        signer_public_key=public_key_hex(signer),
        transaction_ids=transaction_ids if transaction_ids is not None else [t.header_signature for t in batch.transactions],
    ).SerializeToString()
    return Batch(header=header, header_signature=signer.sign(header), transactions=batch.transactions)


def test_committed_batch_is_readable(client: RawClient, signer: Signer) -> None:
    batch = kv_batch(signer, "set apple red", "set pear green")
    assert client.submit([batch]) == OK
    status = client.status(batch.header_signature)
    assert status.status == ClientBatchStatus.COMMITTED
    assert client.value("apple") == "red"
    assert client.value("pear") == "green"
    listed = client.state_list(NAMESPACE)
    assert listed.status == ClientStateListResponse.OK
    assert {e.address for e in listed.entries} >= {address("apple"), address("pear")}


def test_unknown_batch_status_is_unknown(client: RawClient) -> None:
    assert client.status("ab" * 64, wait=False).status == ClientBatchStatus.UNKNOWN


def test_tampered_transaction_signature_is_refused(client: RawClient, signer: Signer) -> None:
    batch = kv_batch(signer, "set tamper-sig 1")
    forged = new_signer().sign(batch.transactions[0].header)  # a valid signature, by the wrong key
    batch.transactions[0].header_signature = forged
    batch = _resign_batch(signer, batch)
    assert client.submit([batch]) == INVALID_BATCH
    assert client.status(batch.header_signature, wait=False).status == ClientBatchStatus.UNKNOWN


def test_tampered_batch_signature_is_refused(client: RawClient, signer: Signer) -> None:
    batch = kv_batch(signer, "set tamper-batch 1")
    batch.header_signature = new_signer().sign(batch.header)
    assert client.submit([batch]) == INVALID_BATCH


def test_tampered_payload_is_refused(client: RawClient, signer: Signer) -> None:
    batch = kv_batch(signer, "set tamper-payload 1")
    batch.transactions[0].payload = b"set tamper-payload 2"
    assert client.submit([batch]) == INVALID_BATCH
    assert client.value("tamper-payload") is None


def test_batch_signer_key_swapped_is_refused(client: RawClient, signer: Signer) -> None:
    other = new_signer()
    batch = kv_batch(signer, "set tamper-key 1")
    header = BatchHeader.FromString(batch.header)
    header.signer_public_key = public_key_hex(other)  # claims another signer, signature is still ours
    batch.header = header.SerializeToString()
    batch.header_signature = signer.sign(batch.header)
    assert client.submit([batch]) == INVALID_BATCH


def test_transaction_batcher_must_be_batch_signer(client: RawClient, signer: Signer) -> None:
    txn = make_transaction(
        signer,
        family_name=FAMILY_NAME,
        family_version=FAMILY_VERSION,
        payload=b"set batcher 1",
        inputs=[NAMESPACE],
        outputs=[NAMESPACE],
        batcher_public_key=public_key_hex(new_signer()),
    )
    assert client.submit([make_batch(signer, [txn])]) == INVALID_BATCH


def test_transaction_ids_must_match_in_order(client: RawClient, signer: Signer) -> None:
    batch = kv_batch(signer, "set order-a 1", "set order-b 2")
    ids = [t.header_signature for t in batch.transactions]
    assert client.submit([_resign_batch(signer, batch, list(reversed(ids)))]) == INVALID_BATCH
    assert client.submit([_resign_batch(signer, batch, ids[:1])]) == INVALID_BATCH


def test_duplicate_transaction_ids_are_refused(client: RawClient, signer: Signer) -> None:
    batch = kv_batch(signer, "set dup 1")
    twice = make_batch(signer, [batch.transactions[0], batch.transactions[0]])
    assert client.submit([twice]) == INVALID_BATCH
    assert client.submit([batch]) == OK
    assert client.status(batch.header_signature).status == ClientBatchStatus.COMMITTED
    extra = kv_batch(signer, "set dup-extra 1").transactions[0]
    again = make_batch(signer, [extra, batch.transactions[0]])  # a new batch repeating a committed transaction
    assert client.submit([again]) == INVALID_BATCH
    assert client.submit([batch]) == OK  # the same batch again is accepted and stays committed
    assert client.status(batch.header_signature, wait=False).status == ClientBatchStatus.COMMITTED


def test_invalid_transaction_rolls_back_its_whole_batch(client: RawClient, signer: Signer) -> None:
    doomed = kv_batch(signer, "set sibling written", "fail the rule says no")
    fine = kv_batch(signer, "set bystander ok")
    assert client.submit([doomed, fine]) == OK
    doomed_status, fine_status = client.statuses([doomed.header_signature, fine.header_signature])
    assert doomed_status.status == ClientBatchStatus.INVALID
    assert doomed_status.invalid_transactions[0].transaction_id == doomed.transactions[1].header_signature
    assert doomed_status.invalid_transactions[0].message == "the rule says no"
    assert fine_status.status == ClientBatchStatus.COMMITTED
    assert client.value("sibling") is None
    assert client.value("bystander") == "ok"


def test_later_batch_in_block_sees_earlier_batch_writes(client: RawClient, signer: Signer) -> None:
    first = kv_batch(signer, "set chain-a 41", keys=["chain-a"])
    second = kv_batch(signer, "copy chain-a chain-b", keys=["chain-a", "chain-b"])
    assert client.submit([first, second]) == OK
    statuses = client.statuses([first.header_signature, second.header_signature])
    assert [s.status for s in statuses] == [ClientBatchStatus.COMMITTED] * 2
    assert client.value("chain-b") == "41"


def test_write_outside_declared_outputs_fails_the_transaction(client: RawClient, signer: Signer) -> None:
    outside = address("declared-elsewhere")
    batch = kv_batch(signer, f"set-addr {outside} x", keys=["only-this-key"])
    assert client.submit([batch]) == OK
    status = client.status(batch.header_signature)
    assert status.status == ClientBatchStatus.INVALID
    assert "unauthorized" in status.invalid_transactions[0].message
    assert client.state_get(outside) is None


def test_read_outside_declared_inputs_fails_the_transaction(client: RawClient, signer: Signer) -> None:
    batch = kv_batch(signer, f"get-addr {address('not-an-input')}", keys=["some-input"])
    assert client.submit([batch]) == OK
    status = client.status(batch.header_signature)
    assert status.status == ClientBatchStatus.INVALID
    assert "unauthorized" in status.invalid_transactions[0].message


def test_bad_input_namespace_fails_the_transaction(client: RawClient, signer: Signer) -> None:
    batch = kv_batch(signer, "set odd 1", inputs=["abc"], outputs=[NAMESPACE])  # odd-length prefix
    assert client.submit([batch]) == OK
    status = client.status(batch.header_signature)
    assert status.status == ClientBatchStatus.INVALID


def test_header_fields_reach_the_tp(client: RawClient, signer: Signer) -> None:
    header = TransactionHeader.FromString(kv_batch(signer, "set hdr 1").transactions[0].header)
    assert header.family_name == FAMILY_NAME  # the TP routes by these; a wrong family would never run


def test_dependency_on_a_transaction_of_the_same_submit_commits_after_it(client: RawClient, signer: Signer) -> None:
    first = kv_batch(signer, "set dep-first 1", keys=["dep-first"])
    dependent_txn = make_transaction(
        signer,
        family_name=FAMILY_NAME,
        family_version=FAMILY_VERSION,
        payload=b"set dep-second 2",
        inputs=[address("dep-second")],
        outputs=[address("dep-second")],
        dependencies=[first.transactions[0].header_signature],
    )
    second = make_batch(signer, [dependent_txn])
    assert client.submit([second, first]) == OK  # the dependent batch first: it must wait
    statuses = client.statuses([second.header_signature, first.header_signature])
    assert [s.status for s in statuses] == [ClientBatchStatus.COMMITTED] * 2
    assert client.value("dep-second") == "2"


def test_state_list_pages_by_address(client: RawClient, signer: Signer) -> None:
    batch = kv_batch(signer, *[f"set page-{i} {i}" for i in range(5)])
    assert client.submit([batch]) == OK
    assert client.status(batch.header_signature).status == ClientBatchStatus.COMMITTED
    seen: list[str] = []
    start = ""
    while True:
        page = client.state_list(NAMESPACE, start=start, limit=2)
        assert page.status == ClientStateListResponse.OK
        assert len(page.entries) <= 2
        seen.extend(e.address for e in page.entries)
        if not page.paging.next:
            break
        start = page.paging.next
    assert seen == sorted(seen)
    assert {address(f"page-{i}") for i in range(5)} <= set(seen)
    assert client.state_list("ab" * 10).status == ClientStateListResponse.NO_RESOURCE
    assert client.state_list("abc").status == ClientStateListResponse.INVALID_ADDRESS
