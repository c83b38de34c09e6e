"""The devnet's state root: an incremental multiset hash over every (address, value) in state.

Each entry contributes ``H(address, value)`` = sha512 of ``address || 0x00 || value`` read as a
512-bit integer; the accumulator is the sum of all contributions mod 2**512, updated per block in
O(changed addresses). The published root is the first 64 hex digits of sha512 of the accumulator,
the same shape as a Sawtooth Merkle root. It identifies the state; unlike Sawtooth's Merkle-Radix
tree it gives no inclusion proofs.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

_MODULUS = 1 << 512


def _entry(address: str, value: bytes) -> int:
    return int.from_bytes(hashlib.sha512(address.encode() + b"\x00" + value).digest(), "big")


class StateRoot:
    """Pure functions over the accumulator."""

    EMPTY = 0

    @staticmethod
    def update(accumulator: int, *, old: Mapping[str, bytes], new: Mapping[str, bytes | None]) -> int:
        """The accumulator after ``new`` (None = delete) replaces ``old`` (current values, absent = unset)."""
        acc = accumulator
        for address, value in new.items():
            previous = old.get(address)
            if previous is not None:
                acc -= _entry(address, previous)
            if value is not None:
                acc += _entry(address, value)
        return acc % _MODULUS

    @staticmethod
    def of_entries(entries: Iterable[tuple[str, bytes]]) -> int:
        """The accumulator of a whole state, from scratch (for checks)."""
        return sum(_entry(a, v) for a, v in entries) % _MODULUS

    @staticmethod
    def root_hash(accumulator: int) -> str:
        return hashlib.sha512(StateRoot.encode(accumulator)).hexdigest()[:64]

    @staticmethod
    def encode(accumulator: int) -> bytes:
        return accumulator.to_bytes(64, "big")
