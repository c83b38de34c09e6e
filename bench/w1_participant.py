"""`trustmesh iot participant`, unchanged, with its local training timed for bench/w1.py.

The stock participant computes its training seconds but does not log them, and the benchmark's
overhead figure needs them (round wall time minus the slowest participant's training time). This
wrapper wraps the participant module's ``train_local`` with a wall-clock timer, appends one JSON
line per call to the file named by ``W1_TRAIN_LOG``, then runs the ordinary CLI entry point. It also
stamps when each submission leaves (after local evaluation and encoding) and when it committed, so
the tail after training splits into the participant's own work and the ledger's.

    W1_TRAIN_LOG=train.jsonl python bench/w1_participant.py iot participant --workflow-id ... (same args)
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

TRAIN_LOG_ENV = "W1_TRAIN_LOG"


def install_timer(path: str) -> None:
    """Replace the participant's ``train_local`` with a timed call that logs (round, partition, times)."""
    import trustmesh.iot.participant as participant

    inner = participant.train_local

    def timed_train_local(*args: Any, **kwargs: Any) -> Any:
        started = time.time()
        result = inner(*args, **kwargs)
        ended = time.time()
        seed = int(kwargs.get("seed", -1))
        line = {"round": seed // 100, "partition": seed % 100, "start": started, "end": ended,
                "seconds": float(result.seconds), "num_samples": int(result.num_samples)}
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")
        return result

    participant.train_local = timed_train_local
    send = participant.submit_envelope

    def timed_submit_envelope(*args: Any, **kwargs: Any) -> Any:
        started = time.time()
        digest = send(*args, **kwargs)
        line = {"round": int(kwargs["round_no"]), "submit_start": started, "committed": time.time()}
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")
        return digest

    participant.submit_envelope = timed_submit_envelope


def main() -> int:
    path = os.environ.get(TRAIN_LOG_ENV)
    if path:
        install_timer(path)
    from trustmesh.cli import main as trustmesh_main

    return trustmesh_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
