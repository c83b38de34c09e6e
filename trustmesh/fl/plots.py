"""Pictures of FL runs: a partition's label heat map and accuracy curves (PNG, headless)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = ["label_heatmap", "accuracy_curves"]


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def label_heatmap(table: np.ndarray, path: str | Path, *, title: str = "labels per participant") -> Path:
    """Write a heat map of a ``label_table`` (participants x classes, counts in the cells)."""
    plt = _pyplot()
    rows, cols = table.shape
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * cols, 1.0 + 0.45 * rows))
    image = ax.imshow(table, cmap="viridis", aspect="auto")
    ax.set_xticks(range(cols))
    ax.set_yticks(range(rows))
    ax.set_xlabel("class")
    ax.set_ylabel("participant")
    ax.set_title(title)
    threshold = table.max(initial=0) / 2
    for i in range(rows):
        for j in range(cols):
            color = "black" if table[i, j] > threshold else "white"
            ax.text(j, i, str(int(table[i, j])), ha="center", va="center", fontsize=7, color=color)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def accuracy_curves(
    curves: Mapping[str, Sequence[float]], path: str | Path, *, xlabel: str = "round", title: str = ""
) -> Path:
    """Write one accuracy line per named series (x = 1..len)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, values in curves.items():
        ax.plot(range(1, len(values) + 1), values, marker=".", label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
