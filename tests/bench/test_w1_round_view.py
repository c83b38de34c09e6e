"""bench/w1_round_view.py: a round's events and participants' training, in ms from its opening."""
from __future__ import annotations

import json

import pytest
from w1_round_view import main, round_lines
from w1_timeline import EventLog, Stamp


def _event(at, kind, **attributes):
    return {"at": at, "type": kind, "attributes": attributes}


EVENTS = [
    _event(9.9, "iot-data/submitted", round="1", signer="02aa", submitted="2"),
    _event(10.0, "federation/round-opened", round="2"),
    _event(10.35, "iot-data/submitted", round="2", signer="03bbccddeeff", submitted="1"),
    _event(10.5, "federation/result-posted", round="2"),
    _event(10.6, "federation/round-opened", round="3"),
    _event(10.9, "iot-data/submitted", round="3", signer="02cc", submitted="1"),
]
TRAINING = {"participant-0": [
    {"round": 2, "start": 10.05, "end": 10.25},
    {"round": 2, "submit_start": 10.3, "committed": 10.35},
    {"round": 3, "start": 10.62, "end": 10.8},
]}


def test_a_round_runs_from_its_opening_to_the_next_in_time_order():
    lines = round_lines(EVENTS, TRAINING, 2)
    assert [what for _, what in lines] == [
        "federation/round-opened round=2",
        "participant-0: training starts",
        "participant-0: training ends",
        "participant-0: submission leaves",
        "iot-data/submitted round=2 signer=03bbccdd submitted=1",
        "participant-0: submission committed",
        "federation/result-posted round=2",
        "federation/round-opened round=3",
    ]
    assert [round(ms) for ms, _ in lines] == [0, 50, 250, 300, 350, 350, 500, 600]


def test_a_round_that_never_opened_is_an_error():
    with pytest.raises(ValueError, match="round 7 never opened"):
        round_lines(EVENTS, TRAINING, 7)


def test_the_command_reads_what_the_bench_saved(tmp_path, capsys):
    log = EventLog(client=None, workflow_id="wf")  # type: ignore[arg-type]  # never started
    log.stamps = [Stamp(e["at"], e["type"], e["attributes"]) for e in EVENTS]
    log.save(tmp_path / "events.jsonl")
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "participant-0.jsonl").write_text(
        "".join(json.dumps(line) + "\n" for line in TRAINING["participant-0"]))
    assert main([str(tmp_path), "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["0.0", "ms", "federation/round-opened", "round=3"]
    assert "participant-0: training ends" in out[2] and out[2].split()[0] == "200.0"
    assert main([str(tmp_path / "missing"), "3"]) == 2
