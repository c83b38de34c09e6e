"""Signed Sawtooth transactions and batches, built exactly as a validator checks them.

Every header field is set: family name and version, inputs and outputs (addresses or prefixes),
dependencies, a random nonce, the payload's sha512, the signer and batcher public keys. The header
bytes are signed; the signature is the transaction's (or batch's) id.
"""
from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Sequence

from sawtooth_sdk.protobuf.batch_pb2 import Batch, BatchHeader, BatchList
from sawtooth_sdk.protobuf.transaction_pb2 import Transaction, TransactionHeader
from sawtooth_signing import Signer

from trustmesh.ledger.keys import public_key_hex


def make_transaction(
    signer: Signer,
    *,
    family_name: str,
    family_version: str,
    payload: bytes,
    inputs: Sequence[str],
    outputs: Sequence[str],
    dependencies: Sequence[str] = (),
    batcher_public_key: str | None = None,
    nonce: str | None = None,
) -> Transaction:
    """One signed transaction; ``batcher_public_key`` defaults to the signer's own key."""
    signer_key = public_key_hex(signer)
    header = TransactionHeader(
        family_name=family_name,
        family_version=family_version,
        inputs=list(inputs),
        outputs=list(outputs),
        dependencies=list(dependencies),
        nonce=nonce if nonce is not None else secrets.token_hex(16),
        payload_sha512=hashlib.sha512(payload).hexdigest(),
        signer_public_key=signer_key,
        batcher_public_key=batcher_public_key or signer_key,
    ).SerializeToString()
    return Transaction(header=header, header_signature=signer.sign(header), payload=payload)


def make_batch(signer: Signer, transactions: Iterable[Transaction]) -> Batch:
    """A batch of ``transactions`` signed by ``signer`` (the batcher named in each header)."""
    transactions = list(transactions)
    header = BatchHeader(
        signer_public_key=public_key_hex(signer),
        transaction_ids=[txn.header_signature for txn in transactions],
    ).SerializeToString()
    return Batch(header=header, header_signature=signer.sign(header), transactions=transactions)


def batch_list(batches: Iterable[Batch]) -> BatchList:
    return BatchList(batches=list(batches))
