"""`trustmesh run WORKFLOW.json`: a whole federated training on this machine, start to finish.

Starts the embedded ledger, both TPs, Redis and PouchDB Server (or uses the ones named by
--url/--redis/--couchdb), generates a key per node, registers the workflow with those keys, runs
the compute nodes, the coordinator and N participants, shows each round as it settles, and leaves
the round table, a plot and the final model in runs/<run-id>/. Ctrl-C or an error stops every child
it started, by PID, and says why.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from trustmesh.errors import ConfigError, TrustMeshError

LOGGER = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n")[1].replace("\n", " ") if __doc__ else None
    parser.add_argument("workflow", type=Path, help="workflow JSON file, e.g. examples/mnist-federated.json")
    parser.add_argument("--participants", type=int, default=None, help="participant processes (default: the file's)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default: the file's)")
    parser.add_argument("--model", choices=["mlp", "cnn"], default=None, help="model (default: the file's)")
    parser.add_argument("--partition", default=None, help="iid | dirichlet:ALPHA | shards:N (default: the file's)")
    parser.add_argument("--local-epochs", type=int, default=None, help="local epochs per round (default: the file's)")
    parser.add_argument("--compute-nodes", type=int, default=2, help="compute nodes (default 2: one attests the other)")
    parser.add_argument("--round-timeout", type=int, default=None, help="seconds a round stays open (block time)")
    parser.add_argument("--codec", default="f32", choices=["f32", "f16", "int8", "topk"], help="update codec")
    parser.add_argument("--secure-aggregation", type=int, default=None, metavar="T",
                        help="secure aggregation with Shamir threshold T (0: off; default: the file's)")
    parser.add_argument("--neighbours", type=int, default=None, metavar="K",
                        help="with --secure-aggregation: SecAgg+ with K neighbours each (masks and shares only "
                             "between neighbours; T then counts within a neighbourhood)")
    parser.add_argument("--dp", choices=["none", "client", "sample"], default=None,
                        help="differential privacy: client-level (participants clip and add noise shares) or "
                             "sample-level DP-SGD (default: the file's)")
    parser.add_argument("--epsilon", type=float, default=None, help="with --dp: the (epsilon, 1e-5) budget; the "
                        "chain refuses rounds beyond it")
    parser.add_argument("--clip", type=float, default=None, help="with --dp: clip norm C (default 1.0)")
    parser.add_argument("--noise-multiplier", type=float, default=None,
                        help="with --dp: Gaussian noise multiplier z (default 1.0)")
    parser.add_argument("--url", default=None, help="use this running ledger (comma-separated URLs) instead of devnet")
    parser.add_argument("--redis", default=None, help="use this Redis URL instead of starting one")
    parser.add_argument("--couchdb", default=None, help="use this CouchDB URL (with credentials) instead of PouchDB")
    parser.add_argument("--no-history", action="store_true", help="keep no CouchDB history")
    parser.add_argument("--no-tps", action="store_true",
                        help="with --url: the network already runs both transaction processors")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where runs/<run-id>/ goes")
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up after this many seconds")
    parser.add_argument("--keep-running", action="store_true", help="keep the services up after the run (Ctrl-C stops)")


def _load_doc(path: Path) -> dict:  # type: ignore[type-arg]
    from trustmesh.contracts.workflow import load_workflow, validate_workflow

    doc = load_workflow(path)
    problems = validate_workflow(doc)
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    return doc


def _stand_in_key(name: str) -> str:
    import hashlib

    return "02" + hashlib.sha256(name.encode()).hexdigest()


def _with_privacy(plan: dict, args: argparse.Namespace) -> dict:  # type: ignore[type-arg]
    """The plan with the command line's privacy options applied, checked as a whole workflow."""
    from trustmesh.contracts.workflow import validate_workflow
    from trustmesh.runner.plan import apply_privacy_options

    plan = apply_privacy_options(plan, secure_aggregation=args.secure_aggregation, neighbours=args.neighbours,
                                 dp=args.dp, epsilon=args.epsilon,
                                 clip=args.clip, noise_multiplier=args.noise_multiplier)
    problems = validate_workflow(plan)
    if problems:
        raise ConfigError("; ".join(problems))
    return plan


def run(args: argparse.Namespace) -> int:
    from trustmesh.runner.plan import COORDINATOR, compute_name, participant_name, plan_workflow
    from trustmesh.runner.session import RunSession
    from trustmesh.runner.stack import LocalStack

    doc = _load_doc(args.workflow)
    participants = args.participants or int(doc.get("expected_nodes", 3))
    # Refuse a bad combination of options before any service starts (stand-in keys; the real ones come later).
    _with_privacy(plan_workflow(doc, participants=participants, compute_nodes=args.compute_nodes,
                                key_of=_stand_in_key, rounds=args.rounds, model=args.model,
                                partition=args.partition, local_epochs=args.local_epochs,
                                round_timeout=args.round_timeout), args)
    run_id = time.strftime("%Y%m%d-%H%M%S")
    run_dir = (args.runs_dir / run_id).resolve()
    stack = LocalStack(run_dir=run_dir, url=args.url, redis_url=args.redis, couchdb_url=args.couchdb,
                       with_history=not args.no_history, with_tps=not (args.url and args.no_tps))
    workflow_id = f"{doc['workflow_id']}-{run_id}"
    try:
        print(f"run {run_id}: starting services in {run_dir}")
        stack.start_services()
        plan = plan_workflow(
            doc, participants=participants, compute_nodes=args.compute_nodes,
            key_of=lambda name: stack.key(name).public_key, rounds=args.rounds, model=args.model,
            partition=args.partition, local_epochs=args.local_epochs, round_timeout=args.round_timeout,
            workflow_id=workflow_id,
        )
        plan = _with_privacy(plan, args)
        workflow_file = run_dir / "workflow.json"
        workflow_file.write_text(json.dumps(plan, indent=2) + "\n")
        if stack.fauxton_url:
            print(f"history: Fauxton at {stack.fauxton_url}")
        for i in range(args.compute_nodes):
            stack.spawn_compute(compute_name(i), workflow_id)
        stack.spawn_coordinator(COORDINATOR, workflow_file)
        for i in range(participants):
            stack.spawn_participant(participant_name(i), workflow_id, i, codec=args.codec)
        session = RunSession(stack=stack, workflow_id=workflow_id, plan=plan, run_dir=run_dir)
        outcome = session.follow(timeout=args.timeout)
        session.wait_for_nodes()
        session.write_outputs()
        if args.keep_running:
            print("services keep running; Ctrl-C stops them")
            while True:
                time.sleep(3600)
        return 0 if outcome == "completed" else 1
    except KeyboardInterrupt:
        print("interrupted: stopping every process this run started")
        return 130
    except TrustMeshError:
        raise
    finally:
        stack.stop()
