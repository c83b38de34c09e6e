"""Split a training set among participants: IID, Dirichlet(alpha) over labels, label shards.

Every partitioner is a pure function of (labels, indices, seed) returning one index array per
participant; ``client_partition`` gives one participant only its own rows. W1 fixes the recipes.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from trustmesh.errors import ConfigError
from trustmesh.fl.data import load_dataset

__all__ = [
    "SCHEMES",
    "DEFAULT_SEEDS",
    "iid",
    "dirichlet",
    "shards",
    "partition_indices",
    "client_partition",
    "label_table",
    "format_label_table",
]

SCHEMES = ("iid", "dirichlet", "shards")
DEFAULT_SEEDS = {"iid": 1, "dirichlet": 2, "shards": 3}  # W1 fixes iid=1 and dirichlet=2


def _check_n(n: int) -> None:
    if n < 1:
        raise ConfigError(f"number of participants must be >= 1, got {n}")


def iid(indices: np.ndarray, n: int, seed: int) -> list[np.ndarray]:
    """W1 IID: ``default_rng(seed).permutation(indices)`` cut into n (near-)equal parts."""
    _check_n(n)
    perm = np.random.default_rng(seed).permutation(np.asarray(indices))
    return list(np.array_split(perm, n))


def dirichlet(labels: np.ndarray, indices: np.ndarray, n: int, alpha: float, seed: int) -> list[np.ndarray]:
    """W1 non-IID: per class c (ascending), shuffle c's indices, draw p ~ Dir(alpha * ones(n)),
    cut at ``(cumsum(p) * n_c).astype(int)[:-1]``; participant k takes part k of every class.

    ``labels`` is indexed by the values in ``indices`` (labels of the whole dataset).
    """
    _check_n(n)
    if alpha <= 0:
        raise ConfigError(f"dirichlet alpha must be > 0, got {alpha}")
    indices = np.asarray(indices)
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    own_labels = labels[indices]
    parts: list[list[np.ndarray]] = [[] for _ in range(n)]
    for c in np.unique(own_labels):
        members = rng.permutation(indices[own_labels == c])
        p = rng.dirichlet(alpha * np.ones(n))
        cuts = (np.cumsum(p) * len(members)).astype(int)[:-1]
        for k, piece in enumerate(np.split(members, cuts)):
            parts[k].append(piece)
    return [np.concatenate(p) if p else indices[:0] for p in parts]


def shards(labels: np.ndarray, indices: np.ndarray, n: int, shards_per_client: int, seed: int) -> list[np.ndarray]:
    """Label shards (McMahan et al.): sort by label, cut into n*s shards, deal s random shards each."""
    _check_n(n)
    if shards_per_client < 1:
        raise ConfigError(f"shards_per_client must be >= 1, got {shards_per_client}")
    indices = np.asarray(indices)
    ordered = indices[np.argsort(np.asarray(labels)[indices], kind="stable")]
    pieces = np.array_split(ordered, n * shards_per_client)
    deal = np.random.default_rng(seed).permutation(len(pieces)).reshape(n, shards_per_client)
    return [np.concatenate([pieces[j] for j in row]) for row in deal]


def partition_indices(
    labels: np.ndarray,
    indices: np.ndarray,
    scheme: str,
    n: int,
    *,
    alpha: float = 0.5,
    shards_per_client: int = 2,
    seed: int | None = None,
) -> list[np.ndarray]:
    """Dispatch by scheme name with W1's default seeds."""
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown partition scheme {scheme!r}; known: {', '.join(SCHEMES)}")
    seed = DEFAULT_SEEDS[scheme] if seed is None else seed
    if scheme == "iid":
        return iid(indices, n, seed)
    if scheme == "dirichlet":
        return dirichlet(labels, indices, n, alpha, seed)
    return shards(labels, indices, n, shards_per_client, seed)


def client_partition(
    dataset_name: str,
    scheme: str,
    n: int,
    index: int,
    *,
    alpha: float = 0.5,
    shards_per_client: int = 2,
    seed: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Participant ``index``'s own training rows (X flat float32, y int64) — copies, nothing else."""
    if not 0 <= index < n:
        raise ConfigError(f"partition index {index} out of range for {n} participants")
    data = load_dataset(dataset_name)
    labels = np.zeros(int(data.train_indices.max()) + 1, dtype=np.int64)
    labels[data.train_indices] = data.y_train
    parts = partition_indices(
        labels, data.train_indices, scheme, n, alpha=alpha, shards_per_client=shards_per_client, seed=seed
    )
    rows = _rows_of(data.train_indices, parts[index])
    return data.x_train[rows].copy(), data.y_train[rows].copy()


def _rows_of(train_indices: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Positions in the train arrays of the given dataset indices, in the order given."""
    position = np.full(int(train_indices.max()) + 1, -1, dtype=np.int64)
    position[train_indices] = np.arange(len(train_indices))
    return position[wanted]


def label_table(parts: Sequence[np.ndarray], labels: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """Counts per participant (rows) and class (columns); ``labels`` indexed by the part values."""
    labels = np.asarray(labels)
    k = int(labels.max()) + 1 if num_classes is None else num_classes
    return np.stack([np.bincount(labels[np.asarray(p, dtype=np.int64)], minlength=k) for p in parts])


def format_label_table(table: np.ndarray) -> str:
    """A plain-text table: one row per participant, one column per class, and the row total."""
    k = table.shape[1]
    width = max(5, len(str(int(table.max(initial=0)))) + 1)
    head = "node " + "".join(f"{c:>{width}}" for c in range(k)) + f"{'total':>{width + 2}}"
    rows = [
        f"{i:>4} " + "".join(f"{int(v):>{width}}" for v in row) + f"{int(row.sum()):>{width + 2}}"
        for i, row in enumerate(table)
    ]
    return "\n".join([head, *rows])
