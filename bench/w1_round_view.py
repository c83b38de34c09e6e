"""One W1 round laid out in time, from a finished bench/w1.py run directory.

Every ledger event the run received (``events.jsonl``) and every participant's training start and
end, submission start and commit (``train/*.jsonl``), in milliseconds from the round's
``round-opened`` event until the next round opens. It shows where a round waits: which block
carried the submissions, how long the close and the attestation took, which participant started
training last.

    python bench/w1_round_view.py runs/bench-w1-<time>/mlp-iid 12
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

SHOWN_ATTRIBUTES = ("round", "task", "signer", "block_num", "submitted")


def _read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _opened_at(events: list[dict[str, Any]], round_no: int) -> float | None:
    return next((e["at"] for e in events if e["type"] == "federation/round-opened"
                 and e["attributes"].get("round") == str(round_no)), None)


def round_lines(events: list[dict[str, Any]], training: dict[str, list[dict[str, Any]]],
                round_no: int) -> list[tuple[float, str]]:
    """(milliseconds since round ``round_no`` opened, what happened), in time order.

    ``events``: the lines of events.jsonl; ``training``: participant name -> its train lines.
    """
    opened = _opened_at(events, round_no)
    if opened is None:
        raise ValueError(f"round {round_no} never opened in this run")
    following = _opened_at(events, round_no + 1)
    end = following if following is not None else max(e["at"] for e in events)
    rows: list[tuple[float, str]] = []
    for event in events:
        if opened <= event["at"] <= end:
            shown = {k: v[:8] for k, v in event["attributes"].items() if k in SHOWN_ATTRIBUTES}
            detail = " ".join(f"{k}={v}" for k, v in shown.items())
            rows.append((event["at"], f"{event['type']} {detail}".rstrip()))
    for name, lines in training.items():
        for line in lines:
            if int(line["round"]) != round_no:
                continue
            if "start" in line:
                rows += [(line["start"], f"{name}: training starts"), (line["end"], f"{name}: training ends")]
            if "submit_start" in line:
                rows += [(line["submit_start"], f"{name}: submission leaves"),
                         (line["committed"], f"{name}: submission committed")]
    return [((at - opened) * 1000.0, what) for at, what in sorted(rows, key=lambda row: row[0])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a configuration's directory of a bench/w1.py run")
    parser.add_argument("round", type=int, help="the round to lay out")
    args = parser.parse_args(argv)
    events_path = args.run_dir / "events.jsonl"
    if not events_path.exists():
        print(f"no {events_path}: runs of bench/w1.py since 2026-11-24 keep their events there", file=sys.stderr)
        return 2
    training = {path.stem: _read_lines(path) for path in sorted((args.run_dir / "train").glob("*.jsonl"))}
    try:
        lines = round_lines(_read_lines(events_path), training, args.round)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    for ms, what in lines:
        print(f"{ms:9.1f} ms  {what}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
