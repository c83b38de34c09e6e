"""Signed transactions and batches carry every header field a validator checks; keygen files."""
from __future__ import annotations

import hashlib
import stat

import pytest
from sawtooth_sdk.protobuf.batch_pb2 import BatchHeader
from sawtooth_sdk.protobuf.transaction_pb2 import TransactionHeader

from trustmesh import cli
from trustmesh.ledger.batch import batch_list, make_batch, make_transaction
from trustmesh.ledger.keys import load_signer, new_signer, public_key_hex, verify


def test_transaction_header_fields_and_signature():
    signer = new_signer()
    payload = b"set k v"
    txn = make_transaction(
        signer,
        family_name="tm-kv",
        family_version="1.0",
        payload=payload,
        inputs=["abcdef"],
        outputs=["abcdef01"],
        dependencies=["d" * 128],
    )
    header = TransactionHeader.FromString(txn.header)

    assert header.payload_sha512 == hashlib.sha512(payload).hexdigest()
    assert (header.family_name, header.family_version) == ("tm-kv", "1.0")
    assert list(header.inputs) == ["abcdef"] and list(header.outputs) == ["abcdef01"]
    assert list(header.dependencies) == ["d" * 128]
    assert header.signer_public_key == header.batcher_public_key == public_key_hex(signer)
    assert header.nonce
    assert verify(txn.header_signature, txn.header, public_key_hex(signer))
    assert len(txn.header_signature) == 128


def test_nonces_make_identical_payloads_distinct():
    signer = new_signer()
    one, two = (
        make_transaction(signer, family_name="f", family_version="1.0", payload=b"x", inputs=[], outputs=[])
        for _ in range(2)
    )
    assert one.header_signature != two.header_signature


def test_batch_lists_transaction_ids_and_is_signed_by_the_batcher():
    author, batcher = new_signer(), new_signer()
    txns = [
        make_transaction(
            author,
            family_name="tm-kv",
            family_version="1.0",
            payload=f"set k{i} v".encode(),
            inputs=["abc"],
            outputs=["abc"],
            batcher_public_key=public_key_hex(batcher),
        )
        for i in range(3)
    ]
    batch = make_batch(batcher, txns)
    header = BatchHeader.FromString(batch.header)

    assert list(header.transaction_ids) == [t.header_signature for t in txns]
    assert header.signer_public_key == public_key_hex(batcher)
    assert all(TransactionHeader.FromString(t.header).batcher_public_key == header.signer_public_key for t in txns)
    assert verify(batch.header_signature, batch.header, public_key_hex(batcher))
    assert not verify(batch.header_signature, batch.header, public_key_hex(author))
    assert [b.header_signature for b in batch_list([batch]).batches] == [batch.header_signature]


def test_keygen_writes_a_private_file_only_the_owner_reads(tmp_path, capsys):
    assert cli.main(["keygen", "node1", "--dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.strip()

    priv, pub = tmp_path / "node1.priv", tmp_path / "node1.pub"
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert pub.read_text().strip() == printed
    assert public_key_hex(load_signer(priv)) == printed


def test_keygen_refuses_to_overwrite_without_force(tmp_path, capsys):
    assert cli.main(["keygen", "node1", "--dir", str(tmp_path)]) == 0
    first = (tmp_path / "node1.priv").read_text()
    capsys.readouterr()

    assert cli.main(["keygen", "node1", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--force" in err
    assert (tmp_path / "node1.priv").read_text() == first

    assert cli.main(["keygen", "node1", "--dir", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "node1.priv").read_text() != first
    assert stat.S_IMODE((tmp_path / "node1.priv").stat().st_mode) == 0o600


@pytest.mark.parametrize("name", ["../evil", ".hidden"])
def test_keygen_rejects_path_like_names(tmp_path, name):
    assert cli.main(["keygen", name, "--dir", str(tmp_path)]) == 1
    assert list(tmp_path.iterdir()) == []


def test_force_over_a_world_readable_key_file_leaves_it_private(tmp_path):
    priv = tmp_path / "node2.priv"
    priv.write_text("old\n")
    priv.chmod(0o644)

    assert cli.main(["keygen", "node2", "--dir", str(tmp_path), "--force"]) == 0

    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert priv.read_text().strip() != "old"
