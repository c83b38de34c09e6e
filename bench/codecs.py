"""Update codecs on the W1 models: size, speed, and accuracy after W1 federated rounds.

Part 1, per model: a realistic delta (W1 client 0, one local epoch from the initial model) encoded
with each codec — bytes per update and the ratio to float32, encode/decode MB/s (MB of float32
parameters per second; decode includes full validation), relative L2 error. A JSON-of-floats row
shows what a text encoding would cost.
Part 2, per model and codec: W1 FedAvg (10 IID clients, SGD lr 0.05, batch 32, 1 local epoch,
client seed = round*100 + client, rounds numbered from 1) with every update going through the
codec (top-k with per-client error feedback); final test accuracy and its change against f32.

    python bench/codecs.py [--models mlp,cnn] [--rounds 20] [--codecs f32,f16,int8,topk:0.01,topk:0.1]

A codec label is ``NAME`` or ``topk:FRACTION`` (the share of each tensor's coordinates kept).
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np
import torch

from trustmesh.fl.aggregate import fedavg
from trustmesh.fl.codecs import (
    CODECS,
    ErrorFeedback,
    decode_update_flat,
    encode_update,
    max_envelope_bytes,
)
from trustmesh.fl.data import load_w1
from trustmesh.fl.models import build_model
from trustmesh.fl.params import (
    Params,
    apply_delta,
    delta,
    flatten,
    get_params,
    set_params,
    spec_of,
    unflatten,
)
from trustmesh.fl.partition import partition_indices
from trustmesh.fl.train import evaluate, train_local

LR, BATCH, CLIENTS = 0.05, 32, 10


def client_data(scheme: str) -> list[tuple[np.ndarray, np.ndarray]]:
    data = load_w1()
    labels = np.empty(5000, dtype=np.int64)
    labels[data.train_indices] = data.y_train
    row_of = np.empty(5000, dtype=np.int64)
    row_of[data.train_indices] = np.arange(len(data.train_indices))
    parts = partition_indices(labels, data.train_indices, scheme, CLIENTS)
    return [(data.x_train[row_of[p]].copy(), data.y_train[row_of[p]].copy()) for p in parts]


def best_seconds(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def parse_label(label: str) -> tuple[str, float]:
    """``"topk:0.1"`` -> ("topk", 0.1); other names keep the default fraction (unused by them)."""
    codec, _, fraction = label.partition(":")
    if codec not in CODECS:
        raise SystemExit(f"unknown codec {codec!r}")
    return codec, float(fraction) if fraction else 0.01


def size_and_speed(name: str, clients: list, labels: list[str], repeats: int) -> dict:
    base = get_params(build_model(name))
    model = build_model(name)
    x0, y0 = clients[0]
    train_local(model, x0, y0, lr=LR, batch_size=BATCH, epochs=1, seed=100)
    update = delta(get_params(model), base)
    spec = spec_of(update)
    raw_mb = 4 * spec.num_params / 1e6
    truth = flatten(update)
    rows: dict[str, dict] = {}
    f32_bytes = len(encode_update(update, "f32"))
    for label in labels:
        codec, fraction = parse_label(label)
        blob = encode_update(update, codec, topk_fraction=fraction)
        limit = max_envelope_bytes(spec, codec)
        enc = best_seconds(lambda c=codec, f=fraction: encode_update(update, c, topk_fraction=f), repeats)
        out = np.empty(spec.num_params, np.float32)
        dec = best_seconds(lambda b=blob, lim=limit, o=out: decode_update_flat(b, spec, max_bytes=lim, out=o), repeats)
        rows[label] = {
            "bytes": len(blob),
            "ratio_to_f32": round(len(blob) / f32_bytes, 4),
            "encode_MBps": round(raw_mb / enc, 1),
            "decode_MBps": round(raw_mb / dec, 1),
            "rel_l2_error": float(f"{np.linalg.norm(out - truth) / np.linalg.norm(truth):.3g}"),
        }
    started = time.perf_counter()
    text = json.dumps({k: v.tolist() for k, v in update.items()}).encode()
    rows["json (reference)"] = {"bytes": len(text), "ratio_to_f32": round(len(text) / f32_bytes, 4),
                                "encode_MBps": round(raw_mb / (time.perf_counter() - started), 1)}
    return {"params": spec.num_params, "codecs": rows}


def simulate(name: str, label: str, clients: list, rounds: int) -> dict:
    codec, fraction = parse_label(label)
    data = load_w1()
    model = build_model(name)
    base: Params = get_params(model)
    spec = spec_of(base)
    limit = max_envelope_bytes(spec, codec)
    feedback = [ErrorFeedback() for _ in clients]
    matrix = np.empty((len(clients), spec.num_params), dtype=np.float32)
    curve, sent, round_seconds = [], [], []
    for rnd in range(1, rounds + 1):
        t = time.perf_counter()
        samples = []
        for k, (x, y) in enumerate(clients):
            set_params(model, base)
            result = train_local(model, x, y, lr=LR, batch_size=BATCH, epochs=1, seed=rnd * 100 + k)
            blob = encode_update(delta(get_params(model), base), codec, topk_fraction=fraction,
                                 residual=feedback[k])
            sent.append(len(blob))
            decode_update_flat(blob, spec, max_bytes=limit, out=matrix[k])
            samples.append(result.num_samples)
        base = apply_delta(base, unflatten(fedavg(matrix, samples), spec))
        set_params(model, base)
        _, acc = evaluate(model, data.x_test, data.y_test)
        curve.append(acc)
        round_seconds.append(time.perf_counter() - t)
        print(f"  {name:<4} {label:<10} round {rnd:>2}  test acc {acc:.4f}  {round_seconds[-1]:5.1f} s", flush=True)
    return {"accuracy": curve, "final_accuracy": curve[-1] if curve else None,
            "mean_update_bytes": int(np.mean(sent)) if sent else 0, "seconds": round(sum(round_seconds), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--codecs", default="f32,f16,int8,topk:0.01,topk:0.1")
    parser.add_argument("--rounds", type=int, default=20, help="W1 rounds per codec (0 skips part 2)")
    parser.add_argument("--partition", default="iid", choices=["iid", "dirichlet", "shards"])
    parser.add_argument("--repeats", type=int, default=10, help="timing repeats (best is kept)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    models = [m for m in args.models.split(",") if m]
    codecs = [c for c in args.codecs.split(",") if c]
    clients = client_data(args.partition)
    started = time.perf_counter()
    figures: dict = {"bench": "codecs", "workload": "W1", "partition": args.partition, "rounds": args.rounds,
                     "error_feedback": True, "models": {}}
    for name in models:
        figures["models"][name] = size_and_speed(name, clients, codecs, args.repeats)
    for name in models:
        for label in codecs:
            if args.rounds > 0:
                figures["models"][name]["codecs"][label]["fl"] = simulate(name, label, clients, args.rounds)

    print()
    print(f"{'model':<5} {'codec':<17} {'bytes':>10} {'vs f32':>7} {'enc MB/s':>9} {'dec MB/s':>9} "
          f"{'rel err':>8} {'final acc':>9} {'Δacc':>7}")
    for name in models:
        rows = figures["models"][name]["codecs"]
        ref = rows.get("f32", {}).get("fl", {}).get("final_accuracy")
        for codec, row in rows.items():
            fl = row.get("fl")
            acc = fl["final_accuracy"] if fl else None
            change = (acc - ref) if (acc is not None and ref is not None) else None
            if fl is not None:
                fl["accuracy_change_vs_f32"] = None if change is None else round(change, 4)
            print(f"{name:<5} {codec:<17} {row['bytes']:>10} {row['ratio_to_f32']:>7.3f} "
                  f"{row['encode_MBps']:>9.1f} {row.get('decode_MBps', float('nan')):>9.1f} "
                  f"{row.get('rel_l2_error', float('nan')):>8.2g} "
                  f"{'' if acc is None else f'{acc:.4f}':>9} {'' if change is None else f'{change:+.4f}':>7}")
    figures["wall_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(figures, separators=(",", ":")))


if __name__ == "__main__":
    main()
