"""Byzantine robustness on W1: final test accuracy of each aggregator under each attack.

In-process simulation of W1 (MLP, 10 participants, SGD lr 0.05, batch 32, 1 local epoch, seed
round*100 + client). The first k participants are attackers; each round they replace their delta
with Gaussian noise (norm 10x the median honest delta norm), its sign flip, or 100x its scale.
``honest_fedavg`` (an oracle, not an aggregator) averages only the honest updates: the best any
defence can do once the attackers' data is lost. Prints a table, writes a PNG, ends with one JSON line.

    python bench/byzantine.py                                  # the full grid (slow: ~40 runs a partition)
    python bench/byzantine.py --rounds 5 --attackers 0,2 --aggregators fedavg,median --jobs 2
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ATTACKS = ("gaussian", "sign_flip", "scale")
AGGREGATORS = ("fedavg", "median", "trimmed_mean", "krum", "multi_krum", "cosine_trim", "trend_trim")
ORACLE = "honest_fedavg"  # not an aggregator: FedAvg over the honest updates only (the simulation knows them)
PARTITIONS = ("iid", "dirichlet")
CLIENTS = 10


def agg_params(krum_f: int, trim_beta: float) -> dict[str, dict[str, Any]]:
    """Robust settings: by default sized for up to 3 attackers of 10 (trim 3 each end, f = 3)."""
    return {"trimmed_mean": {"beta": trim_beta}, "krum": {"f": krum_f}, "multi_krum": {"f": krum_f},
            "cosine_trim": {"f": krum_f}, "trend_trim": {"f": krum_f}}


@dataclass(frozen=True)
class Run:
    partition: str
    attack: str  # "none" for the clean run
    attackers: int
    aggregator: str
    rounds: int
    krum_f: int = 3
    trim_beta: float = 0.3


def attack_delta(kind: str, honest: np.ndarray, median_norm: float, rng: np.random.Generator) -> np.ndarray:
    """An attacker's flat delta derived from its honest one."""
    if kind == "sign_flip":
        return -honest
    if kind == "scale":
        return (honest * np.float32(100.0)).astype(np.float32)
    if kind == "gaussian":
        sigma = 10.0 * median_norm / np.sqrt(honest.size)
        return (rng.standard_normal(honest.size) * sigma).astype(np.float32)
    raise ValueError(f"unknown attack {kind!r}")


def simulate(run: Run) -> dict[str, Any]:
    """One federated training of ``run.rounds`` rounds; returns the final accuracy and timings."""
    import torch

    from trustmesh.fl import aggregate as agg
    from trustmesh.fl.data import load_w1
    from trustmesh.fl.models import build_model
    from trustmesh.fl.params import get_params, set_params, spec_of
    from trustmesh.fl.partition import partition_indices
    from trustmesh.fl.strategies import get_strategy
    from trustmesh.fl.train import evaluate, train_local
    from trustmesh.fl.validate import update_norm

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    data = load_w1().flat()
    labels = np.empty(5000, dtype=np.int64)
    labels[data.train_indices] = data.y_train
    parts = partition_indices(labels, data.train_indices, run.partition, CLIENTS)
    pos = {int(v): i for i, v in enumerate(data.train_indices)}
    client_rows = [np.array([pos[int(v)] for v in part], dtype=np.int64) for part in parts]
    model = build_model("mlp", seed=0)
    global_params = get_params(model)
    spec = spec_of(global_params)
    oracle = run.aggregator == ORACLE
    params = agg_params(run.krum_f, run.trim_beta).get(run.aggregator, {})
    strategy = get_strategy("fedavg" if oracle else run.aggregator, **params)
    n_attackers = run.attackers if run.attack != "none" else 0
    rng = np.random.default_rng(12345)
    matrix = np.empty((CLIENTS, sum(a.size for a in global_params.values())), dtype=np.float32)
    base_flat = agg.stack_updates([global_params], spec)[0]
    state = None  # server state (FedAdam moments, reference directions) carried from round to round
    for rnd in range(1, run.rounds + 1):
        counts = []
        for k, rows in enumerate(client_rows):
            set_params(model, global_params)
            result = train_local(model, data.x_train[rows], data.y_train[rows], lr=0.05, momentum=0.0,
                                 batch_size=32, epochs=1, seed=rnd * 100 + k)
            agg.stack_updates([get_params(model)], spec, out=matrix[k : k + 1])
            np.subtract(matrix[k], base_flat, out=matrix[k])
            counts.append(result.num_samples)
        if n_attackers:
            honest_norms = sorted(update_norm(matrix[k]) for k in range(n_attackers, CLIENTS))
            median_norm = float(np.median(honest_norms))
            for k in range(n_attackers):
                matrix[k] = attack_delta(run.attack, matrix[k].copy(), median_norm, rng)
        keep = range(n_attackers, CLIENTS) if oracle else range(CLIENTS)
        updates = [agg.unstack(matrix[k], spec) for k in keep]
        out = strategy.aggregate(updates, [counts[k] for k in keep], state=state)
        state = out.state
        global_params = agg.apply_aggregate(global_params, out.delta)
        base_flat = agg.stack_updates([global_params], spec)[0]
    set_params(model, global_params)
    _, acc = evaluate(model, data.x_test, data.y_test)
    finite = all(np.isfinite(a).all() for a in global_params.values())
    return {**asdict(run), "accuracy": float(acc) if finite else 0.0, "seconds": time.perf_counter() - t0}


def plan(args: argparse.Namespace) -> list[Run]:
    runs = []
    for part in args.partitions:
        for agg_name in args.aggregators:
            if 0 in args.attackers or "fedavg" == agg_name:
                runs.append(Run(part, "none", 0, agg_name, args.rounds, args.krum_f, args.trim_beta))
            for attack in args.attacks:
                for k in args.attackers:
                    if k > 0:
                        runs.append(Run(part, attack, k, agg_name, args.rounds, args.krum_f, args.trim_beta))
    # clean FedAvg is the reference of every comparison: always run it
    for part in args.partitions:
        ref = Run(part, "none", 0, "fedavg", args.rounds, args.krum_f, args.trim_beta)
        if ref not in runs:
            runs.insert(0, ref)
    return list(dict.fromkeys(runs))


def plot(results: list[dict[str, Any]], args: argparse.Namespace, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(args.partitions), len(args.attacks), figsize=(4 * len(args.attacks),
                             3.2 * len(args.partitions)), squeeze=False, sharey=True)
    for r, part in enumerate(args.partitions):
        for c, attack in enumerate(args.attacks):
            ax = axes[r][c]
            for agg_name in args.aggregators:
                xs, ys = [], []
                for k in sorted(args.attackers):
                    key = ("none", 0) if k == 0 else (attack, k)
                    hit = [x for x in results if (x["partition"], x["aggregator"]) == (part, agg_name)
                           and (x["attack"], x["attackers"]) == key]
                    if hit:
                        xs.append(k)
                        ys.append(100 * hit[0]["accuracy"])
                ax.plot(xs, ys, marker="o", label=agg_name)
            ax.set_title(f"{part}: {attack}")
            ax.set_xlabel("attackers of 10")
            ax.set_xticks(sorted(args.attackers))
            ax.set_ylim(0, 100)
            ax.grid(alpha=0.3)
            if c == 0:
                ax.set_ylabel("final test accuracy (%)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"W1 MLP, {args.rounds} rounds")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _csv(value: str) -> list[str]:
    return [v for v in value.split(",") if v]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--attackers", type=lambda v: [int(x) for x in _csv(v)], default=[0, 1, 2, 3])
    parser.add_argument("--attacks", type=_csv, default=list(ATTACKS))
    parser.add_argument("--aggregators", type=_csv, default=list(AGGREGATORS))
    parser.add_argument("--partitions", type=_csv, default=list(PARTITIONS))
    parser.add_argument("--krum-f", type=int, default=3, help="f for krum, multi_krum, cosine_trim and trend_trim (3)")
    parser.add_argument("--trim-beta", type=float, default=0.3, help="beta for trimmed_mean (0.3)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (each uses one torch thread)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/byzantine.png"))
    args = parser.parse_args(argv)
    for name in args.attacks:
        if name not in ATTACKS:
            parser.error(f"unknown attack {name}")
    for name in args.aggregators:
        if name != ORACLE and name not in AGGREGATORS and name not in ("perffedavg", "fedadam", "fedyogi"):
            parser.error(f"unknown aggregator {name}")

    runs = plan(args)
    t0 = time.perf_counter()
    results: list[dict[str, Any]] = []

    def done(result: dict[str, Any]) -> None:
        results.append(result)
        print(f"[{len(results)}/{len(runs)}] {result['partition']} {result['attack']} x{result['attackers']} "
              f"{result['aggregator']}: {100 * result['accuracy']:.1f}% ({result['seconds']:.0f}s)",
              file=sys.stderr, flush=True)

    if args.jobs > 1:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
            for future in as_completed([pool.submit(simulate, run) for run in runs]):
                done(future.result())
    else:
        for run in runs:
            done(simulate(run))
    wall = time.perf_counter() - t0

    acc = {(x["partition"], x["attack"], x["attackers"], x["aggregator"]): x["accuracy"] for x in results}
    header = f"{'partition':<10} {'attack':<10} {'k':>2}  " + "  ".join(f"{a:>12}" for a in args.aggregators)
    print(header)
    print("-" * len(header))
    scenarios = sorted({(x["partition"], x["attack"], x["attackers"]) for x in results},
                       key=lambda s: (args.partitions.index(s[0]), s[1] != "none", s[1], s[2]))
    for part, attack, k in scenarios:
        cells = [acc.get((part, attack, k, a)) for a in args.aggregators]
        print(f"{part:<10} {attack:<10} {k:>2}  "
              + "  ".join(f"{100 * c:>11.1f}%" if c is not None else f"{'-':>12}" for c in cells))

    robust = [a for a in args.aggregators if a not in ("fedavg", "perffedavg", "fedadam", "fedyogi", ORACLE)]
    goal: dict[str, Any] = {}
    for part in args.partitions:
        clean = acc[(part, "none", 0, "fedavg")]
        for attack in args.attacks:
            scores = {a: acc[(part, attack, 2, a)] for a in robust if (part, attack, 2, a) in acc}
            if scores:
                best = max(scores, key=lambda a: scores[a])
                goal[f"{part}/{attack}"] = {"best": best, "accuracy": round(scores[best], 4),
                                            "clean_fedavg": round(clean, 4),
                                            "within_3_points": scores[best] >= clean - 0.03}
    png = plot(results, args, args.out)
    print(f"plot: {png}")
    for key, g in goal.items():
        print(f"goal {key}: best {g['best']} {100 * g['accuracy']:.1f}% vs clean FedAvg "
              f"{100 * g['clean_fedavg']:.1f}% -> {'met' if g['within_3_points'] else 'NOT met'}")
    figures = {
        "rounds": args.rounds, "runs": len(results), "wall_seconds": round(wall, 1), "png": str(png),
        "agg_params": agg_params(args.krum_f, args.trim_beta), "goal_2_of_10": goal,
        "goal_met": bool(goal) and all(g["within_3_points"] for g in goal.values()),
        "accuracy": {f"{p}/{a}/{k}/{g}": round(v, 4) for (p, a, k, g), v in sorted(acc.items())},
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
