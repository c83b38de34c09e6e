"""Shamir sharing of 16-byte blocks over GF(2^128), compatible with pycryptodome's ``Shamir``.

pycryptodome's ``Shamir.combine`` recomputes the Lagrange coefficients (O(t²) field products and t
inversions) for every secret, and its field product is a slow bit loop. The server rebuilds many
secrets from shares at the same t indices, so `Combiner` computes the coefficients once (with
pycryptodome's own products and inverses). Multiplying by a fixed c is GF(2)-linear: c·y is the
XOR of c·x^k over the set bits k of y, and c·x^k the XOR of x^(i+k) over the set bits i of c. The
powers of x are computed with pycryptodome (its reduction polynomial and bit order); the rest is
XOR of table rows, vectorized in numpy. `split_many` evaluates random polynomials the same way,
exactly as ``Shamir.split`` defines its shares. Tests check both against pycryptodome.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from Crypto.Protocol.SecretSharing import _Element
from Crypto.Random import get_random_bytes

BLOCK = 16
_BITS = 8 * BLOCK
_X = _Element(2)  # the field element x


def split(secret: bytes, threshold: int, holders: int) -> list[tuple[int, bytes]]:
    """Shares (index, bytes of len(secret)) for indices 1..holders; any ``threshold`` of them rebuild it."""
    return split_many([secret], threshold, holders)[0]


def split_many(secrets: Sequence[bytes], threshold: int, holders: int) -> list[list[tuple[int, bytes]]]:
    """Each secret shared as by ``Shamir.split`` (random polynomial of degree t-1 over GF(2^128) per
    16-byte block, evaluated at 1..holders), all blocks at once; pycryptodome's combine rebuilds them."""
    if not secrets or any(len(secret) % BLOCK or not secret for secret in secrets):
        raise ValueError(f"secret lengths must be non-zero multiples of {BLOCK}")
    if not 1 <= threshold <= holders:
        raise ValueError(f"need 1 <= threshold <= holders, got {threshold} of {holders}")
    blocks = [secret[i:i + BLOCK] for secret in secrets for i in range(0, len(secret), BLOCK)]
    # coefficients[k] holds the x^k coefficient of every block's polynomial; the constant is the block
    coefficients = [_words([int.from_bytes(block, "big") for block in blocks])]
    coefficients += [_words([int.from_bytes(get_random_bytes(BLOCK), "big") for _ in blocks])
                     for _ in range(threshold - 1)]
    values = _evaluate(coefficients, holders).astype(">u8").tobytes()  # (block, holder) -> 16 bytes
    out, first = [], 0
    for secret in secrets:
        count = len(secret) // BLOCK
        out.append([(holder + 1, b"".join(values[((first + b) * holders + holder) * BLOCK:]
                                          [:BLOCK] for b in range(count)))
                    for holder in range(holders)])
        first += count
    return out


def _evaluate(coefficients: Sequence[np.ndarray], holders: int) -> np.ndarray:
    """Horner's rule at x = 1..holders for every block at once: (blocks, holders, 2) elements."""
    points = np.arange(1, holders + 1)
    times_point = np.zeros((holders, _BITS, 2), dtype=np.uint64)  # "multiply by the integer i", per holder
    position = np.arange(_BITS)
    for b in range(holders.bit_length()):  # i·y = XOR of x^b·y over the set bits b of i
        has = ((points >> b) & 1).astype(bool)
        times_point[has] ^= _powers_of_x()[_BITS - 1 - position + b]
    state = np.broadcast_to(coefficients[-1][:, None, :], (len(coefficients[-1]), holders, 2)).copy()
    for coefficient in reversed(coefficients[:-1]):
        bits = _bits(state.reshape(-1, 2)).reshape(state.shape[0], holders, _BITS).astype(bool)
        state = _xor_select(bits, times_point[None]) ^ coefficient[:, None, :]
    return state


def combine(shares: Sequence[tuple[int, bytes]]) -> bytes:
    """Rebuild one secret from exactly ``threshold`` shares. With fewer the result is silently wrong: check it."""
    return Combiner([index for index, _ in shares]).combine_many([[share for _, share in shares]])[0]


class Combiner:
    """Rebuilds any number of secrets whose shares sit at the same indices (one round's revealers)."""

    def __init__(self, indices: Sequence[int]) -> None:
        self.indices = tuple(indices)
        if not self.indices:
            raise ValueError("no shares to combine")
        if any(not isinstance(i, int) or i < 1 for i in self.indices):
            raise ValueError("share indices must be integers >= 1")
        if len(set(self.indices)) != len(self.indices):
            raise ValueError("duplicate share index")
        # Lagrange coefficient at 0: c_j = N / d_j with N = Π x_m, d_j = x_j·Π_{m≠j}(x_j + x_m)
        # (characteristic 2: x_j - x_m = x_j + x_m). Scalar products and inverses are pycryptodome's.
        points = [_Element(i) for i in self.indices]
        everything = _Element(1)
        inverses = []
        for j, x_j in enumerate(points):
            everything *= x_j
            denominator = x_j
            for m, x_m in enumerate(points):
                if m != j:
                    denominator *= x_j + x_m
            inverses.append(int(denominator.inverse()))
        coefficients = _apply(_times_table(_words([int(everything)]))[0], _bits(_words(inverses)))
        self._table = _times_table(coefficients).reshape(-1, 2)  # row j·128 + p: c_j·x^(127-p)

    def combine_many(self, rows: Sequence[Sequence[bytes]]) -> list[bytes]:
        """One secret per row; a row holds the share bytes at ``indices``, in that order."""
        size = len(rows[0][0]) if rows and rows[0] else 0
        if not size or size % BLOCK:
            raise ValueError(f"shares must be whole {BLOCK}-byte blocks")
        if any(len(row) != len(self.indices) or any(len(share) != size for share in row) for row in rows):
            raise ValueError("every row needs one share per index, all of the same length")
        blocks = size // BLOCK
        raw = np.frombuffer(b"".join(b"".join(row) for row in rows), dtype=np.uint8)
        # (secret, share, block, byte) -> one row of t·128 bits per (secret, block)
        raw = raw.reshape(len(rows), len(self.indices), blocks, BLOCK).transpose(0, 2, 1, 3)
        bits = np.unpackbits(np.ascontiguousarray(raw).reshape(len(rows) * blocks, -1), axis=1)
        secrets = _apply(self._table, bits).astype(">u8").tobytes()
        return [secrets[i * size:(i + 1) * size] for i in range(len(rows))]


# Field elements in numpy: an element is a row (hi, lo) of uint64, the big-endian halves of its 16 bytes,
# so bit position p of its bytes (np.unpackbits order) holds the coefficient of x^(127-p).

@functools.cache
def _powers_of_x() -> np.ndarray:
    """x^m for m = 0..254, computed with pycryptodome's field elements (so its reduction polynomial)."""
    powers, value = [], _Element(1)
    for _ in range(2 * _BITS - 1):
        powers.append(int(value))
        value = value * _X
    table = _words(powers)
    table.flags.writeable = False
    return table


def _words(values: Sequence[int]) -> np.ndarray:
    """Python ints below 2^128 as (hi, lo) uint64 rows."""
    return np.array([(v >> 64, v & 0xFFFF_FFFF_FFFF_FFFF) for v in values], dtype=np.uint64).reshape(-1, 2)


def _bits(words: np.ndarray) -> np.ndarray:
    """(m, 2) elements -> (m, 128) bits, big-endian positions."""
    return np.unpackbits(np.ascontiguousarray(words, dtype=">u8").view(np.uint8).reshape(-1, BLOCK), axis=1)


def _apply(table: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """The GF(2)-linear map given by ``table`` (one row per bit position) applied to rows of bits."""
    return _xor_select(bits.astype(bool), table[None])


def _xor_select(bits: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """XOR of the elements rows[..., r, :] where bits[..., r] is set: bits (..., r), rows broadcastable to (..., r, 2)."""
    return np.stack([np.bitwise_xor.reduce(np.where(bits, np.ascontiguousarray(rows[..., half]), np.uint64(0)),
                                           axis=-1) for half in (0, 1)], axis=-1)


def _times_table(elements: np.ndarray) -> np.ndarray:
    """For each element c, the map "multiply by c" as rows c·x^(127-p), p = 0..127: shape (m, 128, 2).

    c·x^k = Σ_i c_i·x^(i+k), so row p is the XOR of the powers x^(254-p-q) over the set bits q of c.
    """
    position = np.arange(_BITS)
    powers = _powers_of_x()[2 * _BITS - 2 - position[:, None] - position[None, :]]  # (p, q, 2)
    bits = _bits(elements).astype(bool)  # (m, q)
    return _xor_select(bits[:, None, :], powers[None])
