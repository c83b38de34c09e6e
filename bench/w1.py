"""W1 through the whole system: devnet + both TPs + Redis + PouchDB Server, two compute nodes, a
coordinator and one OS process per participant, exactly as `trustmesh run` starts them.

Configurations: ``mlp-iid`` and ``mlp-dirichlet`` (W1: MLP, SGD lr 0.05, batch 32, 1 local epoch,
FedAvg weighted by samples, every participant every round) and ``cnn-iid`` (the CNN, 5 local
epochs). Per round: test accuracy, wall seconds (round opened -> next round opened), the slowest
participant's training seconds, framework overhead (the difference), the round's phases from the
ledger's events, blocks, bytes on-chain and in Redis. The centralized baselines (bench/centralized.py,
same model and optimizer, 20 epochs over the 4,000 train digits) run in the same process afterwards.
A table per configuration, then one JSON line.

    python bench/w1.py [--configs mlp-iid,mlp-dirichlet,cnn-iid,mlp-iid-secagg] [--rounds 20] [--participants 10]
                       [--local-epochs 1] [--cnn-local-epochs 5] [--cnn-rounds N] [--compute-nodes 2]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from centralized import run_model  # noqa: E402  (bench/ is not a package)
from w1_participant import TRAIN_LOG_ENV  # noqa: E402
from w1_timeline import (  # noqa: E402
    PHASES,
    EventLog,
    chain_bytes_per_round,
    read_training,
    redis_bytes_of_round,
    round_timing,
    safe_last_block,
)

from trustmesh.chain import Chain  # noqa: E402
from trustmesh.contracts.workflow import load_workflow  # noqa: E402
from trustmesh.errors import ServiceFailed, TrustMeshError  # noqa: E402
from trustmesh.ledger.client import LedgerClient  # noqa: E402
from trustmesh.ledger.keys import new_signer  # noqa: E402
from trustmesh.runner.plan import COORDINATOR, compute_name, participant_name, plan_workflow  # noqa: E402
from trustmesh.runner.stack import LocalStack  # noqa: E402

EXAMPLE = HERE.parent / "examples" / "mnist-federated.json"
CONFIGS = {
    "mlp-iid": {"model": "mlp", "partition": "iid", "prefix": "mlp_iid"},
    "mlp-dirichlet": {"model": "mlp", "partition": "dirichlet:0.5", "prefix": "mlp_dirichlet"},
    "cnn-iid": {"model": "cnn", "partition": "iid", "prefix": "cnn"},
    # W1 MLP IID with secure aggregation (threshold: a majority of the participants)
    "mlp-iid-secagg": {"model": "mlp", "partition": "iid", "prefix": "mlp_iid_secagg", "secure_aggregation": True},
}
ROUND_TIMEOUT = 900
"""Seconds a round may stay open: only matters if a participant is missing, which W1 never wants."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def w1_workflow(*, stack: LocalStack, model: str, partition: str, participants: int, rounds: int,
                local_epochs: int, compute_nodes: int, workflow_id: str,
                secure_aggregation: bool = False) -> dict[str, Any]:
    """The example workflow pinned to W1: its optimizer, all participants every round, no gate."""
    doc = load_workflow(EXAMPLE)
    doc["local_training"].update({"lr": 0.05, "momentum": 0.0, "batch_size": 32, "fedprox_mu": 0.0})
    doc["aggregation"] = {"name": "fedavg", "params": {}, "norm_bound": None}
    doc["validation_gate"] = {"min_accuracy": 0.0, "max_drop": 1.0}  # FedAvg keeps every round's model
    plan = plan_workflow(doc, participants=participants, compute_nodes=compute_nodes,
                         key_of=lambda name: stack.key(name).public_key, rounds=rounds, model=model,
                         partition=partition, local_epochs=local_epochs, round_timeout=ROUND_TIMEOUT,
                         workflow_id=workflow_id)
    plan["federation_config"]["min_nodes_required"] = participants
    if secure_aggregation:
        plan["privacy"]["secure_aggregation"] = {"enabled": True, "threshold": participants // 2 + 1}
    return plan


def spawn_participant(stack: LocalStack, name: str, workflow_id: str, partition: int, train_log: Path) -> None:
    """The stock participant CLI through bench/w1_participant.py, which only times train_local."""
    argv = [sys.executable, str(HERE / "w1_participant.py"), "iot", "participant", "--workflow-id", workflow_id,
            "--partition", str(partition), "--codec", "f32", "--url", stack.ledger_url,
            "--key", str(stack.key(name).private_path), "--redis", stack.redis_for("participant")]
    child = stack.group.spawn(name, argv, env={TRAIN_LOG_ENV: str(train_log)},
                              log_path=stack.run_dir / "logs" / f"{name}.log")
    stack.nodes[name] = child


def wait_until_complete(stack: LocalStack, chain: Chain, workflow_id: str, rounds: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        dead = stack.dead_nodes()
        if dead:
            raise ServiceFailed(f"{dead[0].name} exited with code {dead[0].returncode}:\n{dead[0].log_tail(15)}")
        workflow = chain.workflow(workflow_id)
        if workflow is not None:
            if workflow.last_round > seen:
                seen = workflow.last_round
                log(f"  round {seen}/{rounds} opened")
            if workflow.status == "completed":
                return
        time.sleep(1.0)
    raise TrustMeshError(f"{workflow_id} did not complete within {timeout:g}s (logs in {stack.run_dir}/logs)")


def run_config(name: str, args: argparse.Namespace, runs_dir: Path) -> dict[str, Any]:
    """One configuration on a fresh stack: per-round figures and summaries."""
    cfg = CONFIGS[name]
    is_cnn = cfg["model"] == "cnn"
    rounds = args.cnn_rounds if is_cnn and args.cnn_rounds else args.rounds
    epochs = args.cnn_local_epochs if is_cnn else args.local_epochs
    workflow_id = f"w1-{name}-{time.strftime('%H%M%S')}"
    stack = LocalStack(run_dir=runs_dir / name)
    started = time.time()
    load_start = os.getloadavg()
    events: EventLog | None = None
    try:
        log(f"{name}: starting the stack in {stack.run_dir}")
        stack.start_services()
        client = LedgerClient(urls=[stack.ledger_url])
        chain = Chain(client=client, signer=new_signer())
        plan = w1_workflow(stack=stack, model=cfg["model"], partition=cfg["partition"],
                           participants=args.participants, rounds=rounds, local_epochs=epochs,
                           compute_nodes=args.compute_nodes, workflow_id=workflow_id,
                           secure_aggregation=bool(cfg.get("secure_aggregation")))
        workflow_file = stack.run_dir / "workflow.json"
        workflow_file.write_text(json.dumps(plan, indent=2) + "\n")
        events = EventLog(client=client, workflow_id=workflow_id).start()
        train_logs = [stack.run_dir / "train" / f"{participant_name(i)}.jsonl" for i in range(args.participants)]
        train_logs[0].parent.mkdir(parents=True, exist_ok=True)
        for i in range(args.compute_nodes):
            stack.spawn_compute(compute_name(i), workflow_id, heartbeat_every=args.heartbeat_every)
        stack.spawn_coordinator(COORDINATOR, workflow_file)
        for i in range(args.participants):
            spawn_participant(stack, participant_name(i), workflow_id, i, train_logs[i])
        log(f"{name}: {args.participants} participants, {rounds} rounds, {epochs} local epoch(s), {cfg['model']}")
        wait_until_complete(stack, chain, workflow_id, rounds, args.timeout)
        finished = time.time()
        for child in stack.nodes.values():  # compute nodes flush their CouchDB outbox on exit
            child.wait(max(0.1, 30 - (time.time() - finished)))
        time.sleep(0.5)  # the last block's events
        events.stop()
        events.save(stack.run_dir / "events.jsonl")
        return measure(name, stack, chain, events, workflow_id, rounds, epochs, train_logs,
                       started=started, finished=finished, load_start=load_start)
    finally:
        if events is not None:
            events.stop()
        stack.stop()


def measure(name: str, stack: LocalStack, chain: Chain, events: EventLog, workflow_id: str, rounds: int,
            epochs: int, train_logs: list[Path], *, started: float, finished: float,
            load_start: tuple[float, ...]) -> dict[str, Any]:
    training = read_training(train_logs)
    couch_timings = history_timings(stack, workflow_id)
    assert stack.redis is not None
    admin = stack.redis.admin_client()
    onchain = chain_bytes_per_round(chain.client, workflow_id, safe_last_block(events))
    rows = []
    for r in range(1, rounds + 1):
        record = chain.round(workflow_id, r)
        if record is None:
            continue
        timing = round_timing(events, r, training.get(r, []))
        model_hash = record.result.model_hash if record.result else None
        redis = redis_bytes_of_round(admin, workflow_id, record.schedule_id, model_hash)
        block = onchain["rounds"].get(r, {"bytes": 0, "blocks": 0, "txn_bytes": {}})
        evaluation = record.evaluation
        rows.append({
            "round": r, "status": record.status,
            "accuracy": evaluation.accuracy if evaluation else None,
            "loss": evaluation.loss if evaluation else None,
            "chain_times": {"opened_at": record.opened_at, "closed_at": record.closed_at,
                            "posted_at": record.result.posted_at if record.result else None,
                            "evaluated_at": evaluation.at if evaluation else None},
            **{k: v for k, v in timing.items() if k not in ("opened", "end")},
            "chain_bytes": block["bytes"], "chain_blocks": block["blocks"], "chain_txn_bytes": block["txn_bytes"],
            "redis_bytes": redis["memory_bytes"], "redis_blob_bytes": redis["blob_bytes"],
            "history_timings": couch_timings.get(r, {}),
        })
    first_open = events.first("federation/round-opened", 1)
    return {
        "config": name, "rounds": rounds, "local_epochs": epochs, "rows": rows,
        "startup_s": (first_open - started) if first_open else None,
        "wall_s": finished - started,
        "rounds_wall_s": (finished - first_open) if first_open else None,
        "setup_chain_bytes": onchain["setup"]["bytes"],
        "load_average": {"start": load_start, "end": os.getloadavg()},
    }


def history_timings(stack: LocalStack, workflow_id: str) -> dict[int, dict[str, float]]:
    """The evaluating compute node's own timings per round, from the CouchDB round documents."""
    if not stack.history_url:
        return {}
    from trustmesh.history.couch import CouchHistory

    try:
        return {doc.round: dict(doc.timings) for doc in CouchHistory(stack.history_url).list_rounds(workflow_id)}
    except TrustMeshError as exc:
        log(f"  no CouchDB timings: {exc}")
        return {}


def mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.fmean(kept) if kept else None


def median(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else None


def _f(value: float | None, spec: str) -> str:
    return format(value, spec) if value is not None else "-"


def print_table(result: dict[str, Any]) -> None:
    rows = result["rows"]
    print(f"\n{result['config']}: {result['rounds']} rounds, {result['local_epochs']} local epoch(s)")
    print(f"{'round':>5} {'acc':>7} {'loss':>7} {'round s':>8} {'train s':>8} {'overhead':>8} "
          f"{'blocks':>6} {'chain KB':>9} {'redis KB':>9}")
    for row in rows:
        print(f"{row['round']:>5} {_f(row['accuracy'], '.4f'):>7} {_f(row['loss'], '.4f'):>7} "
              f"{_f(row['seconds'], '.2f'):>8} {_f(row['slowest_train_s'], '.2f'):>8} "
              f"{_f(row['overhead_s'], '.2f'):>8} {row['chain_blocks']:>6} {row['chain_bytes'] / 1024:>9.1f} "
              f"{row['redis_bytes'] / 1024:>9.1f}")
    steady = [r for r in rows if r["round"] >= 2 and r["includes_next_open"]]
    print(f"rounds 2..{rows[-2]['round'] if len(rows) > 1 else '-'}: {_f(mean([r['seconds'] for r in steady]), '.2f')} s a round, "
          f"slowest training {_f(mean([r['slowest_train_s'] for r in steady]), '.2f')} s, "
          f"overhead {_f(mean([r['overhead_s'] for r in steady]), '.2f')} s")
    print("mean seconds per phase (same rounds): " + "  ".join(
        f"{p} {_f(mean([r['phases'][p] for r in steady]), '.2f')}" for p in PHASES))
    print(f"participant side of 'submissions': wake+fetch {_f(mean([r['dispatch_s'] for r in steady]), '.2f')} s, "
          f"training (slowest) {_f(mean([r['slowest_train_s'] for r in steady]), '.2f')} s, "
          f"after training to committed {_f(mean([r['submit_tail_s'] for r in steady]), '.2f')} s "
          f"(own work before sending {_f(mean([r.get('local_work_s') for r in steady]), '.2f')} s, "
          f"last send to commit {_f(mean([r.get('send_to_commit_s') for r in steady]), '.2f')} s); "
          f"block interval {_f(mean([r['block_interval_s'] for r in steady]), '.2f')} s")
    print(f"compute node's own timings (CouchDB): evaluate {_f(mean([r['history_timings'].get('evaluate_seconds') for r in steady]), '.3f')} s, "
          f"aggregate {_f(mean([r['history_timings'].get('aggregate_seconds') for r in steady]), '.3f')} s; "
          f"load average {result['load_average']['start'][0]:.1f} at start, {result['load_average']['end'][0]:.1f} at end")


def summarize(result: dict[str, Any], prefix: str) -> dict[str, Any]:
    rows = result["rows"]
    accepted = [r for r in rows if r["accuracy"] is not None]
    full = [r for r in rows if r["includes_next_open"]]  # rounds whose wall time includes opening the next
    steady = [r for r in full if r["round"] >= 2]  # round 1 includes each participant's first torch call
    r3 = lambda v: round(v, 4) if isinstance(v, float) else v  # noqa: E731
    out = {
        f"{prefix}_rounds": result["rounds"],
        f"{prefix}_rounds_completed": len(accepted),
        f"{prefix}_local_epochs": result["local_epochs"],
        f"{prefix}_final_accuracy": r3(accepted[-1]["accuracy"]) if accepted else None,
        f"{prefix}_accuracy": [r3(r["accuracy"]) for r in rows],
        f"{prefix}_seconds_per_round": r3(mean([r["seconds"] for r in full] or [r["seconds"] for r in rows])),
        f"{prefix}_seconds": [r3(r["seconds"]) for r in rows],
        f"{prefix}_slowest_train_s_per_round": r3(mean([r["slowest_train_s"] for r in rows])),
        f"{prefix}_overhead_s_per_round": r3(mean([r["overhead_s"] for r in full] or [r["overhead_s"] for r in rows])),
        f"{prefix}_overhead_s_median": r3(median([r["overhead_s"] for r in full])),
        f"{prefix}_overhead_s": [r3(r["overhead_s"]) for r in rows],
        f"{prefix}_phase_s": {p: r3(mean([r["phases"][p] for r in rows])) for p in PHASES},
        f"{prefix}_seconds_per_round_steady": r3(mean([r["seconds"] for r in steady])),
        f"{prefix}_slowest_train_s_steady": r3(mean([r["slowest_train_s"] for r in steady])),
        f"{prefix}_overhead_s_per_round_steady": r3(mean([r["overhead_s"] for r in steady])),
        f"{prefix}_phase_s_steady": {p: r3(mean([r["phases"][p] for r in steady])) for p in PHASES},
        f"{prefix}_wake_fetch_s": r3(mean([r["dispatch_s"] for r in rows])),
        f"{prefix}_submit_tail_s": r3(mean([r["submit_tail_s"] for r in rows])),
        f"{prefix}_local_work_s": r3(mean([r.get("local_work_s") for r in rows])),
        f"{prefix}_send_to_commit_s": r3(mean([r.get("send_to_commit_s") for r in rows])),
        f"{prefix}_blocks_per_round": r3(mean([float(r["chain_blocks"]) for r in rows])),
        f"{prefix}_block_interval_s": r3(mean([r["block_interval_s"] for r in rows])),
        f"{prefix}_chain_bytes_per_round": r3(mean([float(r["chain_bytes"]) for r in rows])),
        f"{prefix}_redis_bytes_per_round": r3(mean([float(r["redis_bytes"]) for r in rows])),
        f"{prefix}_redis_blob_bytes_per_round": r3(mean([float(r["redis_blob_bytes"]) for r in rows])),
        f"{prefix}_startup_s": r3(result["startup_s"]),
        f"{prefix}_rounds_wall_s": r3(result["rounds_wall_s"]),
        f"{prefix}_wall_s": r3(result["wall_s"]),
        f"{prefix}_evaluate_s": r3(mean([r["history_timings"].get("evaluate_seconds") for r in rows])),
        f"{prefix}_load_average": [round(result["load_average"]["start"][0], 2),
                                   round(result["load_average"]["end"][0], 2)],
    }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="mlp-iid,mlp-dirichlet,cnn-iid",
                        help=f"comma-separated, from {', '.join(CONFIGS)}")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--participants", type=int, default=10)
    parser.add_argument("--local-epochs", type=int, default=1, help="MLP local epochs (W1: 1)")
    parser.add_argument("--cnn-local-epochs", type=int, default=5)
    parser.add_argument("--cnn-rounds", type=int, default=None, help="CNN rounds (default: --rounds)")
    parser.add_argument("--compute-nodes", type=int, default=2, help="2: one aggregates, the other attests")
    parser.add_argument("--heartbeat-every", type=float, default=1.0,
                        help="compute nodes' heartbeat period while a round waits (trustmesh run: 1.0)")
    parser.add_argument("--centralized-epochs", type=int, default=20, help="0 skips the centralized baselines")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"), help="runs/bench-w1-<time>/<config>/")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per configuration")
    args = parser.parse_args()
    names = [n for n in args.configs.split(",") if n]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"unknown configuration(s) {unknown}; choose from {list(CONFIGS)}")
    torch.set_num_threads(1)
    runs_dir = (args.runs_dir / f"bench-w1-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    figures: dict[str, Any] = {"bench": "w1", "workload": "W1", "participants": args.participants,
                               "compute_nodes": args.compute_nodes, "heartbeat_every": args.heartbeat_every,
                               "runs_dir": str(runs_dir)}
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        try:
            results[name] = run_config(name, args, runs_dir)
        except (TrustMeshError, OSError) as exc:
            log(f"{name}: failed: {exc}")
            traceback.print_exc(file=sys.stderr)
            figures[f"{CONFIGS[name]['prefix']}_error"] = str(exc).splitlines()[0]
            continue
        print_table(results[name])
        figures.update(summarize(results[name], CONFIGS[name]["prefix"]))
        (runs_dir / name / "w1_rounds.json").write_text(json.dumps(results[name], indent=2) + "\n")

    models = sorted({CONFIGS[n]["model"] for n in names})
    if args.centralized_epochs > 0:
        for model in models:
            log(f"centralized {model}: {args.centralized_epochs} epochs over 4,000 (bench/centralized.py)")
            with contextlib.redirect_stdout(sys.stderr):
                baseline = run_model(model, args.centralized_epochs)
            figures[f"centralized_{model}_accuracy"] = round(baseline["final_accuracy"], 4)
            figures[f"centralized_{model}_best_accuracy"] = round(baseline["best_accuracy"], 4)
            figures[f"centralized_{model}_train_s"] = round(baseline["train_seconds"], 2)
        figures["centralized_epochs"] = args.centralized_epochs

    plain, masked = figures.get("mlp_iid_seconds_per_round_steady"), figures.get("mlp_iid_secagg_seconds_per_round_steady")
    if plain and masked:
        figures["secagg_round_ratio"] = round(masked / plain, 3)  # the same W1 round, with and without masks
    print("\ngoals")
    goals = goal_checks(figures, args)
    for text, ok in goals.items():
        print(f"  {'met ' if ok else 'MISS' if ok is False else 'n/a '}  {text}")
    figures["goals"] = goals
    print(json.dumps(figures, separators=(",", ":")))
    return 0


def goal_checks(figures: dict[str, Any], args: argparse.Namespace) -> dict[str, bool | None]:
    """The issue's goals, judged on what this run measured (None: not measured here)."""
    mlp = figures.get("mlp_iid_final_accuracy")
    cnn = figures.get("cnn_final_accuracy")
    central_cnn = figures.get("centralized_cnn_accuracy")
    overhead = figures.get("mlp_iid_overhead_s_per_round")
    at20 = figures.get("mlp_iid_rounds_completed") == 20
    return {
        f"MLP IID >= 0.85 at round 20 (ran {figures.get('mlp_iid_rounds_completed')})":
            (mlp >= 0.85) if mlp is not None and at20 else None,
        "CNN (5 local epochs) >= 0.95": (cnn >= 0.95) if cnn is not None else None,
        "CNN within 2 points of centralized CNN":
            (abs(central_cnn - cnn) <= 0.02) if cnn is not None and central_cnn is not None else None,
        f"framework overhead < 0.3 s a round at {args.participants} participants (MLP IID)":
            (overhead < 0.3) if overhead is not None else None,
        f"secure aggregation at most doubles the round at {args.participants} participants (MLP IID, steady)":
            (figures["secagg_round_ratio"] <= 2.0) if figures.get("secagg_round_ratio") is not None else None,
    }


if __name__ == "__main__":
    sys.exit(main())
