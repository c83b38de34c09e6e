"""The messages of the secure-aggregation phases, as frozen dataclasses with canonical CBOR bytes.

Decoding is the boundary: anything malformed becomes SecAggMessageInvalid there. Version 2: the
mask key is recovered from a 16-byte seed, so key shares are 16 bytes (version 1 carried 32).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cbor2
import numpy as np

from trustmesh.privacy.errors import SecAggMessageInvalid
from trustmesh.privacy.secagg.crypto import KEY_BYTES, NONCE_BYTES, SEED_BYTES

VERSION = 2
Share = tuple[int, bytes]


def _loads(data: bytes, kind: str) -> dict[str, Any]:
    try:
        body = cbor2.loads(data)
    except Exception as exc:  # cbor2 raises several types for malformed input
        raise SecAggMessageInvalid(f"{kind}: not CBOR ({exc})") from exc
    if not isinstance(body, dict) or body.get("kind") != kind:
        raise SecAggMessageInvalid(f"{kind}: wrong message kind")
    if body.get("v") != VERSION:
        raise SecAggMessageInvalid(f"{kind}: version {body.get('v')!r} is not the supported {VERSION}")
    return body


def _bytes(body: dict[str, Any], name: str, size: int) -> bytes:
    value = body.get(name)
    if not isinstance(value, bytes) or len(value) != size:
        raise SecAggMessageInvalid(f"{name}: expected {size} bytes")
    return value


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise SecAggMessageInvalid(f"{name}: expected a non-empty string")
    return value


@dataclass(frozen=True, kw_only=True)
class PublicKeys:
    """Phase 0 (advertise): a participant's two X25519 public keys and its self-mask seed commitment."""

    participant_id: str
    enc_public: bytes
    mask_public: bytes
    seed_commitment: bytes

    def to_cbor(self) -> bytes:
        return cbor2.dumps({"v": VERSION, "kind": "public-keys", "id": self.participant_id,
                            "enc": self.enc_public, "mask": self.mask_public,
                            "commit": self.seed_commitment}, canonical=True)

    @classmethod
    def from_cbor(cls, data: bytes) -> PublicKeys:
        body = _loads(data, "public-keys")
        return cls(participant_id=_text(body, "id"), enc_public=_bytes(body, "enc", KEY_BYTES),
                   mask_public=_bytes(body, "mask", KEY_BYTES), seed_commitment=_bytes(body, "commit", 32))


@dataclass(frozen=True, kw_only=True)
class SharePlaintext:
    """Inside one encrypted envelope: the recipient's shares of the sender's self-mask and mask-key seeds."""

    sender: str
    recipient: str
    seed_share: Share
    key_share: Share

    def to_cbor(self) -> bytes:
        return cbor2.dumps({"v": VERSION, "kind": "shares", "from": self.sender, "to": self.recipient,
                            "x": self.seed_share[0], "seed": self.seed_share[1],
                            "key": self.key_share[1]}, canonical=True)

    @classmethod
    def from_cbor(cls, data: bytes) -> SharePlaintext:
        body = _loads(data, "shares")
        x = body.get("x")
        if not isinstance(x, int) or x < 1:
            raise SecAggMessageInvalid("x: expected a share index >= 1")
        return cls(sender=_text(body, "from"), recipient=_text(body, "to"),
                   seed_share=(x, _bytes(body, "seed", SEED_BYTES)),
                   key_share=(x, _bytes(body, "key", SEED_BYTES)))


def encode_envelope(nonce: bytes, ciphertext: bytes) -> bytes:
    """The bytes carried (via Redis) from sender to recipient: AES-GCM nonce and ciphertext."""
    return cbor2.dumps({"v": VERSION, "kind": "envelope", "nonce": nonce, "ct": ciphertext}, canonical=True)


def decode_envelope(data: bytes) -> tuple[bytes, bytes]:
    body = _loads(data, "envelope")
    ciphertext = body.get("ct")
    if not isinstance(ciphertext, bytes):
        raise SecAggMessageInvalid("ct: expected bytes")
    return _bytes(body, "nonce", NONCE_BYTES), ciphertext


@dataclass(frozen=True, kw_only=True)
class Reveal:
    """Phase 3 (unmask): a survivor's shares — self-mask seed shares of survivors, mask-key seed shares of dropped peers."""

    participant_id: str
    seed_shares: dict[str, Share] = field(default_factory=dict)
    key_shares: dict[str, Share] = field(default_factory=dict)
    unreadable: tuple[str, ...] = ()

    def to_cbor(self) -> bytes:
        return cbor2.dumps({
            "v": VERSION, "kind": "reveal", "id": self.participant_id,
            "seed": {owner: [x, share] for owner, (x, share) in self.seed_shares.items()},
            "key": {owner: [x, share] for owner, (x, share) in self.key_shares.items()},
            "unreadable": list(self.unreadable)}, canonical=True)

    @classmethod
    def from_cbor(cls, data: bytes) -> Reveal:
        body = _loads(data, "reveal")

        def shares(name: str, size: int) -> dict[str, Share]:
            table = body.get(name)
            if not isinstance(table, dict):
                raise SecAggMessageInvalid(f"{name}: expected a map")
            out: dict[str, Share] = {}
            for owner, item in table.items():
                if (not isinstance(owner, str) or not isinstance(item, list) or len(item) != 2
                        or not isinstance(item[0], int) or not isinstance(item[1], bytes)
                        or len(item[1]) != size):
                    raise SecAggMessageInvalid(f"{name}: malformed share entry")
                out[owner] = (item[0], item[1])
            return out

        unreadable = body.get("unreadable", [])
        if not isinstance(unreadable, list) or not all(isinstance(u, str) for u in unreadable):
            raise SecAggMessageInvalid("unreadable: expected a list of ids")
        seed, key = shares("seed", SEED_BYTES), shares("key", SEED_BYTES)
        if set(seed) & set(key):
            raise SecAggMessageInvalid("a reveal holds both shares of one participant")
        return cls(participant_id=_text(body, "id"), seed_shares=seed, key_shares=key,
                   unreadable=tuple(unreadable))


def encode_masked_input(vector: np.ndarray) -> bytes:
    """A masked input as CBOR: its length and its uint32 little-endian bytes."""
    data = np.asarray(vector, dtype="<u4").tobytes()
    return cbor2.dumps({"v": VERSION, "kind": "masked-input", "n": len(vector), "data": data}, canonical=True)


def decode_masked_input(data: bytes) -> np.ndarray:
    body = _loads(data, "masked-input")
    n, raw = body.get("n"), body.get("data")
    if not isinstance(n, int) or not isinstance(raw, bytes) or len(raw) != 4 * n:
        raise SecAggMessageInvalid("masked-input: length does not match its data")
    return np.frombuffer(raw, dtype="<u4").astype(np.uint32)
