"""The read-only state view every rule reads, and the on-chain clock read through it."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from trustmesh.contracts import blockinfo
from trustmesh.contracts.errors import RuleViolation

__all__ = ["MappingView", "OverlayView", "StateView", "block_time"]


@runtime_checkable
class StateView(Protocol):
    """Read access to ledger state by full address; ``None`` when nothing is stored there."""

    def get(self, address: str) -> bytes | None: ...


class MappingView:
    """A ``StateView`` over an in-memory mapping (tests, clients that fetched state in advance)."""

    def __init__(self, *, state: Mapping[str, bytes]) -> None:
        self._state = state

    def get(self, address: str) -> bytes | None:
        return self._state.get(address)


class OverlayView:
    """A ``StateView`` that sees writes made on top of another view (None = deleted): the steps of
    one transaction read what the steps before them wrote."""

    def __init__(self, base: StateView) -> None:
        self._base = base
        self._writes: dict[str, bytes | None] = {}

    def get(self, address: str) -> bytes | None:
        return self._writes[address] if address in self._writes else self._base.get(address)

    def write(self, changes: Mapping[str, bytes | None]) -> None:
        self._writes.update(changes)


def block_time(view: StateView) -> int:
    """"Now" for the rules: the timestamp of the block BlockInfoConfig.latest_block names.

    Raises RuleViolation when BlockInfo is missing or unreadable (the ledger runs no injector).
    """
    raw_config = view.get(blockinfo.CONFIG_ADDRESS)
    if not raw_config:
        raise RuleViolation("no block info: BlockInfoConfig is missing (is the block-info injector on?)")
    try:
        config = blockinfo.decode_config(raw_config)
        raw_block = view.get(blockinfo.block_address(config.latest_block))
        if not raw_block:
            raise RuleViolation(f"no block info for block {config.latest_block}")
        block = blockinfo.decode_block(raw_block)
    except blockinfo.BlockInfoUnavailable as exc:
        raise RuleViolation(f"no block info: {exc}") from exc
    return int(block.timestamp)
