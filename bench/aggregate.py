"""Canonical aggregation speed against this machine's memory bandwidth, measured in the same run.

The bound is the time of one in-place numpy add ``a += b`` over the same bytes as the stacked
updates (100 x 1M float32 = 400 MB by default). Prints a table, then one JSON line of figures.

    python bench/aggregate.py                      # 100 updates x 1M params, both cores
    python bench/aggregate.py --params 200000 --skip-krum-large --workers 1
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from trustmesh.fl import aggregate as agg
from trustmesh.fl.validate import check_rows


def best_of(fn: Callable[[], Any], repeats: int) -> float:
    """Smallest wall time of ``repeats`` calls (the least disturbed by the other workers)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def fake_spec(num_params: int) -> list[tuple[str, tuple[int, ...]]]:
    """A model-like layout of ``num_params`` values: 512x1024 matrices, a last matrix, a bias."""
    layout: list[tuple[str, tuple[int, ...]]] = []
    left = num_params
    while left >= 512 * 1024:
        layout.append((f"layer{len(layout)}.weight", (512, 1024)))
        left -= 512 * 1024
    if left >= 1024:
        layout.append((f"layer{len(layout)}.weight", (left // 1024, 1024)))
        left -= (left // 1024) * 1024
    if left:
        layout.append((f"layer{len(layout)}.bias", (left,)))
    return layout


def inplace_add_bound(matrix: np.ndarray, repeats: int) -> float:
    """The bound: one in-place numpy add ``a += b`` over a copy of the stacked update bytes."""
    scratch = matrix.copy()
    return best_of(lambda: np.add(scratch, matrix, out=scratch), repeats)


def stack_time(matrix: np.ndarray, spec: list[tuple[str, tuple[int, ...]]], repeats: int) -> float:
    """Time of gathering named updates (views of ``matrix`` rows) into one preallocated matrix."""
    off = np.cumsum([0] + [int(np.prod(shape)) for _, shape in spec])
    dicts = [{name: row[off[j]:off[j + 1]].reshape(shape) for j, (name, shape) in enumerate(spec)}
             for row in matrix]
    out = np.empty_like(matrix)
    return best_of(lambda: agg.stack_updates(dicts, spec, out=out), repeats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=100, help="updates in the large case (100)")
    parser.add_argument("--small", type=int, default=10, help="updates in the small case (10)")
    parser.add_argument("--params", type=int, default=1_000_000, help="float32 values per update (1M)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the fast measurements (3)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="threads for the canonical kernels (default: up to 2); 1 is also measured")
    parser.add_argument("--skip-krum-large", action="store_true", help="skip Krum at --updates (slowest)")
    parser.add_argument("--canonical-krum-large", action="store_true",
                        help="also time Krum from canonical distances only at --updates (slow)")
    parser.add_argument("--skip-codec", action="store_true", help="skip decode + validate + aggregate")
    args = parser.parse_args(argv)

    n, p, w = args.updates, args.params, args.workers
    rng = np.random.default_rng(0)
    matrix = (rng.standard_normal((n, p), dtype=np.float32) * 0.01).astype(np.float32)
    counts = rng.integers(50, 500, size=n).tolist()
    mbytes = matrix.nbytes / 1e6
    rows: list[tuple[str, float, str]] = []
    figures: dict[str, Any] = {"updates": n, "params": p, "workers": w, "update_mb": round(mbytes, 1),
                               "arithmetic": agg.CANONICAL_ARITHMETIC}

    # the memory-bandwidth bound: one in-place add over the same bytes
    bound = inplace_add_bound(matrix, args.repeats)
    acc = np.zeros(p, dtype=np.float32)

    def stream() -> None:
        for row in matrix:
            np.add(acc, row, out=acc)

    stream_bound = best_of(stream, args.repeats)
    rows.append((f"bound: a += b over {mbytes:.0f} MB (a, b both {n}x{p})", bound, "1.00x"))
    rows.append((f"stream: acc += each of {n} rows (float32)", stream_bound, f"{stream_bound / bound:.2f}x"))

    t_fed = best_of(lambda: agg.fedavg(matrix, counts, workers=w), args.repeats)
    t_fed1 = t_fed if w == 1 else best_of(lambda: agg.fedavg(matrix, counts, workers=1), args.repeats)
    rows.append((f"fedavg canonical, {n} updates, {w} thread(s)", t_fed, f"{t_fed / bound:.2f}x"))
    if w != 1:
        rows.append((f"fedavg canonical, {n} updates, 1 thread", t_fed1, f"{t_fed1 / bound:.2f}x"))
    figures.update(
        bound_seconds=round(bound, 4), stream_bound_seconds=round(stream_bound, 4),
        fedavg_seconds=round(t_fed, 4), fedavg_ratio_to_bound=round(t_fed / bound, 3),
        fedavg_1thread_seconds=round(t_fed1, 4), fedavg_1thread_ratio_to_bound=round(t_fed1 / bound, 3),
        fedavg_ratio_to_stream_bound=round(t_fed / stream_bound, 3),
    )

    # gathering: named tensors -> one matrix (the step that dominates when done naively)
    spec = fake_spec(p)
    off = np.cumsum([0] + [int(np.prod(s)) for _, s in spec])
    t_stack = stack_time(matrix, spec, args.repeats)
    rows.append((f"stack_updates: {n} named updates ({len(spec)} tensors) into one matrix", t_stack,
                 f"{t_stack / bound:.2f}x"))
    figures["stack_seconds"] = round(t_stack, 4)

    for count in (args.small, n):
        sub = matrix[:count]
        t_med = best_of(lambda sub=sub: agg.coordinate_median(sub, workers=w), 1)
        rows.append((f"median, {count} updates", t_med, f"{t_med / bound:.2f}x"))
        figures[f"median_{count}_seconds"] = round(t_med, 4)
        t_tm = best_of(lambda sub=sub: agg.trimmed_mean(sub, beta=0.2, workers=w), 1)
        rows.append((f"trimmed mean (beta 0.2), {count} updates", t_tm, f"{t_tm / bound:.2f}x"))
        figures[f"trimmed_mean_{count}_seconds"] = round(t_tm, 4)
        if count == n and args.skip_krum_large and count != args.small:
            continue
        f = max(1, count // 10)
        t_krum = best_of(lambda sub=sub, f=f: agg.krum(sub, f=f, workers=w), 1)
        rows.append((f"krum (certified selection), {count} updates", t_krum, f"{t_krum / bound:.2f}x"))
        figures[f"krum_{count}_seconds"] = round(t_krum, 4)
        if count == args.small or args.canonical_krum_large:
            t_can = best_of(lambda sub=sub, f=f: agg.krum_select(sub, f=f, workers=w, certify=False), 1)
            rows.append((f"krum (canonical distances only), {count} updates", t_can, f"{t_can / bound:.2f}x"))
            figures[f"krum_canonical_{count}_seconds"] = round(t_can, 4)

    if not args.skip_codec:
        try:
            from trustmesh.fl.codecs import decode_update_flat, encode_update, max_envelope_bytes
            from trustmesh.fl.params import ParamSpec
        except ImportError:
            print("codecs not available: skipping decode + validate + aggregate", file=sys.stderr)
        else:
            pspec = ParamSpec.of(spec)
            blobs = [encode_update({name: matrix[i, off[j]:off[j + 1]].reshape(shape)
                                    for j, (name, shape) in enumerate(spec)}) for i in range(n)]
            limit = max_envelope_bytes(pspec, "f32")
            stacked = np.empty((n, p), dtype=np.float32)

            def decode_only() -> None:
                for i, blob in enumerate(blobs):
                    decode_update_flat(blob, pspec, max_bytes=limit, out=stacked[i])

            def pipeline() -> np.ndarray:
                for i, blob in enumerate(blobs):
                    decode_update_flat(blob, pspec, max_bytes=limit, out=stacked[i])
                if any(v is not None for v in check_rows(stacked, norm_bound=1e6)):
                    raise SystemExit("a benchmark update failed validation")
                return agg.fedavg(stacked, counts, workers=w)

            t_dec = best_of(decode_only, args.repeats)
            t_val = best_of(lambda: check_rows(stacked, norm_bound=1e6), args.repeats)
            t_pipe = best_of(pipeline, args.repeats)
            if pipeline().tobytes() != agg.fedavg(matrix, counts).tobytes():
                raise SystemExit("decoded aggregate differs from the direct one")
            rows.append((f"decode {n} f32 envelopes into the matrix", t_dec, f"{t_dec / bound:.2f}x"))
            rows.append((f"validate {n} rows (finite + canonical norm)", t_val, f"{t_val / bound:.2f}x"))
            rows.append(("decode + validate + fedavg", t_pipe, f"{t_pipe / bound:.2f}x"))
            figures.update(decode_seconds=round(t_dec, 4), validate_seconds=round(t_val, 4),
                           decode_validate_fedavg_seconds=round(t_pipe, 4),
                           decode_validate_fedavg_ratio_to_bound=round(t_pipe / bound, 3))

    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':<{width}}  {'seconds':>9}  {'vs bound':>8}")
    for label, secs, ratio in rows:
        print(f"{label:<{width}}  {secs:>9.4f}  {ratio:>8}")
    print(json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
