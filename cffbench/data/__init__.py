"""Datasets: registry, fetch + verify, loading to tensors, deterministic splits.

The torch-based loaders are imported on first use (PEP 562 ``__getattr__``), so that
``cffbench data fetch`` / ``data verify`` do not pay for importing torch and torchvision.
"""

from __future__ import annotations

import importlib

from cffbench.data.fetching import fetch
from cffbench.data.integrity import verify
from cffbench.data.registry import (DATASETS, MAIN_DATASETS, DatasetInfo, default_data_root,
                                    get_dataset_info)

_TORCH_BASED = {
    "RawImages": "cffbench.data.loading",
    "load_raw": "cffbench.data.loading",
    "Splits": "cffbench.data.splits",
    "load_splits": "cffbench.data.splits",
}

__all__ = ["DATASETS", "MAIN_DATASETS", "DatasetInfo", "RawImages", "Splits", "default_data_root",
           "fetch", "get_dataset_info", "load_raw", "load_splits", "verify"]


def __getattr__(name: str):
    if name in _TORCH_BASED:
        return getattr(importlib.import_module(_TORCH_BASED[name]), name)
    raise AttributeError(f"module 'cffbench.data' has no attribute {name!r}")
