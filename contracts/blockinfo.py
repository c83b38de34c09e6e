"""Sawtooth's BlockInfo state (namespace ``00b10c``): the on-chain clock of every rule.

Laid out as Sawtooth's block-info family does: the config at ``00b10c01`` + 62 zeros
(``BlockInfoConfig``), and block N's record at ``00b10c00`` + N in hex zero-padded to 62 digits
(``BlockInfo``). Block N+1's first transaction records block N, so "now" inside block N+1 is the
timestamp of the entry the config's ``latest_block`` names.
"""
from __future__ import annotations

from google.protobuf.message import DecodeError
from sawtooth_sdk.protobuf.block_info_pb2 import BlockInfo, BlockInfoConfig

NAMESPACE = "00b10c"
CONFIG_ADDRESS = NAMESPACE + "01" + "0" * 62
DEFAULT_TARGET_COUNT = 256
DEFAULT_SYNC_TOLERANCE = 300


class BlockInfoUnavailable(Exception):
    """BlockInfo state is missing or undecodable: the ledger does not run the block-info injector."""


def block_address(block_num: int) -> str:
    """Address of block ``block_num``'s BlockInfo record."""
    if block_num < 0:
        raise ValueError("block_num must be >= 0")
    return NAMESPACE + "00" + format(block_num, "x").zfill(62)


def decode_config(data: bytes) -> BlockInfoConfig:
    config = BlockInfoConfig()
    try:
        config.ParseFromString(data)
    except DecodeError as exc:
        raise BlockInfoUnavailable("undecodable BlockInfoConfig") from exc
    return config


def decode_block(data: bytes) -> BlockInfo:
    info = BlockInfo()
    try:
        info.ParseFromString(data)
    except DecodeError as exc:
        raise BlockInfoUnavailable("undecodable BlockInfo") from exc
    return info
