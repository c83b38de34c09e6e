"""secp256k1 node identities (``sawtooth_signing``, shipped inside the sawtooth-sdk wheel).

A node's identity on-chain is its public key (66 hex chars, compressed). Key files follow
Sawtooth's convention: ``NAME.priv`` (hex private key, mode 0600) and ``NAME.pub``.
"""
from __future__ import annotations

import os
from pathlib import Path

from sawtooth_signing import CryptoFactory, ParseError, Signer, create_context
from sawtooth_signing.secp256k1 import Secp256k1PrivateKey, Secp256k1PublicKey

from trustmesh.errors import ConfigError

_CONTEXT = create_context("secp256k1")


def new_signer() -> Signer:
    """A signer over a fresh random private key."""
    return CryptoFactory(_CONTEXT).new_signer(_CONTEXT.new_random_private_key())


def signer_from_hex(private_key_hex: str) -> Signer:
    try:
        key = Secp256k1PrivateKey.from_hex(private_key_hex.strip())
    except ParseError as exc:
        raise ConfigError(f"not a secp256k1 private key: {exc}") from exc
    return CryptoFactory(_CONTEXT).new_signer(key)


def public_key_hex(signer: Signer) -> str:
    key: str = signer.get_public_key().as_hex()
    return key


def verify(signature_hex: str, message: bytes, public_key_hex_: str) -> bool:
    """True if ``signature_hex`` signs ``message`` under ``public_key_hex_``; False on any malformed input."""
    try:
        public_key = Secp256k1PublicKey.from_hex(public_key_hex_)
    except ParseError:
        return False
    try:
        return bool(_CONTEXT.verify(signature_hex, message, public_key))
    except Exception:  # the library raises assorted errors on malformed signatures
        return False


def write_key_pair(name: str, directory: Path, *, force: bool = False) -> tuple[Path, str]:
    """Write ``NAME.priv`` (0600) and ``NAME.pub`` into ``directory``; return (priv path, public key)."""
    directory.mkdir(parents=True, exist_ok=True)
    priv_path, pub_path = directory / f"{name}.priv", directory / f"{name}.pub"
    if not force and (priv_path.exists() or pub_path.exists()):
        raise ConfigError(f"{priv_path} exists; pass --force to overwrite it")
    signer = new_signer()
    private_hex = signer._private_key.as_hex()  # noqa: SLF001 — the SDK offers no public accessor
    fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its old mode on open: tighten it before writing
    with os.fdopen(fd, "w") as handle:
        handle.write(private_hex + "\n")
    public_hex = public_key_hex(signer)
    pub_path.write_text(public_hex + "\n")
    return priv_path, public_hex


def load_signer(path: str | Path) -> Signer:
    """Load a signer from a ``.priv`` file (a path, or a key name resolved in ~/.trustmesh/keys)."""
    candidate = Path(path)
    if not candidate.exists() and candidate.suffix != ".priv":
        candidate = Path.home() / ".trustmesh" / "keys" / f"{path}.priv"
    try:
        text = candidate.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read key file {candidate}: {exc.strerror}") from exc
    return signer_from_hex(text)
