"""bench/w1's round accounting: phases add up to the round, overhead is round minus slowest training,
and blocks are attributed to the round their transactions name."""
from __future__ import annotations

import pytest
from w1_timeline import PHASES, EventLog, Stamp, _round_of, round_timing

from trustmesh.contracts import cbor


def _log(stamps: list[tuple[float, str, dict[str, str]]]) -> EventLog:
    log = EventLog(client=None, workflow_id="wf")  # type: ignore[arg-type]  # never started
    log.stamps = [Stamp(at, kind, attrs) for at, kind, attrs in stamps]
    return log


def _r(n: int, **extra: str) -> dict[str, str]:
    return {"round": str(n), **extra}


ROUND_ONE = [
    (100.0, "federation/round-opened", _r(1)),
    (100.5, "sawtooth/block-commit", {"block_num": "5"}),
    (103.0, "iot-data/submitted", _r(1)),
    (104.0, "iot-data/submitted", _r(1)),
    (104.2, "federation/round-ready", _r(1)),
    (104.3, "federation/task-claimed", _r(1, task="aggregate")),
    (104.8, "federation/result-posted", _r(1)),
    (105.0, "federation/result-verified", _r(1)),
    (105.1, "federation/task-claimed", _r(1, task="evaluate")),
    (105.6, "federation/model-accepted", _r(1)),
    (105.7, "federation/round-opened", _r(2)),
    (105.7, "sawtooth/block-commit", {"block_num": "6"}),
]
TRAINING = [
    {"round": 1, "partition": 0, "start": 100.2, "end": 102.5, "seconds": 2.3},
    {"round": 1, "partition": 1, "start": 100.3, "end": 103.6, "seconds": 3.3},
]


def test_phases_sum_to_the_round_and_overhead_is_round_minus_slowest_training() -> None:
    timing = round_timing(_log(ROUND_ONE), 1, TRAINING)
    assert timing["seconds"] == pytest.approx(5.7)
    assert sum(timing["phases"][p] for p in PHASES) == pytest.approx(timing["seconds"])
    assert timing["phases"]["submissions"] == pytest.approx(4.0)
    assert timing["phases"]["open_next"] == pytest.approx(0.1)
    assert timing["slowest_train_s"] == pytest.approx(3.3)
    assert timing["overhead_s"] == pytest.approx(5.7 - 3.3)
    assert timing["dispatch_s"] == pytest.approx(0.3)
    assert timing["submit_tail_s"] == pytest.approx(0.4)
    assert timing["blocks"] == 2 and timing["includes_next_open"]


def test_last_round_ends_at_its_verdict_and_other_rounds_are_ignored() -> None:
    stamps = [s for s in ROUND_ONE if s[2].get("round") != "2"]
    stamps.append((200.0, "federation/model-accepted", _r(7)))
    timing = round_timing(_log(stamps), 1, TRAINING)
    assert timing["seconds"] == pytest.approx(5.6)
    assert timing["phases"]["open_next"] is None and not timing["includes_next_open"]


def test_transactions_name_their_round() -> None:
    opened = cbor.encode({"schema_version": 1, "action": "open_round", "round": 3, "workflow_id": "wf"})
    submitted = cbor.encode({"schema_version": 1, "round": 4, "workflow_id": "wf", "num_samples": 1})
    assert _round_of("federation", opened) == (3, "open_round")
    assert _round_of("iot-data", submitted) == (4, "submit")
    assert _round_of("block_info", b"\x0a\x01") == (None, "block_info")
    assert _round_of("federation", b"not cbor") == (None, "federation")
