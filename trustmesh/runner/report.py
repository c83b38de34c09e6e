"""What a finished run leaves in ``runs/<run-id>/``: the round table (JSON and CSV), an
accuracy/loss plot (PNG) and the final model (safetensors)."""
from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from trustmesh.contracts.records import RoundRecord, SubmissionIndex


@dataclass(frozen=True)
class RoundRow:
    round: int
    schedule_id: str
    status: str
    participants: int
    included: int
    excluded: int
    accuracy: float | None
    loss: float | None
    seconds: float | None
    model_hash: str | None


def round_row(record: RoundRecord, index: SubmissionIndex | None, seconds: float | None) -> RoundRow:
    result, evaluation = record.result, record.evaluation
    return RoundRow(
        round=record.round,
        schedule_id=record.schedule_id,
        status=record.status,
        participants=len(index.entries) if index else 0,
        included=len(result.included) if result else 0,
        excluded=len(result.excluded) if result else 0,
        accuracy=evaluation.accuracy if evaluation else None,
        loss=evaluation.loss if evaluation else None,
        seconds=round(seconds, 3) if seconds is not None else None,
        model_hash=result.model_hash if result else None,
    )


def write_tables(rows: list[RoundRow], run_dir: Path) -> tuple[Path, Path]:
    json_path, csv_path = run_dir / "rounds.json", run_dir / "rounds.csv"
    json_path.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(RoundRow.__dataclass_fields__))
        writer.writeheader()
        for row in rows:
            writer.writerow(asdict(row))
    return json_path, csv_path


def plot_rounds(rows: list[RoundRow], path: Path, *, title: str) -> Path | None:
    """Accuracy and loss per round, as a PNG; None when no round was evaluated."""
    points = [r for r in rows if r.accuracy is not None]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax_acc = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    xs = [r.round for r in points]
    ax_acc.plot(xs, [float(r.accuracy or 0.0) for r in points], marker="o", color="tab:blue", label="test accuracy")
    ax_acc.set_xlabel("round")
    ax_acc.set_ylabel("test accuracy", color="tab:blue")
    ax_acc.set_ylim(0.0, 1.0)
    ax_acc.set_xticks(xs)
    if any(r.loss is not None for r in points):
        ax_loss = ax_acc.twinx()
        ax_loss.plot(xs, [float("nan") if r.loss is None else r.loss for r in points], marker="s", color="tab:red", label="test loss")
        ax_loss.set_ylabel("test loss", color="tab:red")
    ax_acc.set_title(title)
    ax_acc.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
