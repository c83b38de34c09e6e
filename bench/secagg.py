"""Secure aggregation overhead on W1 MLP deltas: 10 and 50 participants in one process, real crypto.

Round-time assumption: a plain round costs one participant's local W1 epoch (MLP, 400 samples,
run in parallel on every node) plus the server's canonical FedAvg. Secure aggregation adds, on the
critical path, one participant's client work (its phases run in parallel with the others') and
the server's unmasking. Network and ledger phases are left out of both. Times are CPU seconds of
this (single-threaded) process, so other load on the machine inflates them less than wall time;
it still moves them (the same local epoch measured 0.040 and 0.010-0.012 CPU s on different runs),
so compare the absolute overhead seconds across runs, and ratios only within one run.
``--round-seconds S`` adds a second comparison against a stated end-to-end round of S seconds
(ledger phases included).

The ratio is pessimistic, not wrong: phases 0-1 (advertise, share) do not depend on the delta and
could run while the node trains, but they are counted on the critical path here.

Every n runs twice in the same process: over the complete graph (Bonawitz et al.: n − 1 pairwise
masks and share envelopes per participant, t = ⌊n/2⌋ + 1) and over a SecAgg+ neighbour graph of
degree k (Bell et al.: k masks and envelopes, t = ⌊(k+1)/2⌋ + 1, a majority of the owner's
neighbourhood of k + 1). The default k is 2·⌈log2 n⌉ (8 at n = 10, 12 at n = 50): SecAgg+ needs
k = O(log n) for the masks to stay a connected, hard-to-isolate graph among the honest survivors.
A smaller k is cheaper but leaves each secret with fewer holders, so fewer colluders suffice to
learn it and fewer dropouts among one member's neighbours fail the round.

    python bench/secagg.py [--participants 10 50] [--neighbours K] [--drop-fraction 0.1] [--round-seconds S]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np
import torch

from trustmesh.contracts.secagg_graph import graph_degree
from trustmesh.fl.aggregate import fedavg
from trustmesh.fl.data import load_w1
from trustmesh.fl.models import build_model, count_params
from trustmesh.fl.train import train_local
from trustmesh.privacy.secagg import (
    Participant,
    PublicKeys,
    Reveal,
    Server,
    encode_masked_input,
    neighbour_graph,
    recommended_degree,
    weighted_mean,
)

ROUND = "bench:secagg"


def local_epoch_seconds(repeats: int) -> float:
    """Median wall time of one W1 local epoch (MLP, one client's 400 samples, SGD lr 0.05, batch 32)."""
    torch.set_num_threads(1)
    data = load_w1().flat()
    x, y = data.x_train[:400], data.y_train[:400]
    times = []
    for r in range(repeats):
        model = build_model("mlp", seed=0)
        _, seconds = timed(train_local, model, x, y, lr=0.05, batch_size=32, epochs=1, seed=r)
        times.append(seconds)
    return float(np.median(times))


def timed(fn, *args, **kwargs):
    """The result and the CPU seconds this process spent computing it."""
    started = time.process_time()
    out = fn(*args, **kwargs)
    return out, time.process_time() - started


def run(n: int, dim: int, drop: int, seed: int, neighbours: int | None) -> dict[str, Any]:
    """One full round with no dropout and one with ``drop`` dropouts; per-phase times and bytes.

    ``neighbours`` None = complete graph; t is a majority of a neighbourhood (the owner and its peers).
    """
    rng = np.random.default_rng(seed)
    degree = graph_degree(neighbour_graph([f"node-{i:03d}" for i in range(n)], neighbours, context=ROUND))
    threshold = (degree + 1) // 2 + 1
    deltas = {f"node-{i:03d}": rng.normal(0, 0.01, dim).astype(np.float32) for i in range(n)}
    samples = {pid: int(rng.integers(50, 150)) for pid in deltas}
    total_samples = sum(samples.values())
    weights = {pid: samples[pid] / total_samples for pid in deltas}
    ids = sorted(deltas)

    plain, t_plain = timed(fedavg, [deltas[p] for p in ids], [samples[p] for p in ids])

    def round_with(dropped: set[str]) -> dict[str, float]:
        people = {pid: Participant(participant_id=pid, threshold=threshold, round_id=ROUND, neighbours=neighbours,
                                   rng=np.random.default_rng(i)) for i, pid in enumerate(ids)}
        t = {"advertise": 0.0, "share": 0.0, "mask": 0.0, "reveal": 0.0}
        sent = dict.fromkeys(ids, 0)
        roster: dict[str, PublicKeys] = {}
        for pid, person in people.items():
            keys, dt = timed(person.advertise)
            t["advertise"] += dt
            wire = keys.to_cbor()
            sent[pid] += len(wire)
            roster[pid] = PublicKeys.from_cbor(wire)
        envelopes = {}
        for pid, person in people.items():
            envelopes[pid], dt = timed(person.share_keys, roster)
            t["share"] += dt
            sent[pid] += sum(len(e) for e in envelopes[pid].values())
        survivors = [pid for pid in ids if pid not in dropped]
        masked = {}
        for pid in survivors:
            masked[pid], dt = timed(people[pid].masked_input, deltas[pid], weights[pid])
            t["mask"] += dt
            sent[pid] += len(encode_masked_input(masked[pid]))
        reveals = {}
        for pid in survivors:
            inbox = {s: envelopes[s][pid] for s in ids if pid in envelopes[s]}
            reveal, dt = timed(people[pid].unmask_reveal, set(survivors), dropped, inbox)
            t["reveal"] += dt
            wire = reveal.to_cbor()
            sent[pid] += len(wire)
            reveals[pid] = Reveal.from_cbor(wire)
        server = Server(roster=roster, threshold=threshold, round_id=ROUND, neighbours=neighbours)
        total, t_server = timed(server.unmask, masked, reveals)
        mean = weighted_mean(total, [weights[p] for p in survivors])
        expected = fedavg([deltas[p] for p in survivors], [samples[p] for p in survivors])
        bound = server.quantizer.error_bound(len(survivors)) / sum(weights[p] for p in survivors) + 1e-7
        error = float(np.max(np.abs(mean - expected)))
        assert error <= bound, (error, bound)
        client = (t["advertise"] + t["share"]) / n + (t["mask"] + t["reveal"]) / len(survivors)
        return {"client_s": client, "server_s": t_server, "server_phases": dict(server.phase_seconds),
                "recovery_s": server.phase_seconds.get("dropout_recovery", 0.0), "bytes": float(np.mean([sent[p] for p in survivors])),
                "max_error": error, **{f"{k}_s": v / (n if k in ("advertise", "share") else len(survivors))
                                        for k, v in t.items()}}

    full = round_with(set())
    gone = set(ids[1:1 + drop])
    partial = round_with(gone)
    return {"n": n, "t": threshold, "degree": degree, "dropped": drop, "plain_fedavg_s": t_plain,
            "plain_bytes": float(4 * dim), "full": full, "partial": partial, "plain_norm": float(np.abs(plain).max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--dim", type=int, default=0, help="delta length (default: the W1 MLP, 199,210)")
    parser.add_argument("--neighbours", type=int, default=None,
                        help="SecAgg+ degree k of the sparse run (default: 2*ceil(log2 n) for each n)")
    parser.add_argument("--drop-fraction", type=float, default=0.1)
    parser.add_argument("--round-seconds", type=float, default=None,
                        help="also compare to an end-to-end round of this many seconds")
    args = parser.parse_args()
    dim = args.dim or count_params(build_model("mlp", seed=0))
    epoch = local_epoch_seconds(repeats=5)

    rows: list[tuple[Any, ...]] = []
    figures: dict[str, Any] = {"dim": dim, "local_epoch_s": round(epoch, 4)}
    for n in args.participants:
        drop = max(1, int(round(n * args.drop_fraction)))
        k = args.neighbours if args.neighbours is not None else recommended_degree(n)
        for name, neighbours in ((f"n{n}", None), (f"n{n}_sparse", k)):
            r = run(n, dim, drop, seed=n, neighbours=neighbours)
            plain_round = epoch + r["plain_fedavg_s"]
            secure_round = epoch + r["full"]["client_s"] + r["full"]["server_s"]
            recovery_round = epoch + r["partial"]["client_s"] + r["partial"]["server_s"]
            graph = "complete" if neighbours is None else f"k={neighbours}"
            rows.append((n, graph, r["degree"], r["t"], drop, plain_round, secure_round, secure_round / plain_round,
                         r["full"]["client_s"], r["full"]["server_s"], r["partial"]["server_s"],
                         r["partial"]["recovery_s"], r["plain_bytes"], r["full"]["bytes"],
                         recovery_round / plain_round))
            figures[name] = {
                "neighbours": neighbours, "degree": r["degree"], "threshold": r["t"], "dropped": drop,
                "plain_round_s": round(plain_round, 4), "plain_fedavg_s": round(r["plain_fedavg_s"], 4),
                "secagg_round_s": round(secure_round, 4), "overhead_ratio": round(secure_round / plain_round, 3),
                "client_s": round(r["full"]["client_s"], 4),
                "client_phase_s": {p: round(r["full"][p], 4) for p in ("advertise_s", "share_s", "mask_s", "reveal_s")},
                "server_unmask_s": round(r["full"]["server_s"], 4),
                "server_phase_s": {p: round(v, 4) for p, v in r["full"]["server_phases"].items()},
                "server_unmask_with_dropouts_s": round(r["partial"]["server_s"], 4),
                "dropout_recovery_s": round(r["partial"]["recovery_s"], 4),
                "recovery_round_ratio": round(recovery_round / plain_round, 3),
                "bytes_plain": int(r["plain_bytes"]), "bytes_secagg": int(r["full"]["bytes"]),
                "max_abs_error": r["full"]["max_error"],
            }
            if args.round_seconds:
                figures[name]["ratio_vs_stated_round"] = round(
                    (args.round_seconds + secure_round - plain_round) / args.round_seconds, 3)

    header = ("n", "graph", "degree", "t", "drop", "plain s", "secagg s", "ratio", "client s", "unmask s",
              "unmask+drop s", "recovery s", "plain B", "secagg B", "drop ratio")
    print(f"W1 MLP deltas ({dim} float32); local epoch {epoch:.3f} CPU s (the round-time assumption)")
    print(" | ".join(f"{h:>13}" for h in header))
    for row in rows:
        print(" | ".join(f"{v:>13.4f}" if isinstance(v, float) else f"{v:>13}" for v in row))
    if args.round_seconds:
        print(f"against a stated round of {args.round_seconds:g} s: " + ", ".join(
            f"{name}: x{fig['ratio_vs_stated_round']}" for name, fig in figures.items() if isinstance(fig, dict)))
    figures["goal_at_most_double_at_50"] = figures.get("n50", {}).get("overhead_ratio", float("inf")) <= 2.0
    figures["goal_at_most_double_at_50_sparse"] = \
        figures.get("n50_sparse", {}).get("overhead_ratio", float("inf")) <= 2.0
    figures["load_average"] = [round(v, 2) for v in os.getloadavg()]
    print(f"load average {figures['load_average']}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
