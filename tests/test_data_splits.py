"""Train / validation / test splits: the stratified subset on synthetic labels, the rest on the
real MNIST and Fashion-MNIST files (compared with torchvision's own reader as independent truth)."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torchvision.datasets import MNIST

from cffbench.data import load_splits
from cffbench.data.splits import stratified_subset_indices, validation_split_indices
from cffbench.errors import DataError

torch.set_num_threads(1)


def row_keys(x: torch.Tensor) -> Counter:
    return Counter(row.numpy().tobytes() for row in x)


# ------------------------------------------------------------------ no data needed
def test_validation_split_is_a_fixed_partition_of_the_official_training_set():
    train_idx, val_idx = validation_split_indices(60_000)
    assert (len(train_idx), len(val_idx)) == (50_000, 10_000)
    assert torch.equal(torch.sort(torch.cat([train_idx, val_idx])).values, torch.arange(60_000))
    again_train, again_val = validation_split_indices(60_000)
    assert torch.equal(again_val, val_idx) and torch.equal(again_train, train_idx)


def test_stratified_subset_has_equal_class_counts_within_one():
    labels = torch.arange(5_000) % 10
    indices = stratified_subset_indices(labels, 1_003, 10, torch.Generator().manual_seed(0))
    counts = torch.bincount(labels[indices], minlength=10)
    assert len(indices) == len(set(indices.tolist())) == 1_003
    assert int(counts.max() - counts.min()) <= 1 and int(counts.sum()) == 1_003


def test_stratified_subset_gives_a_short_class_all_it_has_and_fills_up_from_the_others():
    labels = torch.cat([torch.zeros(3, dtype=torch.long), torch.ones(50, dtype=torch.long),
                        torch.full((50,), 2, dtype=torch.long)])
    indices = stratified_subset_indices(labels, 30, 3, torch.Generator().manual_seed(1))
    assert torch.bincount(labels[indices], minlength=3).tolist()[0] == 3
    assert len(set(indices.tolist())) == 30


def test_stratified_subset_depends_on_the_seed_only():
    labels = torch.arange(5_000) % 10

    def draw(seed):
        return stratified_subset_indices(labels, 500, 10, torch.Generator().manual_seed(seed))

    assert torch.equal(draw(3), draw(3))
    assert not torch.equal(draw(3), draw(4))


# ------------------------------------------------------------------ real data
@pytest.fixture(scope="module")
def mnist(data_root):
    return load_splits("mnist", data_root)


@pytest.mark.data
def test_mnist_splits_have_contract_sizes_and_dtypes(mnist):
    assert (len(mnist.y_train), len(mnist.y_val), len(mnist.y_test)) == (50_000, 10_000, 10_000)
    assert mnist.x_train.shape == (50_000, 784) and mnist.n_features == 784 and mnist.n_classes == 10
    assert mnist.x_train.dtype == torch.float32 and mnist.y_train.dtype == torch.int64


@pytest.mark.data
def test_mnist_train_and_val_partition_the_official_training_set_and_test_is_official(mnist, data_root):
    official_train = MNIST(str(data_root), train=True, download=False)
    official_test = MNIST(str(data_root), train=False, download=False)

    def normalise(images):
        return ((images.float() / 255 - 0.1307) / 0.3081).reshape(len(images), -1)

    assert torch.allclose(mnist.x_test, normalise(official_test.data), atol=1e-5)
    assert torch.equal(mnist.y_test, official_test.targets)
    def rows_with_label(pixels, labels):
        table = torch.cat([pixels.reshape(len(pixels), -1), labels.to(torch.uint8)[:, None]], 1)
        return Counter(row.tobytes() for row in table.numpy())

    def pixels_of(x):  # invert the normalisation back to the exact uint8 pixels
        return torch.round((x * 0.3081 + 0.1307) * 255).to(torch.uint8)

    split_rows = (rows_with_label(pixels_of(mnist.x_train), mnist.y_train)
                  + rows_with_label(pixels_of(mnist.x_val), mnist.y_val))
    official_rows = rows_with_label(official_train.data, official_train.targets)
    assert split_rows == official_rows


@pytest.mark.data
def test_mnist_train_and_val_rows_are_disjoint_as_index_sets(mnist, data_root):
    train_idx, val_idx = validation_split_indices(60_000)
    assert not set(train_idx.tolist()) & set(val_idx.tolist())
    official = MNIST(str(data_root), train=True, download=False)
    assert torch.equal(mnist.y_val, official.targets[val_idx])


@pytest.mark.data
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_normalisation_gives_zero_mean_unit_std_on_the_training_split(name, data_root, mnist):
    splits = mnist if name == "mnist" else load_splits(name, data_root)
    assert abs(float(splits.x_train.mean())) < 0.01
    assert abs(float(splits.x_train.std()) - 1.0) < 0.01


@pytest.mark.data
def test_validation_split_does_not_depend_on_the_run_seed(data_root, mnist):
    other = load_splits("mnist", data_root, n_train=1_000, seed=7)
    assert torch.equal(other.x_val, mnist.x_val) and torch.equal(other.x_test, mnist.x_test)


@pytest.mark.data
def test_n_train_subset_is_stratified_seeded_and_inside_the_training_split(data_root, mnist):
    first = load_splits("mnist", data_root, n_train=1_005, seed=1)
    same = load_splits("mnist", data_root, n_train=1_005, seed=1)
    other = load_splits("mnist", data_root, n_train=1_005, seed=2)
    counts = torch.bincount(first.y_train, minlength=10)
    assert len(first.y_train) == 1_005 and int(counts.max() - counts.min()) <= 1
    assert torch.equal(first.x_train, same.x_train)
    assert not torch.equal(first.x_train, other.x_train)
    train_rows = row_keys(mnist.x_train)
    assert all(train_rows[key] > 0 for key in row_keys(first.x_train))


@pytest.mark.data
@pytest.mark.parametrize("n_train", [9, 50_001, 0, 2.5])
def test_n_train_outside_classes_to_50k_is_a_data_error(data_root, n_train):
    with pytest.raises(DataError, match="n_train=.* is out of range; use an integer from 10 .* to 50000"):
        load_splits("mnist", data_root, n_train=n_train)
