"""The one wire form of model updates and model blobs: a versioned canonical CBOR envelope.

    {"v": 1, "kind": "update" | "model", "codec": C, "tensors": [entry, ...]}   (cbor2, canonical)

one entry per tensor, in the model's ``state_dict`` order, payloads as raw little-endian bytes:

    f32   [name, shape, "<f4", data]                      exact
    f16   [name, shape, "<f2", data]                      |err| <= 2**-11·|x| + 2**-25
    int8  [name, shape, "i1", scale, data]                x ≈ q·scale, |err| <= scale/2
    topk  [name, shape, "i1", scale, indices, data]       k largest |x| per tensor; indices "<u4",
                                                          strictly increasing; values as int8

``scale`` is a float32 value (max|x|/127). A model blob is kind "model", codec f32. The hash of
either is sha512 of the envelope bytes (DESIGN §4) — the hash recorded on-chain. Decoding trusts
nothing the sender declares: sizes come from the spec, the bytes must re-encode identically
(one content, one hash), and every failure is :class:`UpdateRejected` with a reason.
"""
from __future__ import annotations

import functools
import hashlib
import math
import warnings
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

import cbor2
import numpy as np

from trustmesh.errors import UpdateRejected
from trustmesh.fl.params import Params, ParamSpec, spec_of

__all__ = [
    "ENVELOPE_VERSION",
    "CODECS",
    "ErrorFeedback",
    "encode_update",
    "decode_update",
    "decode_update_flat",
    "encode_params",
    "decode_params",
    "update_hash",
    "model_hash",
    "max_envelope_bytes",
]

ENVELOPE_VERSION = 1
CODECS: tuple[str, ...] = ("f32", "f16", "int8", "topk")
_DTYPE = {"f32": "<f4", "f16": "<f2", "int8": "i1", "topk": "i1"}
_ENTRY_LEN = {"f32": 4, "f16": 4, "int8": 5, "topk": 6}
_KEYS = frozenset({"v", "kind", "codec", "tensors"})
_F16_MAX = float(np.finfo(np.float16).max)
_SCALE_MAX = float(np.finfo(np.float32).max) / 127.0


# ---------------------------------------------------------------- hashes


def update_hash(data: bytes) -> str:
    """sha512 hex of an envelope's bytes: the content hash recorded on-chain for an update."""
    return hashlib.sha512(data).hexdigest()


def model_hash(data: bytes) -> str:
    """sha512 hex of a model envelope (the same rule as :func:`update_hash`)."""
    return hashlib.sha512(data).hexdigest()


# ---------------------------------------------------------------- error feedback


class ErrorFeedback:
    """Kept by a participant across rounds: what a lossy codec dropped is added to the next delta."""

    def __init__(self) -> None:
        self.residual: Params | None = None

    def compensate(self, update: Mapping[str, np.ndarray]) -> Params:
        """``update + residual`` (the update itself when nothing is pending)."""
        if self.residual is None:
            return {name: np.asarray(arr, dtype=np.float32) for name, arr in update.items()}
        if spec_of(self.residual) != spec_of(update):
            raise UpdateRejected("error-feedback residual does not match the update's layout")
        return {name: np.add(arr, self.residual[name], dtype=np.float32) for name, arr in update.items()}

    def record(self, corrected: Mapping[str, np.ndarray], sent: Mapping[str, np.ndarray]) -> None:
        """Remember ``corrected - sent``: the part of this round's update the receiver will not see."""
        self.residual = {name: np.subtract(corrected[name], sent[name], dtype=np.float32) for name in corrected}

    def reset(self) -> None:
        self.residual = None

    def norm(self) -> float:
        """L2 norm of the pending residual (0 when none)."""
        if self.residual is None:
            return 0.0
        return math.sqrt(sum(float(np.dot(r.ravel(), r.ravel())) for r in self.residual.values()))


# ---------------------------------------------------------------- encoding


def _f32(arr: np.ndarray, name: str) -> np.ndarray:
    out = np.asarray(arr, dtype="<f4", order="C")  # keeps 0-d shapes (ascontiguousarray would not)
    if out.size and not _all_finite(out):
        raise UpdateRejected(f"{name}: non-finite value; refusing to encode")
    return out


def _int8(x: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Symmetric per-tensor quantization: (scale, q int8, the values the receiver will see)."""
    peak = np.float32(np.abs(x).max()) if x.size else np.float32(0)
    scale = np.float32(peak / np.float32(127)) if peak > 0 else np.float32(0)
    if scale == 0:
        q = np.zeros(x.shape, dtype=np.int8)
    else:
        q = np.clip(np.rint(x / scale), -127, 127).astype(np.int8)
    return float(scale), q, q.astype(np.float32) * scale


def _encode_tensor(
    name: str, x: np.ndarray, codec: str, topk_fraction: float
) -> tuple[list[Any], np.ndarray]:
    """One envelope entry and the dense float32 tensor a decoder will reconstruct from it."""
    shape = [int(d) for d in x.shape]
    if codec == "f32":
        return [name, shape, "<f4", x.tobytes()], x
    if codec == "f16":
        if x.size and float(np.abs(x).max()) > _F16_MAX:
            raise UpdateRejected(f"{name}: value beyond the float16 range; use f32")
        h = _to_half(x)
        seen = np.empty(x.shape, dtype=np.float32)
        _half_into(h, seen)
        return [name, shape, "<f2", h.tobytes()], seen
    if codec == "int8":
        scale, q, seen = _int8(x)
        return [name, shape, "i1", scale, q.tobytes()], seen
    flat = x.reshape(-1)
    k = min(flat.size, max(1, math.ceil(topk_fraction * flat.size))) if flat.size else 0
    if k == flat.size:
        idx = np.arange(k, dtype="<u4")
    else:
        idx = np.sort(np.argpartition(np.abs(flat), flat.size - k)[flat.size - k :]).astype("<u4")
    scale, q, kept = _int8(flat[idx])
    dense = np.zeros(flat.size, dtype=np.float32)
    dense[idx] = kept
    return [name, shape, "i1", scale, idx.tobytes(), q.tobytes()], dense.reshape(x.shape)


def _envelope(kind: str, codec: str, entries: list[list[Any]]) -> bytes:
    return cbor2.dumps({"v": ENVELOPE_VERSION, "kind": kind, "codec": codec, "tensors": entries}, canonical=True)


def encode_update(
    params: Mapping[str, np.ndarray],
    codec: str = "f32",
    *,
    topk_fraction: float = 0.01,
    residual: ErrorFeedback | None = None,
) -> bytes:
    """Encode a delta with ``codec``; with ``residual``, the pending error is added first and the
    new error (what this encoding drops) is stored back into it."""
    if codec not in CODECS:
        raise UpdateRejected(f"unknown codec {codec!r}; known: {', '.join(CODECS)}")
    if not 0 < topk_fraction <= 1:
        raise UpdateRejected(f"topk_fraction must be in (0, 1], got {topk_fraction}")
    source = residual.compensate(params) if residual is not None else params
    entries: list[list[Any]] = []
    seen: Params = {}
    for name, arr in source.items():
        entry, seen[name] = _encode_tensor(name, _f32(arr, name), codec, topk_fraction)
        entries.append(entry)
    if residual is not None:
        residual.record(source, seen)
    return _envelope("update", codec, entries)


def encode_params(params: Mapping[str, np.ndarray]) -> bytes:
    """A model blob: float32 envelope of kind "model" (hash it with :func:`model_hash`)."""
    return _envelope("model", "f32", [[name, [int(d) for d in arr.shape], "<f4", _f32(arr, name).tobytes()]
                                      for name, arr in params.items()])


# ---------------------------------------------------------------- decoding


def _all_finite(arr: np.ndarray) -> bool:
    """No NaN or inf."""
    return bool(np.isfinite(arr).all())


@functools.cache
def _torch() -> ModuleType | None:
    """torch, when installed: its float16 conversions are ~10x faster than numpy's."""
    try:
        import torch
    except ImportError:  # a process without torch falls back to numpy (same values, slower)
        return None
    return torch


def _to_half(x: np.ndarray) -> np.ndarray:
    """float32 -> little-endian float16, round to nearest even."""
    torch = _torch()
    if torch is None:
        return x.astype("<f2")
    src = x if x.flags.writeable else x.copy()
    return torch.from_numpy(src).to(torch.float16).numpy().astype("<f2", copy=False)


def _half_into(halves: np.ndarray, out: np.ndarray) -> None:
    """Widen float16 values into a float32 slice (exact either way)."""
    torch = _torch()
    if torch is None or halves.dtype.byteorder == ">":
        out[...] = halves
        return
    with warnings.catch_warnings():  # the source is read-only bytes; torch only reads it here
        warnings.simplefilter("ignore", UserWarning)
        torch.from_numpy(out).copy_(torch.from_numpy(halves))


def max_envelope_bytes(spec: ParamSpec, codec: str = "f32") -> int:
    """An upper bound on a valid envelope's size for ``spec`` (useful as ``max_bytes``)."""
    per_value = {"f32": 4, "f16": 2, "int8": 1, "topk": 5}[codec]
    overhead = sum(len(name.encode()) + 9 * len(shape) + 48 for name, shape in spec)
    return 64 + overhead + per_value * spec.num_params


def _is_int(v: object) -> bool:
    return type(v) is int


def _check_bytes(entry_name: str, what: str, v: object, expected_len: int | None) -> bytes:
    if type(v) is not bytes:
        raise UpdateRejected(f"{entry_name}: {what} is not a byte string")
    if expected_len is not None and len(v) != expected_len:
        raise UpdateRejected(f"{entry_name}: {what} has {len(v)} bytes, expected {expected_len}")
    return v


def _check_scale(name: str, scale: object) -> np.float32:
    if type(scale) is not float or not math.isfinite(scale) or not 0.0 <= scale <= _SCALE_MAX:
        raise UpdateRejected(f"{name}: scale must be a finite float in [0, {_SCALE_MAX:.3g}]")
    s32 = np.float32(scale)
    if float(s32) != scale:
        raise UpdateRejected(f"{name}: scale is not a float32 value")
    return s32


def _check_q(name: str, raw: bytes) -> np.ndarray:
    q = np.frombuffer(raw, dtype=np.int8)
    if q.size and q.min() < -127:
        raise UpdateRejected(f"{name}: int8 value -128 is outside the symmetric range")
    return q


Writer = Callable[[np.ndarray], None]  # fills a float32 vector of the tensor's size


def _parse(data: bytes, spec: ParamSpec, *, kind: str, max_bytes: int, codecs: tuple[str, ...]) -> list[Writer]:
    """Validate an envelope against ``spec``; return, per tensor, a function writing its values."""
    if not isinstance(data, bytes | bytearray):
        raise UpdateRejected("envelope must be bytes")
    if len(data) > max_bytes:
        raise UpdateRejected(f"envelope of {len(data)} bytes exceeds the limit of {max_bytes}")
    try:
        doc = cbor2.loads(data)
    except Exception as exc:  # any decoder failure (truncation, bad tags, recursion) is a bad blob
        raise UpdateRejected(f"not a CBOR envelope: {type(exc).__name__}") from None
    if type(doc) is not dict or set(doc) != _KEYS:
        raise UpdateRejected(f"envelope must be a map with exactly the keys {sorted(_KEYS)}")
    if not _is_int(doc["v"]) or doc["v"] != ENVELOPE_VERSION:
        raise UpdateRejected(f"unsupported envelope version {doc['v']!r}")
    if doc["kind"] != kind:
        raise UpdateRejected(f"envelope kind {doc['kind']!r}, expected {kind!r}")
    codec = doc["codec"]
    if type(codec) is not str or codec not in codecs:
        raise UpdateRejected(f"unsupported codec {codec!r}")
    tensors = doc["tensors"]
    if type(tensors) is not list or len(tensors) != len(spec):
        raise UpdateRejected(f"envelope must list exactly {len(spec)} tensors")
    writers = [_entry(entry, name, shape, size, codec)
               for entry, (name, shape), size in zip(tensors, spec, spec.sizes, strict=True)]
    try:
        canonical = cbor2.dumps(doc, canonical=True)
    except Exception:
        canonical = b""
    if canonical != bytes(data):
        raise UpdateRejected("envelope is not in canonical CBOR form")
    return writers


def _entry(entry: object, name: str, shape: tuple[int, ...], size: int, codec: str) -> Writer:
    if type(entry) is not list or len(entry) != _ENTRY_LEN[codec]:
        raise UpdateRejected(f"{name}: malformed {codec} entry")
    if entry[0] != name or type(entry[0]) is not str:
        raise UpdateRejected(f"tensor {entry[0]!r} found where the spec has {name!r}")
    declared = entry[1]
    if type(declared) is not list or not all(_is_int(d) for d in declared) or tuple(declared) != shape:
        raise UpdateRejected(f"{name}: shape {declared!r} != {list(shape)}")
    if entry[2] != _DTYPE[codec]:
        raise UpdateRejected(f"{name}: dtype {entry[2]!r} is not {_DTYPE[codec]!r} for codec {codec}")
    if codec == "f32":
        values = np.frombuffer(_check_bytes(name, "data", entry[3], 4 * size), dtype="<f4")
        return _copy_into(values)
    if codec == "f16":
        halves = np.frombuffer(_check_bytes(name, "data", entry[3], 2 * size), dtype="<f2")
        return lambda out: _half_into(halves, out)  # inf/NaN are caught on the widened values
    scale = _check_scale(name, entry[3])
    if codec == "int8":
        q = _check_q(name, _check_bytes(name, "data", entry[4], size))
        return _scaled_into(q, scale)
    raw_idx = _check_bytes(name, "indices", entry[4], None)
    if len(raw_idx) % 4 or len(raw_idx) // 4 > size:
        raise UpdateRejected(f"{name}: indices must be at most {size} uint32 values")
    idx = np.frombuffer(raw_idx, dtype="<u4")
    q = _check_q(name, _check_bytes(name, "values", entry[5], idx.size))
    if idx.size and (int(idx[-1]) >= size or (idx.size > 1 and not bool((idx[1:] > idx[:-1]).all()))):
        raise UpdateRejected(f"{name}: indices must be strictly increasing and below {size}")
    return _scatter_into(idx, q, scale)


def _copy_into(values: np.ndarray) -> Writer:
    def write(out: np.ndarray) -> None:
        out[...] = values

    return write


def _scaled_into(q: np.ndarray, scale: np.float32) -> Writer:
    def write(out: np.ndarray) -> None:
        np.multiply(q, scale, out=out, dtype=np.float32)

    return write


def _scatter_into(idx: np.ndarray, q: np.ndarray, scale: np.float32) -> Writer:
    def write(out: np.ndarray) -> None:
        out[...] = 0
        out[idx] = q.astype(np.float32) * scale

    return write


def decode_update_flat(
    data: bytes, spec: ParamSpec, *, max_bytes: int, out: np.ndarray | None = None
) -> np.ndarray:
    """Validate an update envelope and write its dense float32 values, in spec order, into one
    vector (``out``, e.g. a row of a stacked matrix, or a new array)."""
    writers = _parse(data, spec, kind="update", max_bytes=max_bytes, codecs=CODECS)
    total = spec.num_params
    if out is None:
        out = np.empty(total, dtype=np.float32)
    elif out.shape != (total,) or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a contiguous float32 vector of {total} values")
    off = spec.offsets
    for i, write in enumerate(writers):
        write(out[off[i] : off[i + 1]])
    if total and not _all_finite(out):
        raise UpdateRejected("update holds a non-finite value")
    return out


def decode_update(data: bytes, spec: ParamSpec, *, max_bytes: int) -> Params:
    """Validate an update envelope against ``spec`` and return the dense float32 delta."""
    vec = decode_update_flat(data, spec, max_bytes=max_bytes)
    off = spec.offsets
    return {name: vec[off[i] : off[i + 1]].reshape(shape) for i, (name, shape) in enumerate(spec)}


def decode_params(data: bytes, spec: ParamSpec, *, max_bytes: int | None = None) -> Params:
    """Validate a model envelope (kind "model", f32) against ``spec`` and return its parameters."""
    limit = max_envelope_bytes(spec, "f32") if max_bytes is None else max_bytes
    writers = _parse(data, spec, kind="model", max_bytes=limit, codecs=("f32",))
    off = spec.offsets
    vec = np.empty(spec.num_params, dtype=np.float32)
    for i, write in enumerate(writers):
        write(vec[off[i] : off[i + 1]])
    if vec.size and not _all_finite(vec):
        raise UpdateRejected("model holds a non-finite value")
    return {name: vec[off[i] : off[i + 1]].reshape(shape) for i, (name, shape) in enumerate(spec)}
