"""Shared fixtures. Tests run torch on one thread: the CI machine has two cores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from cffbench.data.splits import Splits

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real dataset root (fetched by the test command before pytest starts)."""
    return Path(os.environ.get("CFFBENCH_DATA", REPO / "data"))


def make_synthetic_splits(n_train: int = 600, n_eval: int = 300, n_features: int = 64,
                          n_classes: int = 10, seed: int = 0) -> Splits:
    """Small, learnable data: each class is a noisy copy of its own random prototype."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(n_classes, n_features, generator=g)

    def draw(n: int):
        y = torch.arange(n) % n_classes
        x = protos[y] + 0.8 * torch.randn(n, n_features, generator=g)
        return x.float(), y.long()

    xtr, ytr = draw(n_train)
    xva, yva = draw(n_eval)
    xte, yte = draw(n_eval)
    return Splits("synthetic", xtr, ytr, xva, yva, xte, yte, n_classes)


@pytest.fixture
def synthetic_splits() -> Splits:
    return make_synthetic_splits()
