"""`trustmesh privacy`: the round cap a client-level DP budget allows, and epsilon spent per round.

The same numbers the coordinator records on-chain at registration; handy for choosing z and C.
"""
from __future__ import annotations

import argparse
import json

from trustmesh.privacy.accountant import epsilon_after, rounds_allowed
from trustmesh.privacy.dp import DistributedNoise


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epsilon", type=float, required=True, help="the workflow's epsilon budget")
    parser.add_argument("--delta", type=float, default=1e-5, help="delta (default 1e-5)")
    parser.add_argument("--noise-multiplier", type=float, required=True, help="z: noise std / clip")
    parser.add_argument("--clip", type=float, default=1.0, help="C: L2 clip of each delta (default 1.0)")
    parser.add_argument("--sampling-rate", type=float, default=1.0,
                        help="fraction of participants taking part in a round (default 1: all)")
    parser.add_argument("--max-rounds", type=int, required=True, help="the workflow's number of rounds")
    parser.add_argument("--expected-nodes", type=int, help="participants the noise is split among")
    parser.add_argument("--min-nodes", type=int, help="smallest quorum that closes a round")
    parser.add_argument("--calibrate-to", choices=["expected", "min_nodes"], default="expected",
                        help="split the noise for all expected nodes or for the minimum quorum")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def run(args: argparse.Namespace) -> int:
    """Print the round cap and the epsilon after each allowed round."""
    z = args.noise_multiplier
    plan = None
    if args.expected_nodes:
        plan = DistributedNoise(noise_multiplier=z, clip=args.clip, expected_nodes=args.expected_nodes,
                                min_nodes=args.min_nodes or args.expected_nodes, calibrate_to=args.calibrate_to)
        z = plan.accounting_noise_multiplier
    cap = rounds_allowed(args.epsilon, args.delta, z, args.sampling_rate, args.max_rounds)
    spent = [epsilon_after(r, noise_multiplier=z, sampling_rate=args.sampling_rate, delta=args.delta)
             for r in range(1, cap + 1)]
    out = {"rounds_allowed": cap, "accounting_noise_multiplier": z, "epsilon_per_round": spent,
           "participant_noise_std": plan.participant_std if plan else z * args.clip}
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"rounds allowed: {cap} of {args.max_rounds} (epsilon {args.epsilon:g}, delta {args.delta:g}, "
          f"accounted z {z:.4g}, q {args.sampling_rate:g})")
    print(f"noise std per participant: {out['participant_noise_std']:.4g}")
    for r, eps in enumerate(spent, start=1):
        print(f"  after round {r:>3}: epsilon {eps:.3f}, remaining {args.epsilon - eps:.3f}")
    return 0
