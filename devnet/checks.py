"""Submit-time checks of a batch, as a validator makes them before a batch may ever run.

Structure (headers decode, transaction ids listed in order, no duplicates, no empty dependency),
batch signature by the batch signer, each transaction's signature by its signer, the
transaction's batcher key equal to the batch signer, and each payload's sha512. A batch that
fails any of them is answered ``INVALID_BATCH`` and never gets a status. Signatures are checked
here once; execution trusts them. Batches are read from their wire bytes, which are kept: the
block stores them exactly as they were signed and sent.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

from sawtooth_signing import ParseError, create_context
from sawtooth_signing.secp256k1 import Secp256k1PublicKey

from trustmesh.devnet import wire
from trustmesh.devnet.wire import TxnHeader

_CONTEXT = create_context("secp256k1")


@dataclass(frozen=True)
class CheckedTransaction:
    """A transaction whose signature and payload hash were verified, with its decoded header."""

    header_bytes: bytes
    txn_id: str
    payload: bytes
    header: TxnHeader

    @property
    def family(self) -> tuple[str, str]:
        return (self.header.family_name, self.header.family_version)


@dataclass(frozen=True)
class CheckedBatch:
    """A batch that passed every submit-time check, ready to be queued for a block."""

    raw: bytes
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


def check_batch(raw: bytes) -> CheckedBatch:
    """Verify the encoded batch ``raw`` completely; raise :class:`BatchRejected` with the reason."""
    try:
        header_bytes, batch_id, encoded_txns = wire.decode_batch(raw)
        signer, ids = wire.decode_batch_header(header_bytes)
        decoded = [wire.decode_transaction(t) for t in encoded_txns]
    except wire.WireError as exc:
        raise BatchRejected(f"undecodable batch: {exc}") from exc
    short = batch_id[:16]
    if not ids:
        raise BatchRejected(f"batch {short} has no transactions")
    if len(ids) != len(set(ids)):
        raise BatchRejected(f"batch {short} lists a transaction id twice")
    if len(ids) != len(decoded):
        raise BatchRejected(f"batch {short} lists {len(ids)} ids but holds {len(decoded)}")
    if not _signed(batch_id, header_bytes, signer):
        raise BatchRejected(f"batch {short}: signature does not verify")
    checked = []
    for listed_id, (txn_header_bytes, txn_id, payload) in zip(ids, decoded, strict=True):
        if listed_id != txn_id:
            raise BatchRejected(f"batch {short}: transaction ids out of order or unlisted")
        try:
            header = wire.decode_txn_header(txn_header_bytes)
        except wire.WireError as exc:
            raise BatchRejected(f"transaction {txn_id[:16]}: undecodable header") from exc
        if any(not dep for dep in header.dependencies):
            raise BatchRejected(f"transaction {txn_id[:16]} has an empty dependency")
        if header.batcher_public_key != signer:
            raise BatchRejected(f"transaction {txn_id[:16]}: batcher key is not the batch signer")
        if hashlib.sha512(payload).hexdigest() != header.payload_sha512:
            raise BatchRejected(f"transaction {txn_id[:16]}: payload does not match payload_sha512")
        if not _signed(txn_id, txn_header_bytes, header.signer_public_key):
            raise BatchRejected(f"transaction {txn_id[:16]}: signature does not verify")
        checked.append(CheckedTransaction(header_bytes=txn_header_bytes, txn_id=txn_id, payload=payload, header=header))
    return CheckedBatch(raw=raw, batch_id=batch_id, transactions=tuple(checked))
