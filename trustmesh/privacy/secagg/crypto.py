"""The cryptographic primitives of secure aggregation, all from `cryptography`.

X25519 key agreement, HKDF-SHA256 key derivation, AES-GCM for the share envelopes, AES-128-CTR as
the mask PRG, SHA-256 commitments. Every derived key is bound to the round and the pair; the mask
private key is derived from a 16-byte seed so that one Shamir block recovers it.
"""
from __future__ import annotations

import hashlib
import os

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from trustmesh.privacy.errors import SecAggMessageInvalid

KEY_BYTES = 32
SEED_BYTES = 16  # self-mask seed and mask-key seed: one Shamir block each
PRG_KEY_BYTES = 16  # AES-128 keys the mask PRG
NONCE_BYTES = 12
LABEL = b"trustmesh-secagg/v2/"
_RAW = serialization.Encoding.Raw
_RAW_PUB = serialization.PublicFormat.Raw


def new_private_key() -> X25519PrivateKey:
    """A fresh X25519 private key (one per purpose, per round)."""
    return X25519PrivateKey.generate()


def public_bytes(key: X25519PrivateKey) -> bytes:
    """The 32-byte raw public key that goes into the advertisement."""
    return key.public_key().public_bytes(_RAW, _RAW_PUB)


def mask_key_from_seed(seed: bytes, *, round_id: str, participant_id: str) -> X25519PrivateKey:
    """The mask private key of one participant and round, from its 16-byte mask-key seed (HKDF-SHA256)."""
    if len(seed) != SEED_BYTES:
        raise SecAggMessageInvalid(f"a mask-key seed has {SEED_BYTES} bytes, got {len(seed)}")
    info = LABEL + b"mask-key/" + f"{round_id}\x00{participant_id}".encode()
    raw = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(seed)
    return X25519PrivateKey.from_private_bytes(raw)


def derive_key(private: X25519PrivateKey, peer_public: bytes, *, purpose: str, context: bytes,
               length: int = KEY_BYTES) -> bytes:
    """HKDF-SHA256 over the X25519 agreement, separated by purpose and bound to round and pair."""
    try:
        peer = X25519PublicKey.from_public_bytes(peer_public)
        shared = private.exchange(peer)
    except ValueError as exc:
        raise SecAggMessageInvalid(f"bad X25519 public key: {exc}") from exc
    info = LABEL + purpose.encode() + b"/" + context
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(shared)


def seal(key: bytes, plaintext: bytes, associated: bytes) -> tuple[bytes, bytes]:
    """AES-GCM encrypt; returns (nonce, ciphertext with tag)."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce, AESGCM(key).encrypt(nonce, plaintext, associated)


def open_sealed(key: bytes, nonce: bytes, ciphertext: bytes, associated: bytes) -> bytes:
    """AES-GCM decrypt; a wrong key, nonce, tag or associated data raises SecAggMessageInvalid."""
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, associated)
    except (InvalidTag, ValueError) as exc:
        raise SecAggMessageInvalid("share envelope does not authenticate") from exc


class MaskPad:
    """The mask PRG (AES-CTR keystream read as little-endian uint32) into one reusable buffer.

    Adding n masks to a vector then costs n keystreams and n in-place additions, with no temporaries.
    """

    def __init__(self, length: int) -> None:
        self.length = length
        self._zeros = bytes(4 * length)
        self._buffer = bytearray(4 * length + 15)  # update_into may want a block's slack
        self._view = np.frombuffer(self._buffer, dtype="<u4", count=length)

    def expand(self, seed: bytes) -> np.ndarray:
        """The mask for ``seed`` (16 or 32 bytes); a view valid until the next call."""
        encryptor = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor()
        encryptor.update_into(self._zeros, self._buffer)
        return self._view

    def add(self, total: np.ndarray, seed: bytes) -> None:
        """total += mask(seed) mod 2^32, in place."""
        np.add(total, self.expand(seed), out=total)

    def subtract(self, total: np.ndarray, seed: bytes) -> None:
        """total -= mask(seed) mod 2^32, in place."""
        np.subtract(total, self.expand(seed), out=total)


def expand_mask(seed: bytes, length: int) -> np.ndarray:
    """The mask for ``seed`` as a fresh uint32 array of ``length`` elements."""
    return MaskPad(length).expand(seed).astype(np.uint32)


def commit(seed: bytes) -> bytes:
    """SHA-256 commitment to a self-mask seed (the seed is uniformly random, so this hides it)."""
    return hashlib.sha256(LABEL + b"seed-commitment/" + seed).digest()


def new_seed() -> bytes:
    """A fresh 16-byte seed (self mask or mask key) from the OS."""
    return os.urandom(SEED_BYTES)
