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


def main(argv: list[str] | None = None) -> int:
    """``python -m trustmesh.fl.plots``: print a partition's label table and write its heat map."""
    import argparse

    from trustmesh.fl.data import load_dataset
    from trustmesh.fl.partition import SCHEMES, format_label_table, label_table, partition_indices

    parser = argparse.ArgumentParser(prog="python -m trustmesh.fl.plots", description=main.__doc__)
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--scheme", default="dirichlet", choices=SCHEMES)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--shards-per-client", type=int, default=2)
    parser.add_argument("--seed", type=int, default=None, help="default: W1's seed for the scheme")
    parser.add_argument("--png", default=None, help="write the heat map here")
    args = parser.parse_args(argv)
    data = load_dataset(args.dataset)
    labels = np.zeros(int(data.train_indices.max()) + 1, dtype=np.int64)
    labels[data.train_indices] = data.y_train
    parts = partition_indices(labels, data.train_indices, args.scheme, args.clients, alpha=args.alpha,
                              shards_per_client=args.shards_per_client, seed=args.seed)
    table = label_table(parts, labels, data.num_classes)
    print(format_label_table(table))
    if args.png:
        label_heatmap(table, args.png, title=f"{args.dataset} {args.scheme}, {args.clients} participants")
        print(f"heat map: {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
