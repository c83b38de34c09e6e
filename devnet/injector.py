"""BlockInfo for each block, as Sawtooth's block-info batch injector and TP write it.

When block N+1 starts, its first (injected) transaction records block N at ``block_address(N)``
and moves the config's latest_block to N, pruning records older than target_count blocks. The
timestamp is the wall-clock second at which block N+1 started, never earlier than block N's. The
devnet applies these writes itself (no block-info TP runs), and puts the same signed
``block_info`` batch first in the published block.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable

from sawtooth_sdk.protobuf.batch_pb2 import Batch, BatchHeader
from sawtooth_sdk.protobuf.block_info_pb2 import BlockInfo, BlockInfoConfig, BlockInfoTxn
from sawtooth_sdk.protobuf.block_pb2 import BlockHeader
from sawtooth_sdk.protobuf.transaction_pb2 import Transaction, TransactionHeader
from sawtooth_signing import Signer

from trustmesh.contracts.blockinfo import (
    CONFIG_ADDRESS,
    DEFAULT_SYNC_TOLERANCE,
    DEFAULT_TARGET_COUNT,
    NAMESPACE,
    block_address,
    decode_block,
    decode_config,
)

FAMILY_NAME = "block_info"
FAMILY_VERSION = "1.0"
BLOCK_INFO_PREFIX = NAMESPACE + "00"


def last_timestamp(read: Callable[[str], bytes | None]) -> int:
    """The timestamp of the newest BlockInfo record in state (0 if none yet)."""
    raw = read(CONFIG_ADDRESS)
    if raw is None:
        return 0
    record = read(block_address(decode_config(raw).latest_block))
    return decode_block(record).timestamp if record is not None else 0


def block_info_for(previous: BlockHeader, previous_id: str, *, timestamp: int) -> BlockInfo:
    return BlockInfo(
        block_num=previous.block_num,
        previous_block_id=previous.previous_block_id,
        signer_public_key=previous.signer_public_key,
        header_signature=previous_id,
        timestamp=timestamp,
    )


def block_info_writes(info: BlockInfo, read: Callable[[str], bytes | None]) -> dict[str, bytes | None]:
    """State changes that record ``info`` (None = delete), as the block-info TP computes them."""
    raw = read(CONFIG_ADDRESS)
    if raw is None:
        config = BlockInfoConfig(
            latest_block=info.block_num,
            oldest_block=info.block_num,
            target_count=DEFAULT_TARGET_COUNT,
            sync_tolerance=DEFAULT_SYNC_TOLERANCE,
        )
    else:
        config = decode_config(raw)
        config.target_count = config.target_count or DEFAULT_TARGET_COUNT
        config.sync_tolerance = config.sync_tolerance or DEFAULT_SYNC_TOLERANCE
    writes: dict[str, bytes | None] = {}
    oldest = config.oldest_block
    while info.block_num - oldest > config.target_count:
        writes[block_address(oldest)] = None
        oldest += 1
    config.oldest_block = oldest
    config.latest_block = info.block_num
    writes[CONFIG_ADDRESS] = config.SerializeToString()
    writes[block_address(info.block_num)] = info.SerializeToString()
    return writes


def injected_batch(info: BlockInfo, signer: Signer) -> Batch:
    """The signed ``block_info`` batch that goes first in the block."""
    payload = BlockInfoTxn(block=info).SerializeToString()
    public_key = signer.get_public_key().as_hex()
    header = TransactionHeader(
        signer_public_key=public_key,
        family_name=FAMILY_NAME,
        family_version=FAMILY_VERSION,
        inputs=[CONFIG_ADDRESS, BLOCK_INFO_PREFIX],
        outputs=[CONFIG_ADDRESS, BLOCK_INFO_PREFIX],
        payload_sha512=hashlib.sha512(payload).hexdigest(),
        batcher_public_key=public_key,
    ).SerializeToString()
    txn = Transaction(header=header, header_signature=signer.sign(header), payload=payload)
    batch_header = BatchHeader(signer_public_key=public_key, transaction_ids=[txn.header_signature])
    header_bytes = batch_header.SerializeToString()
    return Batch(header=header_bytes, header_signature=signer.sign(header_bytes), transactions=[txn])
