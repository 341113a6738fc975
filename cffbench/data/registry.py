"""The dataset registry: what each dataset is, where its raw files live, and their md5 sums.

Layout under a data root (what ``torchvision.datasets`` reads with ``download=False``)::

    root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte
    root/FashionMNIST/raw/...           root/KMNIST/raw/...
    root/EMNIST/raw/emnist-balanced-{train,test}-{images-idx3,labels-idx1}-ubyte
    root/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}
    root/SVHN/{train,test}_32x32.mat
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cffbench import extensions
from cffbench.errors import DataError

MAIN_DATASETS: tuple[str, ...] = ("mnist", "fashion-mnist")
"""The datasets the NetworkFF claim is tested on; ``cffbench data fetch`` fetches these."""

DATA_ROOT_ENV = "CFFBENCH_DATA"

#: The fixed validation split takes ``min(MAX_VALIDATION_SIZE, n_official_train // 5)`` images.
MAX_VALIDATION_SIZE = 10_000


def validation_size(n_official_train: int) -> int:
    """Images the fixed validation split takes from an official training set of this size."""
    return min(MAX_VALIDATION_SIZE, n_official_train // 5)


@dataclass(frozen=True, kw_only=True)
class DatasetInfo:
    """One registered image-classification dataset.

    Attributes
    ----------
    name : str
        Registry key, e.g. ``"fashion-mnist"``.
    torchvision_class : str
        Name of the class in ``torchvision.datasets`` that reads (and downloads) it; ``""`` for a
        dataset with its own :attr:`decode`.
    mean, std : tuple of float
        Per-channel statistics of the pixel values scaled to ``[0, 1]``; a loaded pixel
        ``p`` in channel ``c`` becomes ``(p / 255 - mean[c]) / std[c]``.
    n_classes : int
        Number of labels; labels are ``0 .. n_classes - 1``.
    image_shape : tuple of int
        ``(channels, height, width)``; flattened features ``n_features = C * H * W``.
    raw_dir : str
        Folder of the raw files, relative to the data root.
    raw_files : tuple of str
        Raw file names in ``raw_dir`` (for IDX datasets in the order train-images,
        train-labels, test-images, test-labels).
    raw_md5s : tuple of str or None
        md5 of each raw file, in the order of ``raw_files``; ``None`` where no published md5
        of the extracted files exists (then only presence and parseability are checked, and
        the decoded-tensor cache is keyed by the md5s actually found).
    torchvision_kwargs : tuple of (str, object) pairs
        Extra constructor arguments, e.g. ``(("split", "balanced"),)`` for EMNIST.
    torchvision_subdir : str
        Folder, relative to the data root, passed to torchvision as its ``root``.
    n_official_train : int
        Size of the official training set (0 if unknown); the training split is what is left
        after the fixed validation split (:attr:`n_train_split`).
    n_official_test : int
        Size of the official test set.
    decode : callable or None
        A dataset's own reader instead of torchvision's (a plugin dataset's):
        ``decode(raw_dir) -> (train_images, train_labels, test_images, test_labels)`` with images
        ``(N, C, H, W)`` uint8 and labels ``(N,)`` int64 tensors, from the verified raw files in
        ``raw_dir`` (the data root's ``raw_dir`` folder). Its output is checked like torchvision's.
    fetch : callable or None
        A dataset's own download (``cffbench data fetch``): ``fetch(info, staging)`` puts the raw
        files under ``staging / raw_dir``; they are then md5-checked. ``None`` with a
        ``torchvision_class``: torchvision's download; ``None`` without one: the files are placed
        by hand.
    """

    name: str
    torchvision_class: str = ""
    mean: tuple[float, ...]
    std: tuple[float, ...]
    n_classes: int
    image_shape: tuple[int, int, int]
    raw_dir: str
    raw_files: tuple[str, ...]
    raw_md5s: tuple[str, ...] | None = None
    torchvision_kwargs: tuple[tuple[str, object], ...] = ()
    torchvision_subdir: str = ""
    n_official_train: int = 0
    n_official_test: int = 10_000
    decode: Callable[[Path], tuple] | None = None
    fetch: Callable[["DatasetInfo", Path], None] | None = None

    @property
    def n_train_split(self) -> int | None:
        """Size of the training split (official train minus ``min(10000, n // 5)`` validation
        images), i.e. the largest ``n_train``; None if the official size is unknown."""
        if not self.n_official_train:
            return None
        return self.n_official_train - validation_size(self.n_official_train)

    @property
    def n_features(self) -> int:
        """Length of a flattened image, ``C * H * W``."""
        channels, height, width = self.image_shape
        return channels * height * width

    def raw_paths(self, root: Path) -> list[Path]:
        """Absolute paths of the raw files under ``root``, in the order of ``raw_files``."""
        return [Path(root) / self.raw_dir / f for f in self.raw_files]


_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


# md5s of the extracted CIFAR-10 batches and SVHN .mat files as torchvision 0.29 publishes them
# (CIFAR10.train_list / test_list / meta, SVHN.split_list); copied so that the registry does not
# import torchvision, and pinned to torchvision's values by a test.
_CIFAR10_MD5S = ("c99cafc152244af753f735de768cd75f", "d4bba439e000b95fd0a9bffe97cbabec",
                 "54ebc095f3ab1f0389bbae665268c751", "634d18415352ddfa80567beed471001a",
                 "482c414d41f54cd18b22e5b47cb7c3cb", "40351d587109b95175f43aff81a1287e",
                 "5ff9c542aee3614f3951f8cda6e48888")
_SVHN_MD5S = ("e26dedcc434d2e4c54c9b2d4a06d8373", "eb5a983be6a315427106f1b164d9cef3")


_BUILTIN_DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        name="mnist", torchvision_class="MNIST", mean=(0.1307,), std=(0.3081,), n_classes=10,
        image_shape=(1, 28, 28), raw_dir="MNIST/raw", raw_files=_IDX_FILES,
        raw_md5s=("6bbc9ace898e44ae57da46a324031adb", "a25bea736e30d166cdddb491f175f624",
                  "2646ac647ad5339dbf082846283269ea", "27ae3e4e09519cfbb04c329615203637"),
        n_official_train=60000,
    ),
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist", torchvision_class="FashionMNIST", mean=(0.2860,), std=(0.3530,),
        n_classes=10, image_shape=(1, 28, 28), raw_dir="FashionMNIST/raw", raw_files=_IDX_FILES,
        raw_md5s=("f4a8712d7a061bf5bd6d2ca38dc4d50a", "9018921c3c673c538a1fc5bad174d6f9",
                  "8181f5470baa50b63fa0f6fddb340f0a", "15d484375f8d13e6eb1aabb0c3f46965"),
        n_official_train=60000,
    ),
    # The constants below are the values commonly used with these datasets, not measured here.
    "kmnist": DatasetInfo(
        name="kmnist", torchvision_class="KMNIST", mean=(0.1918,), std=(0.3483,), n_classes=10,
        image_shape=(1, 28, 28), raw_dir="KMNIST/raw", raw_files=_IDX_FILES,
        n_official_train=60000,
    ),
    "emnist-balanced": DatasetInfo(
        name="emnist-balanced", torchvision_class="EMNIST", mean=(0.1751,), std=(0.3332,),
        n_classes=47, image_shape=(1, 28, 28), raw_dir="EMNIST/raw",
        raw_files=("emnist-balanced-train-images-idx3-ubyte", "emnist-balanced-train-labels-idx1-ubyte",
                   "emnist-balanced-test-images-idx3-ubyte", "emnist-balanced-test-labels-idx1-ubyte"),
        torchvision_kwargs=(("split", "balanced"),),
        n_official_train=112800, n_official_test=18800,
    ),
    "cifar10": DatasetInfo(
        name="cifar10", torchvision_class="CIFAR10", mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616), n_classes=10, image_shape=(3, 32, 32),
        raw_dir="cifar-10-batches-py",
        raw_files=tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta"),
        raw_md5s=_CIFAR10_MD5S,
        n_official_train=50000,
    ),
    "svhn": DatasetInfo(
        name="svhn", torchvision_class="SVHN", mean=(0.4377, 0.4438, 0.4728),
        std=(0.1980, 0.2010, 0.1970), n_classes=10, image_shape=(3, 32, 32), raw_dir="SVHN",
        raw_files=("train_32x32.mat", "test_32x32.mat"), raw_md5s=_SVHN_MD5S,
        torchvision_subdir="SVHN",
        n_official_train=73257, n_official_test=26032,
    ),
}


for _info in _BUILTIN_DATASETS.values():
    extensions.DATASETS.register(_info, builtin=True)

#: Every registered dataset by name: the built-ins above, then any a plugin registers
#: (:data:`cffbench.extensions.DATASETS`; a mapping, in registration order).
DATASETS = extensions.DATASETS


def get_dataset_info(name: str) -> DatasetInfo:
    """Registry entry of ``name``; an unknown name raises :class:`DataError` listing the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(DATASETS)
        raise DataError(f"unknown dataset {name!r}; known datasets: {known}") from None


def default_data_root() -> Path:
    """The data root: ``$CFFBENCH_DATA`` when set and non-empty, else ``./data``."""
    env = os.environ.get(DATA_ROOT_ENV, "").strip()
    return Path(env) if env else Path("data")
