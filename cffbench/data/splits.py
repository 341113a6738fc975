"""The train / validation / test tensors one run trains and evaluates on."""

from __future__ import annotations

from dataclasses import dataclass

import torch


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
