"""W1 data split and the partitioners: deterministic, disjoint, covering, W1's exact recipes."""
from __future__ import annotations

import numpy as np
import pytest

from trustmesh.errors import ConfigError
from trustmesh.fl.data import load_digits_dataset, load_w1
from trustmesh.fl.partition import (
    SCHEMES,
    client_partition,
    dirichlet,
    format_label_table,
    iid,
    label_table,
    partition_indices,
    shards,
)
from trustmesh.fl.plots import label_heatmap


@pytest.fixture(scope="module")
def w1():
    return load_w1()


@pytest.fixture(scope="module")
def labels(w1):
    out = np.empty(5000, dtype=np.int64)
    out[w1.train_indices] = w1.y_train
    out[w1.test_indices] = w1.y_test
    return out


def test_w1_split(w1):
    assert w1.x_train.shape == (4000, 784) and w1.x_test.shape == (1000, 784)
    assert w1.x_train.dtype == np.float32 and w1.y_train.dtype == np.int64
    assert 0.0 <= w1.x_train.min() and w1.x_train.max() == 1.0
    perm = np.random.default_rng(0).permutation(5000)
    np.testing.assert_array_equal(w1.train_indices, perm[:4000])
    np.testing.assert_array_equal(w1.test_indices, perm[4000:])
    assert np.bincount(np.concatenate([w1.y_train, w1.y_test])).tolist() == [500] * 10
    assert w1.as_images().x_train.shape == (4000, 1, 28, 28)
    assert w1.as_images().flat().x_test.shape == (1000, 784)
    assert not w1.x_train.flags.writeable  # the cached arrays cannot be altered by a caller


def test_digits_dataset():
    d = load_digits_dataset()
    assert d.x_train.shape[1] == 64 and len(d.x_train) + len(d.x_test) == 1797
    assert d.x_train.max() <= 1.0 and d.as_images().x_train.shape[1:] == (1, 8, 8)


def check_partition(parts, indices):
    joined = np.concatenate(parts)
    assert len(joined) == len(indices) == len(np.unique(joined))  # disjoint
    assert set(joined.tolist()) == set(np.asarray(indices).tolist())  # covering


@pytest.mark.parametrize("scheme", SCHEMES)
def test_partitions_are_deterministic_disjoint_covering(scheme, w1, labels):
    parts = partition_indices(labels, w1.train_indices, scheme, 10)
    again = partition_indices(labels, w1.train_indices, scheme, 10)
    assert len(parts) == 10
    check_partition(parts, w1.train_indices)
    for a, b in zip(parts, again, strict=True):
        np.testing.assert_array_equal(a, b)
    other = partition_indices(labels, w1.train_indices, scheme, 10, seed=99)
    assert any(not np.array_equal(a, b) for a, b in zip(parts, other, strict=True))


def test_w1_iid_recipe(w1):
    parts = iid(w1.train_indices, 10, 1)
    perm = np.random.default_rng(1).permutation(w1.train_indices)
    for k, part in enumerate(parts):
        np.testing.assert_array_equal(part, perm[400 * k : 400 * (k + 1)])


def test_w1_dirichlet_recipe(w1, labels):
    parts = dirichlet(labels, w1.train_indices, 10, 0.5, 2)
    rng = np.random.default_rng(2)
    expected = [[] for _ in range(10)]
    for c in range(10):
        members = w1.train_indices[labels[w1.train_indices] == c]
        rng.shuffle(members)
        p = rng.dirichlet(0.5 * np.ones(10))
        for k, piece in enumerate(np.split(members, (np.cumsum(p) * len(members)).astype(int)[:-1])):
            expected[k].extend(piece.tolist())
    assert [p.tolist() for p in parts] == expected
    table = label_table(parts, labels)
    assert table.sum() == 4000 and (table.max(axis=0) > table.sum(axis=0) / 10).all()  # skewed


def test_shards_give_few_labels_each(w1, labels):
    parts = shards(labels, w1.train_indices, 10, 2, 3)
    table = label_table(parts, labels)
    assert ((table > 0).sum(axis=1) <= 4).all()


def test_client_partition_returns_only_its_rows(w1, labels):
    parts = partition_indices(labels, w1.train_indices, "dirichlet", 10)
    x, y = client_partition("mnist", "dirichlet", 10, 4)
    assert len(x) == len(parts[4]) and x.dtype == np.float32
    row_of = {int(idx): row for row, idx in enumerate(w1.train_indices)}
    rows = [row_of[int(i)] for i in parts[4]]
    np.testing.assert_array_equal(x, w1.x_train[rows])
    np.testing.assert_array_equal(y, labels[parts[4]])
    with pytest.raises(ConfigError):
        client_partition("mnist", "iid", 10, 10)
    with pytest.raises(ConfigError):
        client_partition("mnist", "nope", 10, 0)


def test_label_table_text_and_png(tmp_path, w1, labels):
    parts = partition_indices(labels, w1.train_indices, "iid", 4)
    table = label_table(parts, labels)
    assert table.shape == (4, 10) and table.sum(axis=1).tolist() == [1000] * 4
    text = format_label_table(table)
    assert text.splitlines()[0].split()[0] == "node" and len(text.splitlines()) == 5
    png = label_heatmap(table, tmp_path / "labels.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
