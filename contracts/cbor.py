"""Canonical CBOR for payloads and state records, and a decoder safe against hostile bytes.

``decode`` accepts only plain data (maps with text keys, arrays, text, bytes, integers, finite or
not floats, booleans, null), no tags, no indefinite lengths, no duplicate keys, bounded size and
depth, and only the canonical encoding of what it returns. Anything else is ``SchemaError``.
"""
from __future__ import annotations

from typing import Any

import cbor2

from trustmesh.contracts.errors import SchemaError

__all__ = ["MAX_DEPTH", "SchemaError", "decode", "encode"]

MAX_DEPTH = 16
_PLAIN = (str, bytes, int, float, bool, type(None))


def _refuse_tag(*_args: Any) -> Any:
    raise SchemaError("CBOR tags are not accepted")


# cbor2 decodes well-known tags itself; override every one so that none is accepted.
_NO_SEMANTIC_TAGS = {tag: _refuse_tag for tag in range(0, 65536)}


def encode(obj: Any) -> bytes:
    """Canonical CBOR bytes of ``obj`` (sorted map keys, shortest encodings)."""
    return cbor2.dumps(obj, canonical=True)


def _check_plain(obj: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise SchemaError("CBOR nested too deeply")
    if type(obj) is dict:
        for key, value in obj.items():
            if type(key) is not str:
                raise SchemaError("CBOR map keys must be text")
            _check_plain(value, depth + 1)
    elif type(obj) is list:
        for item in obj:
            _check_plain(item, depth + 1)
    elif type(obj) not in _PLAIN:
        raise SchemaError(f"CBOR value of type {type(obj).__name__} is not accepted")


def decode(data: bytes, *, max_bytes: int) -> Any:
    """Decode canonical CBOR of at most ``max_bytes`` into plain Python data, or raise SchemaError."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SchemaError("payload must be bytes")
    data = bytes(data)
    if not data:
        raise SchemaError("empty payload")
    if len(data) > max_bytes:
        raise SchemaError(f"payload of {len(data)} bytes exceeds the limit of {max_bytes}")
    try:
        obj = cbor2.loads(
            data,
            tag_hook=_refuse_tag,
            semantic_decoders=_NO_SEMANTIC_TAGS,
            max_depth=MAX_DEPTH,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            strict_hashable_types=True,
        )
    except SchemaError:
        raise
    except Exception as exc:  # hostile bytes: any decoder failure is the sender's fault
        raise SchemaError(f"undecodable CBOR: {type(exc).__name__}") from exc
    _check_plain(obj, 0)
    try:
        canonical = encode(obj)
    except Exception as exc:
        raise SchemaError("CBOR value cannot be re-encoded") from exc
    if canonical != data:
        raise SchemaError("CBOR is not in canonical form (or has trailing bytes)")
    return obj
