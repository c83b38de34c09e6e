"""Submit-time checks of a batch, as a validator makes them before a batch may ever run.

Structure (header decodes, transaction ids listed in order, no duplicates, no empty dependency),
batch signature by the batch signer, each transaction's signature by its signer, the
transaction's batcher key equal to the batch signer, and each payload's sha512. A batch that
fails any of them is answered ``INVALID_BATCH`` and never gets a status. Signatures are checked
here once; execution trusts them.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

from google.protobuf.message import DecodeError
from sawtooth_sdk.protobuf.batch_pb2 import Batch, BatchHeader
from sawtooth_sdk.protobuf.transaction_pb2 import Transaction, TransactionHeader
from sawtooth_signing import ParseError, create_context
from sawtooth_signing.secp256k1 import Secp256k1PublicKey

_CONTEXT = create_context("secp256k1")


@dataclass(frozen=True)
class CheckedTransaction:
    """A transaction whose signature and payload hash were verified, with its parsed header."""

    txn: Transaction
    header: TransactionHeader
    txn_id: str
    family: tuple[str, str]


@dataclass(frozen=True)
class CheckedBatch:
    """A batch that passed every submit-time check, ready to be queued for a block."""

    batch: Batch
    batch_id: str
    transactions: tuple[CheckedTransaction, ...]

    @property
    def dependencies(self) -> tuple[str, ...]:
        return tuple(dep for t in self.transactions for dep in t.header.dependencies)


class BatchRejected(Exception):
    """The batch fails a submit-time check; the message says which (for the log)."""


@lru_cache(maxsize=4096)
def _public_key(hex_key: str) -> Secp256k1PublicKey | None:
    try:
        return Secp256k1PublicKey.from_hex(hex_key)
    except (ParseError, ValueError, TypeError):
        return None


def _signed(signature: str, message: bytes, public_key_hex: str) -> bool:
    key = _public_key(public_key_hex)
    if key is None:
        return False
    try:
        return bool(_CONTEXT.verify(signature, message, key))
    except Exception:  # the library raises assorted errors on malformed signatures
        return False


def _parse(proto: type, data: bytes, what: str) -> object:
    message = proto()
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        raise BatchRejected(f"undecodable {what}") from exc
    return message


def check_batch(batch: Batch) -> CheckedBatch:
    """Verify ``batch`` completely; raise :class:`BatchRejected` with the reason if it fails."""
    batch_id = batch.header_signature
    header = _parse(BatchHeader, batch.header, "batch header")
    assert isinstance(header, BatchHeader)
    ids = list(header.transaction_ids)
    if not ids:
        raise BatchRejected(f"batch {batch_id[:16]} has no transactions")
    if len(ids) != len(set(ids)):
        raise BatchRejected(f"batch {batch_id[:16]} lists a transaction id twice")
    if len(ids) != len(batch.transactions):
        raise BatchRejected(f"batch {batch_id[:16]} lists {len(ids)} ids but holds {len(batch.transactions)}")
    if not _signed(batch_id, batch.header, header.signer_public_key):
        raise BatchRejected(f"batch {batch_id[:16]}: signature does not verify")
    checked = []
    for listed_id, txn in zip(ids, batch.transactions, strict=True):
        txn_id = txn.header_signature
        if listed_id != txn_id:
            raise BatchRejected(f"batch {batch_id[:16]}: transaction ids out of order or unlisted")
        txn_header = _parse(TransactionHeader, txn.header, "transaction header")
        assert isinstance(txn_header, TransactionHeader)
        if any(not dep for dep in txn_header.dependencies):
            raise BatchRejected(f"transaction {txn_id[:16]} has an empty dependency")
        if txn_header.batcher_public_key != header.signer_public_key:
            raise BatchRejected(f"transaction {txn_id[:16]}: batcher key is not the batch signer")
        if hashlib.sha512(txn.payload).hexdigest() != txn_header.payload_sha512:
            raise BatchRejected(f"transaction {txn_id[:16]}: payload does not match payload_sha512")
        if not _signed(txn_id, txn.header, txn_header.signer_public_key):
            raise BatchRejected(f"transaction {txn_id[:16]}: signature does not verify")
        checked.append(
            CheckedTransaction(
                txn=txn,
                header=txn_header,
                txn_id=txn_id,
                family=(txn_header.family_name, txn_header.family_version),
            )
        )
    return CheckedBatch(batch=batch, batch_id=batch_id, transactions=tuple(checked))
