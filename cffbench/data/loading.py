"""Decoding verified raw files into uint8 tensors, through ``torchvision.datasets`` (or a plugin
dataset's own ``decode``), with a cache.

The decoded tensors are cached in ``root/.cache/<name>-<key>.pt`` where ``key`` is derived from
the md5s of the raw files, so a changed raw file can never be served from a stale cache. The
cache is written atomically (temp file + rename); an unreadable cache is simply rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cffbench.data.integrity import CACHE_DIR, atomic_write_bytes, fetch_hint, raw_file_md5s
from cffbench.data.registry import DatasetInfo
from cffbench.errors import DataError

CACHE_FORMAT = 1  # bump when the cached payload changes meaning


@dataclass(frozen=True)
class RawImages:
    """Official train and test sets of one dataset as decoded, before splitting or scaling.

    Shapes: ``train_images`` ``(N_train, C, H, W)`` uint8, ``train_labels`` ``(N_train,)`` int64,
    and likewise for the test set.
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


def _torchvision_split(info: DatasetInfo, root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Read one official split with torchvision (``download=False``); images as (N, C, H, W)."""
    import torchvision.datasets as tvd

    tv_root = root / info.torchvision_subdir
    kwargs = dict(info.torchvision_kwargs)
    if info.torchvision_class == "CIFAR10":
        # Integrity was checked by raw_file_md5s (or, unpinned, deliberately not); skip
        # torchvision's second full md5 pass over 170 MB.
        class _CIFAR10Checked(tvd.CIFAR10):
            meta = {**tvd.CIFAR10.meta, "md5": None}

            def _check_integrity(self) -> bool:
                return True

        ds = _CIFAR10Checked(tv_root, train=train, download=False)
        images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
        return images, torch.as_tensor(ds.targets, dtype=torch.int64)
    if info.torchvision_class == "SVHN":
        class _SVHNChecked(tvd.SVHN):
            def _check_integrity(self) -> bool:
                return True

        ds = _SVHNChecked(tv_root, split="train" if train else "test", download=False)
        return torch.from_numpy(np.ascontiguousarray(ds.data)), torch.as_tensor(ds.labels, dtype=torch.int64)
    ds = getattr(tvd, info.torchvision_class)(tv_root, train=train, download=False, **kwargs)
    images = ds.data
    if info.torchvision_class == "EMNIST":
        images = images.transpose(1, 2)  # EMNIST's IDX files store images transposed
    return images.unsqueeze(1).contiguous(), ds.targets.to(torch.int64)


def _decode(info: DatasetInfo, root: Path) -> RawImages:
    try:
        if info.decode is not None:   # a plugin dataset's own reader
            train_images, train_labels, test_images, test_labels = info.decode(root / info.raw_dir)
            if not all(isinstance(t, torch.Tensor) for t in (train_images, train_labels,
                                                              test_images, test_labels)):
                raise TypeError("decode() must return four tensors")
        else:
            with contextlib.redirect_stdout(io.StringIO()):
                train_images, train_labels = _torchvision_split(info, root, train=True)
                test_images, test_labels = _torchvision_split(info, root, train=False)
    except Exception as exc:  # torchvision asserts / pickle / scipy errors on malformed files
        msg = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise DataError(f"{info.name}: cannot decode the raw files under {root / info.raw_dir} "
                        f"({type(exc).__name__}: {msg}); {fetch_hint(info, root)}") from None
    raw = RawImages(train_images, train_labels, test_images, test_labels)
    for split, images, labels in (("train", train_images, train_labels), ("test", test_images, test_labels)):
        if tuple(images.shape[1:]) != info.image_shape or images.dtype != torch.uint8:
            raise DataError(f"{info.name}: {split} images under {root / info.raw_dir} have shape "
                            f"{tuple(images.shape)}, expected (N, {', '.join(map(str, info.image_shape))})"
                            f" uint8; {fetch_hint(info, root)}")
        if (labels.dim() != 1 or labels.dtype != torch.int64 or len(labels) != len(images)
                or (len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < info.n_classes)):
            raise DataError(f"{info.name}: {split} labels under {root / info.raw_dir} do not match the "
                            f"images, are not (N,) int64, or fall outside 0..{info.n_classes - 1}; "
                            f"{fetch_hint(info, root)}")
    return raw


def _reader_key(info: DatasetInfo) -> str | None:
    """What identifies the code that decodes ``info``: ``""`` for torchvision's (pinned with the
    environment), the plugin file's sha256 for a plugin's own ``decode`` (an edited reader is
    never served the old reader's tensors), None for a ``decode`` of unknown origin (no cache)."""
    if info.decode is None:
        return ""
    from cffbench import extensions

    plugin = extensions.DATASETS.origin(info.name)
    return plugin.sha256 if getattr(plugin, "sha256", "") else None


def cache_path(info: DatasetInfo, root: Path, raw_md5s: list[str]) -> Path:
    """Where the decoded tensors of raw files with these md5s are cached."""
    reader = _reader_key(info) or ""
    key = hashlib.md5(f"{CACHE_FORMAT}:{info.name}:{','.join(raw_md5s)}"
                      f"{':' + reader if reader else ''}".encode()).hexdigest()[:16]
    return Path(root) / CACHE_DIR / f"{info.name}-{key}.pt"


def load_raw(info: DatasetInfo, root: Path, *, use_cache: bool = True) -> RawImages:
    """Verify ``info``'s raw files under ``root`` and return the decoded official splits.

    Parameters
    ----------
    info : DatasetInfo
        The dataset.
    root : Path
        The data root.
    use_cache : bool
        Read / write the decoded-tensor cache under ``root/.cache``.

    Raises
    ------
    DataError
        A raw file is missing, corrupt or cannot be decoded.
    """
    root = Path(root)
    use_cache = use_cache and _reader_key(info) is not None
    md5s = raw_file_md5s(info, root)
    path = cache_path(info, root, md5s)
    if use_cache and path.is_file():
        try:
            payload = torch.load(path, weights_only=True)
            if payload.get("raw_md5s") == md5s:
                return RawImages(*(payload[k] for k in ("train_images", "train_labels",
                                                         "test_images", "test_labels")))
        except Exception:  # a damaged cache is rebuilt from the verified raw files
            pass
    raw = _decode(info, root)
    if use_cache:
        buffer = io.BytesIO()
        torch.save({"raw_md5s": md5s, **raw.__dict__}, buffer)
        try:
            atomic_write_bytes(path, buffer.getvalue())
            for stale in path.parent.glob(f"{info.name}-*.pt"):
                if stale != path:
                    stale.unlink(missing_ok=True)
        except OSError:
            pass  # read-only data root: load without caching
    return raw
