"""Differential privacy on W1: MLP test accuracy after the rounds against the privacy budget epsilon.

Mechanisms (W1 FedAvg in one process, every participant every round, IID parts of W1's 4,000 train digits):
  client10   client-level distributed DP, 10 participants of 400: each clips its delta to C and adds
             its share of the Gaussian noise (RoundPrivatizer with DistributedNoise, as participants do)
  client100  the same with 100 participants of 40
  dpsgd10    sample-level DP-SGD (Opacus, make_private_trainer) on each of 10 participants
Each budget becomes the noise multiplier z whose epsilon after the rounds equals it (delta 1e-5):
q = 1 and one step a round for client-level DP; q = B/N and epochs * ceil(N/B) steps a round for
DP-SGD, both in accountant.epsilon_after (dp-accounting RDP); Opacus' own RDP accountant is shown
for DP-SGD as a cross-check. The privacy unit differs: one participant (client-level) versus one
example of one participant (DP-SGD). Prints a table, writes a PNG, ends with one JSON line.

    python bench/dp.py                                           # 20 rounds, budgets 2,8,32, all three
    python bench/dp.py --rounds 5 --budgets 8 --mechanisms client10 --jobs 2
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import brentq

from trustmesh.privacy.accountant import dpsgd_round_steps, epsilon_after

MECHANISMS: dict[str, tuple[str, int]] = {"client10": ("client", 10), "client100": ("client", 100),
                                          "dpsgd10": ("dpsgd", 10)}
DEFAULT_CLIP = {"client10": 0.15, "client100": 0.05, "dpsgd10": 1.0}  # client: delta L2; dpsgd: per-example grad
BASELINE = "fedavg"  # plain W1 FedAvg, no clipping, no noise
DELTA = 1e-5
W1_TRAIN, BATCH, EPOCHS = 4000, 32, 1
LABELS = {"client10": "client-level DP, 10 participants", "client100": "client-level DP, 100 participants",
          "dpsgd10": "DP-SGD (per example), 10 participants"}


@dataclass(frozen=True, kw_only=True)
class Run:
    """One training: a mechanism at one budget (epsilon None = the no-DP baseline of its participant count)."""

    mechanism: str
    participants: int
    rounds: int
    epsilon: float | None = None
    noise_multiplier: float = 0.0
    clip: float = 0.0
    seed: int = 0


def accounting(mechanism: str, participants: int, rounds: int) -> tuple[float, int]:
    """(sampling rate, steps) over ``rounds`` for the accountant, as the participants account them."""
    if MECHANISMS[mechanism][0] == "client":
        return 1.0, rounds
    rate, steps = dpsgd_round_steps(W1_TRAIN // participants, batch_size=BATCH, epochs=EPOCHS)
    return rate, rounds * steps  # as the round protocol accounts them (Opacus samples at 1/ceil(N/B) <= B/N)


def noise_for(epsilon: float, *, sampling_rate: float, steps: int) -> float:
    """The z whose epsilon after ``steps`` steps equals ``epsilon`` (epsilon falls as z grows)."""
    def gap(log_z: float) -> float:
        return math.log(epsilon_after(steps, noise_multiplier=math.exp(log_z), sampling_rate=sampling_rate,
                                      delta=DELTA) / epsilon)

    return math.exp(brentq(gap, math.log(0.05), math.log(500.0), xtol=1e-4))


def opacus_epsilon(noise_multiplier: float, participants: int, rounds: int) -> float:
    """Opacus' RDP accountant for the DP-SGD runs (its sampling rate is 1/len(loader))."""
    from opacus.accountants import RDPAccountant

    samples = W1_TRAIN // participants
    batches = math.ceil(samples / BATCH)
    accountant = RDPAccountant()
    accountant.history = [(noise_multiplier, 1.0 / batches, rounds * EPOCHS * batches)]
    return float(accountant.get_epsilon(DELTA))


def _privatized(run: Run) -> Any:
    """The submissions of client-level DP: each participant's own RoundPrivatizer, one draw a round."""
    from trustmesh.privacy.dp import DistributedNoise, RoundPrivatizer

    noise = DistributedNoise(noise_multiplier=run.noise_multiplier, clip=run.clip,
                             expected_nodes=run.participants, min_nodes=run.participants)
    privatizers = [RoundPrivatizer(noise=noise, rng=np.random.default_rng([run.seed, k]))
                   for k in range(run.participants)]
    return lambda rnd, k, update: privatizers[k].privatize(rnd, update).params


def _dpsgd_trainer(run: Run, steps: list[int]) -> Any:
    """W1 local training replaced by one Opacus DP-SGD run a round; appends the steps it took."""
    from w1_sim import LR

    from trustmesh.privacy.dpsgd import make_private_trainer

    def train(model: Any, rnd: int, k: int, x: np.ndarray, y: np.ndarray) -> int:
        model.train()  # Opacus refuses a model left in eval mode by the previous round's evaluation
        result = make_private_trainer(model, x, y, noise_multiplier=run.noise_multiplier, clip=run.clip,
                                      batch_size=BATCH, epochs=EPOCHS, lr=LR, seed=rnd * 100 + k).train()
        steps.append(result.steps)
        return result.num_samples

    return train


def simulate(run: Run) -> dict[str, Any]:
    """Train W1 FedAvg for ``run.rounds`` rounds with the run's mechanism; final accuracy and curve."""
    from w1_sim import participant_data, run_fedavg

    kind = MECHANISMS[run.mechanism][0] if run.epsilon is not None else "none"
    steps: list[int] = []
    options: dict[str, Any] = {}
    if kind == "client":
        options["transform"] = _privatized(run)
    elif kind == "dpsgd":
        options["train"] = _dpsgd_trainer(run, steps)
    result = run_fedavg(participants=participant_data(run.participants), rounds=run.rounds, **options)
    out = {**asdict(run), "accuracy": result.final_accuracy, "curve": [round(a, 4) for a in result.accuracy],
           "seconds": round(result.seconds, 1)}
    if kind != "none":
        rate, planned = accounting(run.mechanism, run.participants, run.rounds)
        taken = sum(steps) // run.participants if steps else planned  # steps per participant
        out["epsilon_spent"] = epsilon_after(taken, noise_multiplier=run.noise_multiplier, sampling_rate=rate,
                                             delta=DELTA)
        out["steps_per_participant"] = taken
        if kind == "dpsgd":
            out["epsilon_opacus"] = opacus_epsilon(run.noise_multiplier, run.participants, run.rounds)
    return out


def plan(args: argparse.Namespace) -> list[Run]:
    """Baselines without DP (one per participant count) first, then every mechanism at every budget."""
    counts = dict.fromkeys(MECHANISMS[m][1] for m in args.mechanisms)
    runs = [Run(mechanism=BASELINE, participants=n, rounds=args.rounds) for n in counts]
    for mechanism in args.mechanisms:
        participants = MECHANISMS[mechanism][1]
        rate, steps = accounting(mechanism, participants, args.rounds)
        for epsilon in args.budgets:
            z = noise_for(epsilon, sampling_rate=rate, steps=steps)
            runs.append(Run(mechanism=mechanism, participants=participants, rounds=args.rounds, epsilon=epsilon,
                            noise_multiplier=z, clip=args.clip[mechanism], seed=args.seed))
    # the slowest first (100 participants, then DP-SGD) so parallel jobs finish together
    return sorted(runs, key=lambda r: (-r.participants, MECHANISMS.get(r.mechanism, ("",))[0] != "dpsgd"))


def plot(results: list[dict[str, Any]], args: argparse.Namespace, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = {"client10": "tab:red", "client100": "tab:blue", "dpsgd10": "tab:green"}
    for mechanism in args.mechanisms:
        points = sorted((r["epsilon"], r["accuracy"]) for r in results
                        if r["mechanism"] == mechanism and r["epsilon"] is not None)
        ax.plot([p[0] for p in points], [100 * p[1] for p in points], marker="o", color=colors[mechanism],
                label=f"{LABELS[mechanism]} (C={args.clip[mechanism]:g})")
    for r in results:
        if r["epsilon"] is None:
            ax.axhline(100 * r["accuracy"], linestyle="--", linewidth=1, color="gray")
            ax.annotate(f"no DP, {r['participants']} participants", (0.01, 100 * r["accuracy"]),
                        xycoords=("axes fraction", "data"), fontsize=8, color="gray", va="bottom")
    ax.set_xscale("log")
    ax.set_xticks(args.budgets, [f"{e:g}" for e in args.budgets])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel(f"epsilon after {args.rounds} rounds (delta {DELTA:g}); unit: participant or example")
    ax.set_ylabel("final test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"W1 MLP FedAvg, {args.rounds} rounds: accuracy against the privacy budget")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _floats(value: str) -> list[float]:
    return [float(v) for v in value.split(",") if v]


def _clips(value: str) -> dict[str, float]:
    clips = dict(DEFAULT_CLIP)
    for item in value.split(","):
        if item:
            name, _, c = item.partition("=")
            if name not in MECHANISMS:
                raise argparse.ArgumentTypeError(f"unknown mechanism {name!r}")
            clips[name] = float(c)
    return clips


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--budgets", type=_floats, default=[2.0, 8.0, 32.0], help="epsilons, comma-separated")
    parser.add_argument("--mechanisms", type=lambda v: [m for m in v.split(",") if m], default=list(MECHANISMS))
    parser.add_argument("--clip", type=_clips, default=dict(DEFAULT_CLIP),
                        help="per mechanism, e.g. client10=0.15,client100=0.05,dpsgd10=1.0")
    parser.add_argument("--seed", type=int, default=0, help="seed of the participants' noise")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (one torch thread each)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-dp.png"))
    args = parser.parse_args(argv)
    for name in args.mechanisms:
        if name not in MECHANISMS:
            parser.error(f"unknown mechanism {name}; known: {', '.join(MECHANISMS)}")
    if args.rounds < 1 or not args.budgets or any(not e > 0 for e in args.budgets):
        parser.error("need --rounds >= 1 and positive budgets")

    started = time.perf_counter()
    runs = plan(args)
    results: list[dict[str, Any]] = []

    def done(result: dict[str, Any]) -> None:
        results.append(result)
        budget = "no DP" if result["epsilon"] is None else f"eps {result['epsilon']:g} z {result['noise_multiplier']:.3f}"
        print(f"[{len(results)}/{len(runs)}] {result['mechanism']} {budget}: {100 * result['accuracy']:.1f}% "
              f"({result['seconds']:.0f}s)", file=sys.stderr, flush=True)

    if args.jobs > 1:
        import multiprocessing

        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            for future in as_completed([pool.submit(simulate, run) for run in runs]):
                done(future.result())
    else:
        for run in runs:
            done(simulate(run))

    baseline = {r["participants"]: r["accuracy"] for r in results if r["epsilon"] is None}
    print(f"W1 MLP, {args.rounds} rounds, delta {DELTA:g}")
    print(f"{'mechanism':<10} {'C':>6} {'epsilon':>8} {'z':>8} {'eps spent':>9} {'opacus eps':>10} "
          f"{'accuracy':>9} {'no DP':>7}")
    order = [BASELINE, *args.mechanisms]
    ordered = sorted(results, key=lambda r: (order.index(r["mechanism"]), r["participants"], r["epsilon"] or 0))
    figures: dict[str, Any] = {"bench": "dp", "workload": "W1", "model": "mlp", "rounds": args.rounds, "delta": DELTA,
                               "budgets": args.budgets, "clip": {m: args.clip[m] for m in args.mechanisms},
                               "no_dp": {str(n): round(a, 4) for n, a in sorted(baseline.items())},
                               "mechanisms": {m: [] for m in args.mechanisms}}
    for r in ordered:
        if r["epsilon"] is None:
            print(f"{'no DP':<10} {'':>6} {'inf':>8} {0:>8} {'':>9} {'':>10} {100 * r['accuracy']:>8.1f}% "
                  f"{r['participants']:>4} p.")
            continue
        opacus = r.get("epsilon_opacus")
        print(f"{r['mechanism']:<10} {r['clip']:>6g} {r['epsilon']:>8g} {r['noise_multiplier']:>8.3f} "
              f"{r['epsilon_spent']:>9.2f} {'' if opacus is None else f'{opacus:.2f}':>10} "
              f"{100 * r['accuracy']:>8.1f}% {100 * baseline.get(r['participants'], math.nan):>6.1f}%")
        figures["mechanisms"][r["mechanism"]].append({
            "epsilon": r["epsilon"], "noise_multiplier": round(r["noise_multiplier"], 4),
            "epsilon_spent": round(r["epsilon_spent"], 3), "steps_per_participant": r["steps_per_participant"],
            **({"epsilon_opacus": round(opacus, 3)} if opacus is not None else {}),
            "accuracy": round(r["accuracy"], 4), "curve": r["curve"], "seconds": r["seconds"]})
    png = plot(results, args, args.out)
    print(f"plot: {png}")
    figures.update(png=str(png), jobs=args.jobs, cpu_count=os.cpu_count(),
                   wall_seconds=round(time.perf_counter() - started, 1))
    print(json.dumps(figures, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
