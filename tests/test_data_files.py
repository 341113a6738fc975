"""Writers of tiny raw dataset files in the published on-disk formats, and checks of the writers.

The writers follow the format specifications (IDX: LeCun's MNIST page; CIFAR-10: the "python
version" pickles on Krizhevsky's page; SVHN: the ``X`` (32, 32, 3, N) / ``y`` (N, 1) .mat layout
with label 10 for digit 0), not cffbench's code. Other test modules import them from here.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import scipy.io
import torch
from torchvision.datasets.mnist import read_image_file, read_label_file

torch.set_num_threads(1)


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX file of a uint8 array: magic ``0x0000 08 <ndim>``, big-endian int32 dims, raw bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


def tiny_images(n: int, channels: int, side: int, seed: int) -> np.ndarray:
    """``(n, channels, side, side)`` uint8 images drawn from a seeded numpy Generator."""
    return np.random.default_rng(seed).integers(0, 256, size=(n, channels, side, side), dtype=np.uint8)


def tiny_labels(n: int, n_classes: int) -> np.ndarray:
    """Balanced labels ``0, 1, ..., n_classes - 1, 0, 1, ...`` as uint8."""
    return (np.arange(n) % n_classes).astype(np.uint8)


def write_idx_dataset(raw_dir: Path, files: tuple[str, ...], n_train: int, n_test: int,
                      n_classes: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Write train/test images and labels (28x28) as four IDX files named ``files`` (registry order).

    Returns the arrays written: ``train_images (n, 28, 28)``, ``train_labels``, ``test_images``,
    ``test_labels``.
    """
    arrays = {
        "train_images": tiny_images(n_train, 1, 28, seed)[:, 0],
        "train_labels": tiny_labels(n_train, n_classes),
        "test_images": tiny_images(n_test, 1, 28, seed + 1)[:, 0],
        "test_labels": tiny_labels(n_test, n_classes)[::-1].copy(),
    }
    for name, array in zip(files, arrays.values()):
        write_idx(raw_dir / name, array)
    return arrays


def write_cifar10(root: Path, n_per_batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """CIFAR-10 python layout: ``data_batch_1..5`` and ``test_batch`` pickles, ``batches.meta``.

    Each batch is ``{"data": (n, 3072) uint8 rows, R then G then B planes, "labels": list}``.
    """
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    train_rows, train_labels = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        rows = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n_per_batch)]
        with open(folder / name, "wb") as fh:
            pickle.dump({"data": rows, "labels": labels, "batch_label": name}, fh)
        if name == "test_batch":
            test_rows, test_labels = rows, labels
        else:
            train_rows.append(rows)
            train_labels += labels
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, fh)
    return {"train_rows": np.vstack(train_rows), "train_labels": np.array(train_labels),
            "test_rows": test_rows, "test_labels": np.array(test_labels)}


def write_svhn(root: Path, n_train: int, n_test: int, seed: int = 0) -> dict[str, np.ndarray]:
    """SVHN cropped-digits layout: ``SVHN/{train,test}_32x32.mat`` with ``X`` (32, 32, 3, N) and
    ``y`` (N, 1) in 1..10, where 10 stands for digit 0. Returns images as (N, 3, 32, 32) and the
    digit labels 0..9."""
    folder = root / "SVHN"
    folder.mkdir(parents=True)
    out = {}
    for offset, (split, n) in enumerate((("train", n_train), ("test", n_test))):
        images = tiny_images(n, 3, 32, seed + offset)
        digits = (np.arange(n) % 10).astype(np.int64)
        stored = np.where(digits == 0, 10, digits).reshape(n, 1).astype(np.uint8)
        scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": images.transpose(2, 3, 1, 0), "y": stored})
        out[f"{split}_images"], out[f"{split}_labels"] = images, digits
    return out


def gzip_file(src: Path, dest: Path) -> None:
    """Gzip ``src`` into ``dest`` (as Debian ships Fashion-MNIST)."""
    dest.write_bytes(gzip.compress(src.read_bytes(), compresslevel=1))


# ------------------------------------------------------------------ checks of the writers
def test_idx_writer_round_trips_through_torchvisions_reader(tmp_path):
    images = tiny_images(5, 1, 28, seed=1)[:, 0]
    labels = tiny_labels(5, 3)
    write_idx(tmp_path / "img", images)
    write_idx(tmp_path / "lab", labels)
    assert torch.equal(read_image_file(str(tmp_path / "img")), torch.from_numpy(images))
    assert torch.equal(read_label_file(str(tmp_path / "lab")), torch.from_numpy(labels).long())


def test_idx_header_matches_mnist_spec(tmp_path):
    write_idx(tmp_path / "img", np.zeros((2, 28, 28), np.uint8))
    # LeCun's page: magic 2051 (0x00000803) for images, then 2, 28, 28 as big-endian int32.
    assert struct.unpack(">4I", (tmp_path / "img").read_bytes()[:16]) == (2051, 2, 28, 28)
