"""Registry and loaders of every registered dataset, on tiny files written by the tests.

KMNIST / EMNIST have no published md5s of their extracted files (registry ``raw_md5s=None``);
CIFAR-10 / SVHN are pinned to torchvision's md5s, so their tiny stand-ins are loaded through a
registry entry with the md5s removed (and the pinning itself is checked to reject them).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from cffbench.data import DATASETS, MAIN_DATASETS, default_data_root, get_dataset_info, load_splits
from cffbench.data import loading
from cffbench.errors import DataError
from test_data_files import write_cifar10, write_idx, write_idx_dataset, write_svhn

torch.set_num_threads(1)


def expected_features(images: np.ndarray, name: str) -> torch.Tensor:
    """``(N, C, H, W)`` uint8 -> ``(N, C*H*W)``: ``(p / 255 - mean_c) / std_c`` (independent float64)."""
    info = DATASETS[name]
    mean = np.array(info.mean).reshape(1, -1, 1, 1)
    std = np.array(info.std).reshape(1, -1, 1, 1)
    return torch.from_numpy(((images / 255.0 - mean) / std).reshape(len(images), -1)).float()


def row_multiset(x: torch.Tensor) -> list[bytes]:
    return sorted(row.numpy().round(4).tobytes() for row in x)


def unpinned(monkeypatch, name: str) -> None:
    monkeypatch.setitem(DATASETS, name, dataclasses.replace(DATASETS[name], raw_md5s=None))


# ------------------------------------------------------------------ registry
def test_main_datasets_are_registered_with_published_constants():
    assert MAIN_DATASETS == ("mnist", "fashion-mnist")
    assert (DATASETS["mnist"].mean, DATASETS["mnist"].std) == ((0.1307,), (0.3081,))
    assert (DATASETS["fashion-mnist"].mean, DATASETS["fashion-mnist"].std) == ((0.2860,), (0.3530,))
    assert DATASETS["mnist"].raw_md5s[0] == "6bbc9ace898e44ae57da46a324031adb"
    assert DATASETS["fashion-mnist"].raw_md5s[3] == "15d484375f8d13e6eb1aabb0c3f46965"


def test_registry_covers_the_contract_datasets_with_class_counts_and_feature_sizes():
    expected = {"mnist": (10, 784), "fashion-mnist": (10, 784), "kmnist": (10, 784),
                "emnist-balanced": (47, 784), "cifar10": (10, 3072), "svhn": (10, 3072)}
    assert {n: (i.n_classes, i.n_features) for n, i in DATASETS.items()} == expected
    for info in DATASETS.values():
        assert len(info.mean) == len(info.std) == info.image_shape[0]
        assert info.raw_md5s is None or len(info.raw_md5s) == len(info.raw_files)


def test_colour_dataset_md5s_are_the_ones_torchvision_publishes():
    from torchvision.datasets import CIFAR10, SVHN

    cifar = {name: md5 for name, md5 in CIFAR10.train_list + CIFAR10.test_list}
    cifar[CIFAR10.meta["filename"]] = CIFAR10.meta["md5"]
    assert dict(zip(DATASETS["cifar10"].raw_files, DATASETS["cifar10"].raw_md5s)) == cifar
    svhn = {SVHN.split_list[s][1]: SVHN.split_list[s][2] for s in ("train", "test")}
    assert dict(zip(DATASETS["svhn"].raw_files, DATASETS["svhn"].raw_md5s)) == svhn


def test_registry_entries_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DATASETS["mnist"].n_classes = 3


def test_unknown_dataset_error_lists_the_known_ones():
    with pytest.raises(DataError, match="known datasets: mnist, fashion-mnist, kmnist"):
        get_dataset_info("mnits")
    with pytest.raises(DataError, match="unknown dataset 'mnits'"):
        load_splits("mnits", Path("/nonexistent"))


def test_default_data_root_follows_env_then_dot_data(monkeypatch, tmp_path):
    monkeypatch.setenv("CFFBENCH_DATA", str(tmp_path))
    assert default_data_root() == tmp_path
    monkeypatch.delenv("CFFBENCH_DATA")
    assert default_data_root() == Path("data")


# ------------------------------------------------------------------ IDX datasets
def test_kmnist_loader_splits_and_normalises_tiny_idx_files(tmp_path):
    info = DATASETS["kmnist"]
    arrays = write_idx_dataset(tmp_path / "KMNIST" / "raw", info.raw_files, 60, 20, 10)
    splits = load_splits("kmnist", tmp_path)
    # 60 official training images -> min(10_000, 60 // 5) = 12 validation, 48 training
    assert (len(splits.y_train), len(splits.y_val), len(splits.y_test)) == (48, 12, 20)
    assert splits.x_train.dtype == torch.float32 and splits.y_train.dtype == torch.int64
    assert torch.allclose(splits.x_test, expected_features(arrays["test_images"][:, None], "kmnist"), atol=1e-5)
    assert splits.y_test.tolist() == arrays["test_labels"].tolist()
    all_train = expected_features(arrays["train_images"][:, None], "kmnist")
    assert row_multiset(torch.cat([splits.x_train, splits.x_val])) == row_multiset(all_train)


def test_emnist_balanced_images_are_transposed_upright_and_have_47_classes(tmp_path):
    info = DATASETS["emnist-balanced"]
    arrays = write_idx_dataset(tmp_path / "EMNIST" / "raw", info.raw_files, 94, 47, 47)
    splits = load_splits("emnist-balanced", tmp_path)
    upright = arrays["test_images"].transpose(0, 2, 1)[:, None]
    assert torch.allclose(splits.x_test, expected_features(upright, "emnist-balanced"), atol=1e-5)
    assert splits.n_classes == 47 and sorted(set(splits.y_test.tolist())) == list(range(47))


def test_labels_outside_the_class_range_are_a_data_error(tmp_path):
    info = DATASETS["kmnist"]
    raw = tmp_path / "KMNIST" / "raw"
    write_idx_dataset(raw, info.raw_files, 20, 10, 10)
    write_idx(raw / info.raw_files[3], np.full(10, 12, np.uint8))
    with pytest.raises(DataError, match=r"outside 0\.\.9"):
        load_splits("kmnist", tmp_path)


def test_undecodable_idx_file_is_a_one_line_data_error(tmp_path):
    info = DATASETS["kmnist"]
    raw = tmp_path / "KMNIST" / "raw"
    write_idx_dataset(raw, info.raw_files, 20, 10, 10)
    (raw / info.raw_files[0]).write_bytes(b"not an idx file")
    with pytest.raises(DataError, match="cannot decode") as err:
        load_splits("kmnist", tmp_path)
    assert "\n" not in str(err.value) and "cffbench data fetch kmnist" in str(err.value)


# ------------------------------------------------------------------ colour datasets
def test_cifar10_loader_flattens_colour_planes_to_3072_features(tmp_path, monkeypatch):
    arrays = write_cifar10(tmp_path, n_per_batch=8)
    unpinned(monkeypatch, "cifar10")
    splits = load_splits("cifar10", tmp_path)
    assert splits.n_features == 3072 and (len(splits.y_train), len(splits.y_val)) == (32, 8)
    test_images = arrays["test_rows"].reshape(-1, 3, 32, 32)  # rows are R, G, B planes
    assert torch.allclose(splits.x_test, expected_features(test_images, "cifar10"), atol=1e-5)
    assert splits.y_test.tolist() == arrays["test_labels"].tolist()
    all_train = expected_features(arrays["train_rows"].reshape(-1, 3, 32, 32), "cifar10")
    assert row_multiset(torch.cat([splits.x_train, splits.x_val])) == row_multiset(all_train)


def test_cifar10_md5_pinning_rejects_files_that_are_not_the_published_batches(tmp_path):
    write_cifar10(tmp_path, n_per_batch=2)
    with pytest.raises(DataError, match="data_batch_1 is corrupt or truncated"):
        load_splits("cifar10", tmp_path)


def test_svhn_loader_maps_label_10_to_digit_0_and_flattens_channels_first(tmp_path, monkeypatch):
    arrays = write_svhn(tmp_path, n_train=30, n_test=10)
    unpinned(monkeypatch, "svhn")
    splits = load_splits("svhn", tmp_path)
    assert splits.y_test.tolist() == arrays["test_labels"].tolist()
    assert 0 in splits.y_test.tolist() and 10 not in splits.y_test.tolist()
    assert torch.allclose(splits.x_test, expected_features(arrays["test_images"], "svhn"), atol=1e-5)


# ------------------------------------------------------------------ decoded-tensor cache
def test_cache_is_used_on_reload_and_invalidated_when_a_raw_file_changes(tmp_path, monkeypatch):
    info = DATASETS["kmnist"]
    raw = tmp_path / "KMNIST" / "raw"
    write_idx_dataset(raw, info.raw_files, 30, 10, 10)
    first = load_splits("kmnist", tmp_path)
    caches = list((tmp_path / ".cache").glob("kmnist-*.pt"))
    assert len(caches) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("raw files were decoded although the cache is valid")

    with monkeypatch.context() as patch:
        patch.setattr(loading, "_decode", no_decoding)
        again = load_splits("kmnist", tmp_path)
    assert torch.equal(again.x_train, first.x_train) and torch.equal(again.y_test, first.y_test)

    new_labels = np.full(10, 7, np.uint8)
    write_idx(raw / info.raw_files[3], new_labels)
    changed = load_splits("kmnist", tmp_path)
    assert changed.y_test.tolist() == [7] * 10
    remaining = list((tmp_path / ".cache").glob("kmnist-*.pt"))
    assert len(remaining) == 1 and remaining != caches


def test_damaged_cache_is_rebuilt_from_the_raw_files(tmp_path):
    info = DATASETS["kmnist"]
    arrays = write_idx_dataset(tmp_path / "KMNIST" / "raw", info.raw_files, 30, 10, 10)
    load_splits("kmnist", tmp_path)
    (cache,) = (tmp_path / ".cache").glob("kmnist-*.pt")
    cache.write_bytes(b"garbage")
    splits = load_splits("kmnist", tmp_path)
    assert splits.y_test.tolist() == arrays["test_labels"].tolist()


def test_registry_training_split_sizes_match_the_fixed_validation_rule():
    from cffbench.data import DATASETS
    from cffbench.data.splits import validation_split_indices

    sizes = {name: info.n_train_split for name, info in DATASETS.items()}
    assert sizes == {"mnist": 50000, "fashion-mnist": 50000, "kmnist": 50000,
                     "emnist-balanced": 102800, "cifar10": 40000, "svhn": 63257}
    for info in DATASETS.values():   # the same rule the loader applies to the real files
        train_idx, _ = validation_split_indices(info.n_official_train)
        assert len(train_idx) == info.n_train_split
