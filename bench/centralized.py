"""W1 centralized baselines: each W1 model trained on all 4,000 train digits (SGD lr 0.05, batch 32).

Prints test accuracy per epoch for each model, then one JSON line. Epoch e shuffles with
``default_rng(e)``. ``--epochs`` shortens the run (W1 says 20).

    python bench/centralized.py [--models mlp,cnn] [--epochs 20] [--png curves.png]
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from trustmesh.fl.data import load_w1
from trustmesh.fl.models import build_model, count_params
from trustmesh.fl.train import evaluate, train_local

LR, BATCH = 0.05, 32


def run_model(name: str, epochs: int) -> dict:
    data = load_w1()
    model = build_model(name, seed=0)
    curve, losses, seconds = [], [], []
    for epoch in range(epochs):
        result = train_local(model, data.x_train, data.y_train, lr=LR, momentum=0.0, batch_size=BATCH,
                             epochs=1, seed=epoch)
        loss, acc = evaluate(model, data.x_test, data.y_test)
        curve.append(acc)
        losses.append(loss)
        seconds.append(result.seconds)
        print(f"  {name:<4} epoch {epoch + 1:>2}  train loss {result.loss:.4f}  test loss {loss:.4f}  "
              f"test acc {acc:.4f}  {result.seconds:6.2f} s", flush=True)
    return {"params": count_params(model), "accuracy": curve, "test_loss": losses,
            "epoch_seconds": seconds, "final_accuracy": curve[-1] if curve else None,
            "best_accuracy": max(curve) if curve else None, "train_seconds": sum(seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="mlp,cnn", help="comma-separated registry names")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--png", default=None, help="also write the accuracy curves to this PNG")
    args = parser.parse_args()
    torch.set_num_threads(1)
    names = [n for n in args.models.split(",") if n]
    started = time.perf_counter()
    results = {}
    for name in names:
        print(f"{name}: W1 centralized, {args.epochs} epochs, SGD lr {LR}, batch {BATCH}", flush=True)
        results[name] = run_model(name, args.epochs)

    print()
    print("epoch " + "".join(f"{n:>10}" for n in names))
    for e in range(args.epochs):
        print(f"{e + 1:>5} " + "".join(f"{results[n]['accuracy'][e]:>10.4f}" for n in names))
    print("secs  " + "".join(f"{results[n]['train_seconds']:>10.1f}" for n in names))
    if args.png:
        from trustmesh.fl.plots import accuracy_curves

        accuracy_curves({n: r["accuracy"] for n, r in results.items()}, args.png, xlabel="epoch",
                        title="W1 centralized baseline")
    figures = {
        "bench": "centralized",
        "workload": "W1",
        "epochs": args.epochs,
        "lr": LR,
        "batch_size": BATCH,
        "torch_threads": torch.get_num_threads(),
        "wall_seconds": round(time.perf_counter() - started, 2),
        "models": {n: {k: (round(v, 4) if isinstance(v, float) else
                           [round(x, 4) for x in v] if isinstance(v, list) else v)
                       for k, v in r.items()} for n, r in results.items()},
    }
    print(json.dumps(figures, separators=(",", ":")))


if __name__ == "__main__":
    main()
