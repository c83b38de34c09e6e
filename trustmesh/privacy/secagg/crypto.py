"""The cryptographic primitives of secure aggregation, all from `cryptography`.

X25519 key agreement, HKDF-SHA256 key derivation, AES-GCM for the share envelopes, AES-CTR as
the mask PRG, SHA-256 commitments. Every derived key is bound to the round and the pair.
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
SEED_BYTES = 16  # the self-mask seed: an AES-128 key, one Shamir secret
NONCE_BYTES = 12
_RAW = serialization.Encoding.Raw
_RAW_PUB = serialization.PublicFormat.Raw
_RAW_PRIV = serialization.PrivateFormat.Raw
_NO_ENC = serialization.NoEncryption()


def new_private_key() -> X25519PrivateKey:
    """A fresh X25519 private key (one per purpose, per round)."""
    return X25519PrivateKey.generate()


def public_bytes(key: X25519PrivateKey) -> bytes:
    """The 32-byte raw public key that goes into the advertisement."""
    return key.public_key().public_bytes(_RAW, _RAW_PUB)


def private_bytes(key: X25519PrivateKey) -> bytes:
    """The 32-byte raw private key (what gets Shamir-shared for dropout recovery)."""
    return key.private_bytes(_RAW, _RAW_PRIV, _NO_ENC)


def private_from_bytes(raw: bytes) -> X25519PrivateKey:
    """Rebuild a private key from its 32 raw bytes."""
    if len(raw) != KEY_BYTES:
        raise SecAggMessageInvalid(f"an X25519 private key has {KEY_BYTES} bytes, got {len(raw)}")
    return X25519PrivateKey.from_private_bytes(raw)


def derive_key(private: X25519PrivateKey, peer_public: bytes, *, purpose: str, context: bytes) -> bytes:
    """HKDF-SHA256 over the X25519 agreement, separated by purpose and bound to round and pair."""
    try:
        peer = X25519PublicKey.from_public_bytes(peer_public)
        shared = private.exchange(peer)
    except ValueError as exc:
        raise SecAggMessageInvalid(f"bad X25519 public key: {exc}") from exc
    info = b"trustmesh-secagg/v1/" + purpose.encode() + b"/" + context
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(shared)


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


def expand_mask(seed: bytes, length: int) -> np.ndarray:
    """The PRG: AES-CTR keystream under ``seed`` (16 or 32 bytes), read as ``length`` uint32 (little-endian)."""
    encryptor = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor()
    stream = encryptor.update(bytes(4 * length)) + encryptor.finalize()
    return np.frombuffer(stream, dtype="<u4").astype(np.uint32, copy=False)


def commit(seed: bytes) -> bytes:
    """SHA-256 commitment to a self-mask seed (the seed is uniformly random, so this hides it)."""
    return hashlib.sha256(b"trustmesh-secagg/v1/seed-commitment/" + seed).digest()


def new_seed() -> bytes:
    """A fresh self-mask seed from the OS."""
    return os.urandom(SEED_BYTES)
