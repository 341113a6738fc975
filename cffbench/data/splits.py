"""The train / validation / test tensors one run trains and evaluates on.

* The official training set is split once into training and validation parts by a fixed
  permutation (``VALIDATION_SPLIT_SEED``), independent of the run seed: every run of a study sees
  the same 10k validation images. ``n_val = min(10_000, n_official_train // 5)``, i.e. the
  contract's 50k / 10k for MNIST and Fashion-MNIST.
* ``n_train`` draws a stratified subset of the training part with the run seed.
* Pixels are scaled per channel, ``x = (p / 255 - mean_c) / std_c``, and flattened.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cffbench.data.loading import load_raw
from cffbench.data.registry import (DatasetInfo, default_data_root, get_dataset_info,
                                     validation_size)
from cffbench.errors import DataError

VALIDATION_SPLIT_SEED = 2512_17531
"""Seed of the fixed train / validation permutation (the paper's arXiv id); never the run seed."""


@dataclass(frozen=True)
class Splits:
    """Normalised, flattened tensors of one dataset, all on the CPU.

    Shapes: ``x_*`` is ``(N, n_features)`` float32, ``y_*`` is ``(N,)`` int64 with values in
    ``[0, n_classes)``. ``x_train`` is the 50k training split (or its stratified ``n_train``
    subset), ``x_val`` the fixed 10k validation split carved from the official training set, and
    ``x_test`` the official test set.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])


def validation_split_indices(n_official_train: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed ``(train_idx, val_idx)`` partition of ``range(n_official_train)``, each sorted.

    ``len(val_idx) = min(10_000, n_official_train // 5)``. Uses the legacy
    ``numpy.random.RandomState`` because its stream is frozen across numpy versions, so the
    validation set never silently changes with an upgrade.
    """
    permutation = np.random.RandomState(VALIDATION_SPLIT_SEED).permutation(n_official_train)
    n_val = validation_size(n_official_train)
    val_idx = np.sort(permutation[:n_val])
    train_idx = np.sort(permutation[n_val:])
    return torch.from_numpy(train_idx).long(), torch.from_numpy(val_idx).long()


def stratified_subset_indices(labels: torch.Tensor, n: int, n_classes: int,
                              generator: torch.Generator) -> torch.Tensor:
    """Sorted indices of a class-balanced random subset of size ``n``.

    Each class gets ``n // n_classes`` items and ``n % n_classes`` randomly chosen classes one
    more, so counts differ by at most one; a class with too few items gives all it has and the
    shortfall goes to the classes with items to spare (only near ``n = len(labels)``).

    Parameters
    ----------
    labels : Tensor, shape (N,)
        int64 class labels in ``[0, n_classes)``.
    n : int
        Subset size, ``n_classes <= n <= N``.
    n_classes : int
        Number of classes.
    generator : torch.Generator
        Source of randomness (seeded with the run seed).
    """
    available = torch.bincount(labels, minlength=n_classes)
    quota = torch.full((n_classes,), n // n_classes, dtype=torch.int64)
    quota[torch.randperm(n_classes, generator=generator)[: n % n_classes]] += 1
    quota = torch.minimum(quota, available)
    while int(quota.sum()) < n:  # hand the shortfall to classes with spare items, one each round
        spare = torch.nonzero(quota < available).flatten()
        extra = spare[torch.randperm(len(spare), generator=generator)[: n - int(quota.sum())]]
        quota[extra] += 1
    chosen = []
    for cls in range(n_classes):
        members = torch.nonzero(labels == cls).flatten()
        chosen.append(members[torch.randperm(len(members), generator=generator)[: int(quota[cls])]])
    return torch.sort(torch.cat(chosen)).values


def normalise_images(images: torch.Tensor, info: DatasetInfo) -> torch.Tensor:
    """``(N, C, H, W)`` uint8 → ``(N, C*H*W)`` float32, ``x = (p / 255 - mean_c) / std_c``."""
    mean = torch.tensor(info.mean, dtype=torch.float64)
    std = torch.tensor(info.std, dtype=torch.float64)
    # One multiply-add pass, x = p * (1 / (255 std)) - mean / std: the bulk of a warm load.
    scale = (1.0 / (255.0 * std)).to(torch.float32).view(1, -1, 1, 1)
    shift = (-mean / std).to(torch.float32).view(1, -1, 1, 1)
    scaled = images.to(torch.float32).mul_(scale).add_(shift)
    return scaled.reshape(len(images), -1)


def load_splits(name: str, root: Path | None = None, n_train: int | None = None,
                seed: int = 0) -> Splits:
    """Load dataset ``name`` as normalised, flattened train / validation / test tensors.

    Parameters
    ----------
    name : str
        Registry key, e.g. ``"mnist"`` or ``"fashion-mnist"``.
    root : Path, optional
        Data root; default :func:`default_data_root` (``$CFFBENCH_DATA`` or ``./data``).
    n_train : int, optional
        Size of a stratified subset of the training split (``n_classes <= n_train <= 50_000``
        for MNIST); ``None`` keeps the whole training split.
    seed : int
        Run seed; only chooses the ``n_train`` subset.

    Returns
    -------
    Splits
        MNIST / Fashion-MNIST: 50 000 / 10 000 / 10 000 rows of 784 features.

    Raises
    ------
    DataError
        Unknown name; missing, corrupt or undecodable raw files; ``n_train`` out of range.
    """
    info = get_dataset_info(name)
    root = Path(root) if root is not None else default_data_root()
    raw = load_raw(info, root)
    train_idx, val_idx = validation_split_indices(len(raw.train_labels))
    if n_train is not None:
        if isinstance(n_train, bool) or not isinstance(n_train, (int, np.integer)) \
                or not info.n_classes <= n_train <= len(train_idx):
            raise DataError(f"{name}: n_train={n_train!r} is out of range; use an integer from "
                            f"{info.n_classes} (one per class) to {len(train_idx)} (the training split)")
        generator = torch.Generator().manual_seed(int(seed))
        train_idx = train_idx[stratified_subset_indices(raw.train_labels[train_idx], int(n_train),
                                                        info.n_classes, generator)]
    return Splits(
        name=name,
        x_train=normalise_images(raw.train_images[train_idx], info),
        y_train=raw.train_labels[train_idx].clone(),
        x_val=normalise_images(raw.train_images[val_idx], info),
        y_val=raw.train_labels[val_idx].clone(),
        x_test=normalise_images(raw.test_images, info),
        y_test=raw.test_labels.clone(),
        n_classes=info.n_classes,
    )
