"""Codec envelope: round trips within each codec's bound, and rejection of every malformed input."""
from __future__ import annotations

import hashlib

import cbor2
import numpy as np
import pytest

from trustmesh.errors import UpdateRejected
from trustmesh.fl.codecs import (
    CODECS,
    ErrorFeedback,
    decode_params,
    decode_update,
    decode_update_flat,
    encode_params,
    encode_update,
    max_envelope_bytes,
    model_hash,
    update_hash,
)
from trustmesh.fl.params import ParamSpec, flatten

SPEC = ParamSpec.of([("fc1.weight", (20, 30)), ("fc1.bias", (20,)), ("fc2.weight", (4, 20)), ("fc2.bias", (4,))])


def make_delta(seed: int = 0, scale: float = 0.01) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: (rng.standard_normal(shape) * scale).astype(np.float32) for name, shape in SPEC}


def limit(codec: str = "f32") -> int:
    return max_envelope_bytes(SPEC, codec)


def rebuild(data: bytes, mutate) -> bytes:
    """Decode, change the document, re-encode canonically (a well-formed but wrong envelope)."""
    doc = cbor2.loads(data)
    mutate(doc)
    return cbor2.dumps(doc, canonical=True)


# ------------------------------------------------------------------ round trips


def test_f32_round_trip_is_exact_and_hash_is_sha512_of_bytes():
    delta = make_delta()
    data = encode_update(delta, "f32")
    out = decode_update(data, SPEC, max_bytes=limit())
    assert list(out) == list(SPEC.names)
    for name in delta:
        assert out[name].dtype == np.float32 and out[name].shape == delta[name].shape
        np.testing.assert_array_equal(out[name], delta[name])
    assert update_hash(data) == hashlib.sha512(data).hexdigest()
    assert encode_update(delta, "f32") == data  # deterministic bytes, deterministic hash


def test_payload_is_raw_little_endian_bytes():
    delta = make_delta()
    doc = cbor2.loads(encode_update(delta, "f32"))
    assert doc["v"] == 1 and doc["kind"] == "update" and doc["codec"] == "f32"
    name, shape, dtype, raw = doc["tensors"][0]
    assert (name, shape, dtype) == ("fc1.weight", [20, 30], "<f4")
    assert raw == delta["fc1.weight"].astype("<f4").tobytes()


def test_f16_within_relative_bound():
    delta = make_delta(scale=3.0)
    out = decode_update(encode_update(delta, "f16"), SPEC, max_bytes=limit("f16"))
    for name in delta:
        bound = np.abs(delta[name]) * 2.0**-11 + 2.0**-25
        assert np.all(np.abs(out[name] - delta[name]) <= bound)


def test_int8_within_half_a_step():
    delta = make_delta()
    out = decode_update(encode_update(delta, "int8"), SPEC, max_bytes=limit("int8"))
    for name in delta:
        step = np.abs(delta[name]).max() / 127
        assert np.abs(out[name] - delta[name]).max() <= step / 2 * (1 + 1e-5)


def test_int8_all_zero_tensor():
    delta = {name: np.zeros(shape, np.float32) for name, shape in SPEC}
    out = decode_update(encode_update(delta, "int8"), SPEC, max_bytes=limit("int8"))
    assert all(not v.any() for v in out.values())


def test_topk_keeps_the_largest_and_bounds_the_rest():
    delta = make_delta()
    fraction = 0.1
    out = decode_update(encode_update(delta, "topk", topk_fraction=fraction), SPEC, max_bytes=limit("topk"))
    for name in delta:
        x, y = delta[name].ravel(), out[name].ravel()
        k = max(1, int(np.ceil(fraction * x.size)))
        kept = np.flatnonzero(y)
        assert len(kept) <= k
        threshold = np.sort(np.abs(x))[-k]
        step = np.abs(x).max() / 127
        # kept: within half an int8 step; dropped: no larger than the k-th magnitude
        assert np.all(np.abs(x[kept] - y[kept]) <= step / 2 * (1 + 1e-5))
        dropped = np.setdiff1d(np.arange(x.size), kept)
        assert np.all(np.abs(x[dropped]) <= threshold + step / 2)


def test_topk_is_much_smaller_than_f32():
    delta = make_delta()
    assert len(encode_update(delta, "topk", topk_fraction=0.01)) * 10 < len(encode_update(delta, "f32"))


def test_error_feedback_keeps_what_topk_dropped():
    ef = ErrorFeedback()
    delta = make_delta()
    sent = decode_update(encode_update(delta, "topk", topk_fraction=0.05, residual=ef), SPEC, max_bytes=limit("topk"))
    for name in delta:  # what was sent plus what is pending equals the full delta
        np.testing.assert_allclose(sent[name] + ef.residual[name], delta[name], atol=1e-7)
    assert ef.norm() > 0
    # next round: the residual is added to the new delta before selection
    zero = {name: np.zeros(shape, np.float32) for name, shape in SPEC}
    resent = decode_update(encode_update(zero, "topk", topk_fraction=1.0, residual=ef), SPEC, max_bytes=limit("topk"))
    total = {n: sent[n] + resent[n] for n in delta}
    for name in delta:
        step = np.abs(delta[name]).max() / 127
        assert np.abs(total[name] - delta[name]).max() <= step  # two half-steps at most


def test_error_feedback_with_f32_leaves_no_residual():
    ef = ErrorFeedback()
    encode_update(make_delta(), "f32", residual=ef)
    assert ef.norm() == 0.0


def test_decode_flat_into_a_matrix_row():
    delta = make_delta()
    rows = np.zeros((2, SPEC.num_params), np.float32)
    decode_update_flat(encode_update(delta), SPEC, max_bytes=limit(), out=rows[1])
    np.testing.assert_array_equal(rows[1], flatten(delta))
    assert not rows[0].any()


def test_model_envelope_round_trip_and_kinds_are_not_interchangeable():
    params = make_delta(scale=1.0)
    blob = encode_params(params)
    out = decode_params(blob, SPEC)
    for name in params:
        np.testing.assert_array_equal(out[name], params[name])
    assert model_hash(blob) == hashlib.sha512(blob).hexdigest()
    with pytest.raises(UpdateRejected, match="kind"):
        decode_update(blob, SPEC, max_bytes=limit())
    with pytest.raises(UpdateRejected, match="kind"):
        decode_params(encode_update(params), SPEC)


# ------------------------------------------------------------------ rejections


@pytest.mark.parametrize("codec", CODECS)
def test_truncated_is_rejected(codec):
    data = encode_update(make_delta(), codec, topk_fraction=0.2)
    for cut in (1, 7, len(data) // 2, len(data) - 1):
        with pytest.raises(UpdateRejected):
            decode_update(data[:cut], SPEC, max_bytes=limit(codec))


@pytest.mark.parametrize("codec", CODECS)
def test_oversize_is_rejected_before_parsing(codec):
    data = encode_update(make_delta(), codec)
    with pytest.raises(UpdateRejected, match="exceeds"):
        decode_update(data, SPEC, max_bytes=len(data) - 1)
    with pytest.raises(UpdateRejected):
        decode_update(data + b"\x00", SPEC, max_bytes=limit(codec))  # trailing bytes


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_is_rejected(bad):
    delta = make_delta()
    raw = delta["fc1.bias"].copy()
    raw[3] = bad
    doc_f32 = lambda d: d["tensors"][1].__setitem__(3, raw.astype("<f4").tobytes())  # noqa: E731
    data = rebuild(encode_update(delta, "f32"), doc_f32)
    with pytest.raises(UpdateRejected, match="non-finite"):
        decode_update(data, SPEC, max_bytes=limit())
    doc_f16 = lambda d: d["tensors"][1].__setitem__(3, raw.astype("<f2").tobytes())  # noqa: E731
    with pytest.raises(UpdateRejected, match="non-finite"):
        decode_update(rebuild(encode_update(delta, "f16"), doc_f16), SPEC, max_bytes=limit("f16"))
    with pytest.raises(UpdateRejected, match="non-finite"):
        encode_update({**delta, "fc1.bias": raw}, "f32")


@pytest.mark.parametrize("bad_scale", [float("nan"), float("inf"), -1.0, 1e300, 0.1])
def test_bad_int8_scale_is_rejected(bad_scale):
    data = rebuild(encode_update(make_delta(), "int8"), lambda d: d["tensors"][0].__setitem__(3, bad_scale))
    with pytest.raises(UpdateRejected, match="scale"):
        decode_update(data, SPEC, max_bytes=limit("int8"))


def test_wrong_shape_name_order_dtype_are_rejected():
    data = encode_update(make_delta())
    cases = {
        "shape": lambda d: d["tensors"][0].__setitem__(1, [30, 20]),
        "found where": lambda d: d["tensors"][0].__setitem__(0, "fc9.weight"),
        "dtype": lambda d: d["tensors"][0].__setitem__(2, ">f4"),
        "exactly": lambda d: d["tensors"].pop(),
    }
    for reason, mutate in cases.items():
        with pytest.raises(UpdateRejected, match=reason):
            decode_update(rebuild(data, mutate), SPEC, max_bytes=limit())
    swapped = rebuild(data, lambda d: d["tensors"].reverse())
    with pytest.raises(UpdateRejected, match="found where"):
        decode_update(swapped, SPEC, max_bytes=limit())
    # a payload whose length does not match the spec's shape (the declared shape is never trusted)
    short = rebuild(data, lambda d: d["tensors"][1].__setitem__(3, d["tensors"][1][3][:-4]))
    with pytest.raises(UpdateRejected, match="bytes, expected"):
        decode_update(short, SPEC, max_bytes=limit())


def test_unknown_version_codec_and_extra_fields_are_rejected():
    data = encode_update(make_delta())
    for reason, mutate in {
        "version": lambda d: d.__setitem__("v", 2),
        "codec": lambda d: d.__setitem__("codec", "bf16"),
        "keys": lambda d: d.__setitem__("extra", 1),
    }.items():
        with pytest.raises(UpdateRejected, match=reason):
            decode_update(rebuild(data, mutate), SPEC, max_bytes=limit())
    with pytest.raises(UpdateRejected, match="version"):
        decode_update(rebuild(data, lambda d: d.__setitem__("v", True)), SPEC, max_bytes=limit())
    with pytest.raises(UpdateRejected, match="unknown codec"):
        encode_update(make_delta(), "zip")


def test_topk_bad_indices_are_rejected():
    data = encode_update(make_delta(), "topk", topk_fraction=0.1)

    def set_idx(values):
        return lambda d: d["tensors"][0].__setitem__(4, np.array(values, "<u4").tobytes())

    k = len(cbor2.loads(data)["tensors"][0][5])
    base = list(range(k))
    for values, reason in [
        ([*base[:-1], 600], "below"),  # out of range (size 600)
        ([base[1], base[0], *base[2:]], "increasing"),  # unsorted
        ([0, *base[:-1]], "increasing"),  # duplicate
        (base[:-1], "values has"),  # count mismatch with values
    ]:
        with pytest.raises(UpdateRejected, match=reason):
            decode_update(rebuild(data, set_idx(values)), SPEC, max_bytes=limit("topk"))
    minus128 = rebuild(data, lambda d: d["tensors"][0].__setitem__(5, b"\x80" * k))
    with pytest.raises(UpdateRejected, match="-128"):
        decode_update(minus128, SPEC, max_bytes=limit("topk"))


def test_non_canonical_and_garbage_are_rejected():
    doc = cbor2.loads(encode_update(make_delta()))
    loose = cbor2.dumps(dict(reversed(doc.items())))  # same content, keys not in canonical order
    assert loose != cbor2.dumps(doc, canonical=True)
    with pytest.raises(UpdateRejected, match="canonical"):
        decode_update(loose, SPEC, max_bytes=limit())
    wide = cbor2.loads(encode_update(make_delta(), "int8"))
    wide_bytes = cbor2.dumps(wide, canonical=False)  # scale as an 8-byte float instead of the shortest
    assert wide_bytes != cbor2.dumps(wide, canonical=True)
    with pytest.raises(UpdateRejected, match="canonical"):
        decode_update(wide_bytes, SPEC, max_bytes=limit("int8"))
    for junk in (b"", b"\xff\xff", b"\x81" * 50_000, cbor2.dumps([1, 2]), cbor2.dumps({"v": 1})):
        with pytest.raises(UpdateRejected):
            decode_update(junk, SPEC, max_bytes=limit())
    with pytest.raises(UpdateRejected):
        decode_update("text", SPEC, max_bytes=limit())  # type: ignore[arg-type]


def test_f16_refuses_values_it_cannot_hold():
    delta = make_delta()
    delta["fc2.bias"] = delta["fc2.bias"] + 1e6
    with pytest.raises(UpdateRejected, match="float16"):
        encode_update(delta, "f16")


# ------------------------------------------------------------------ property: any layout, any codec

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(
    shapes=st.lists(st.lists(st.integers(1, 6), min_size=0, max_size=3), min_size=1, max_size=4),
    codec=st.sampled_from(CODECS),
    fraction=st.floats(0.01, 1.0),
    seed=st.integers(0, 2**16),
    magnitude=st.sampled_from([1e-6, 1e-2, 1.0, 1e3]),
)
def test_round_trip_any_layout(shapes, codec, fraction, seed, magnitude):
    rng = np.random.default_rng(seed)
    spec = ParamSpec.of([(f"t{i}.w", tuple(s)) for i, s in enumerate(shapes)])
    update = {name: np.asarray(rng.standard_normal(shape) * magnitude, dtype=np.float32) for name, shape in spec}
    data = encode_update(update, codec, topk_fraction=fraction)
    out = decode_update(data, spec, max_bytes=max_envelope_bytes(spec, codec))
    assert list(out) == list(spec.names)
    for name, x in update.items():
        y = out[name]
        assert y.shape == x.shape and y.dtype == np.float32
        peak = float(np.abs(x).max())
        err = float(np.abs(y - x).max())
        if codec == "f32":
            assert err == 0.0
        elif codec == "f16":
            assert err <= peak * 2.0**-11 + 2.0**-24
        elif codec == "int8":
            assert err <= peak / 127 / 2 * (1 + 1e-5)
        else:
            assert err <= peak * (1 + 1e-5)  # a dropped coordinate is never larger than the kept ones
    assert decode_update(data, spec, max_bytes=len(data)) is not None  # the bound is the exact size


def test_f16_is_the_same_with_and_without_torch(monkeypatch):
    import trustmesh.fl.codecs as codecs

    delta = make_delta(scale=1.0)
    delta["fc1.bias"][:3] = [1e-7, -3e-6, 6.5e4]  # subnormal, small, near the top of the range
    with_torch = codecs.encode_update(delta, "f16")
    monkeypatch.setattr(codecs, "_torch", lambda: None)
    assert codecs.encode_update(delta, "f16") == with_torch
    out = codecs.decode_update(with_torch, SPEC, max_bytes=limit("f16"))
    np.testing.assert_array_equal(out["fc1.bias"][:3], np.array([1e-7, -3e-6, 6.5e4], np.float16).astype(np.float32))
