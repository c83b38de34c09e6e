"""Shamir sharing of 16- and 32-byte secrets over pycryptodome (which takes exactly 16-byte secrets).

A 32-byte secret is split as two independent 16-byte halves with the same share indices; a
holder's share is the two half-shares concatenated. Indices are 1..n in roster order.
"""
from __future__ import annotations

from Crypto.Protocol.SecretSharing import Shamir

BLOCK = 16


def split(secret: bytes, threshold: int, holders: int) -> list[tuple[int, bytes]]:
    """Shares (index, bytes of len(secret)) for indices 1..holders; any ``threshold`` of them rebuild it."""
    if len(secret) % BLOCK or not secret:
        raise ValueError(f"secret length must be a multiple of {BLOCK}, got {len(secret)}")
    blocks = [Shamir.split(threshold, holders, secret[i:i + BLOCK]) for i in range(0, len(secret), BLOCK)]
    return [(index, b"".join(block[k][1] for block in blocks))
            for k, index in enumerate(index for index, _ in blocks[0])]


def combine(shares: list[tuple[int, bytes]]) -> bytes:
    """Rebuild a secret from exactly ``threshold`` shares. With fewer the result is silently wrong: check it."""
    size = len(shares[0][1])
    if size % BLOCK or any(len(share) != size for _, share in shares):
        raise ValueError("shares differ in length or are not whole 16-byte blocks")
    return b"".join(
        Shamir.combine([(index, share[i:i + BLOCK]) for index, share in shares])
        for i in range(0, size, BLOCK))
