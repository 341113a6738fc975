"""Collaboration weights α (L × L, zero diagonal) between the goodness of different layers."""

from __future__ import annotations

import torch

ALPHA_STRUCTURES = ("uniform", "distance", "learned", "ones")


def alpha_matrix(structure: str, n_layers: int, decay: float = 0.5) -> torch.Tensor:
    """The fixed α matrix, shape ``(L, L)``, float32, zero diagonal.

    Parameters
    ----------
    structure : {"uniform", "distance", "learned", "ones"}
    n_layers : int
        L, the number of hidden layers.
    decay : float
        Base of the ``distance`` structure.

    - ``uniform``: ``α_lk = 1 / (L − 1)`` for k ≠ l.
    - ``distance``: ``α_lk ∝ decay^(|l − k| − 1)``, each row normalised to sum 1.
    - ``learned``: the initial value of the learned structure, equal to ``uniform``.
    - ``ones``: ``α_lk = 1`` (the paper's literal sum ``Σ_{k≠l} G^k``).

    With ``L = 1`` the matrix is ``[[0]]`` (nobody to collaborate with).
    """
    if structure not in ALPHA_STRUCTURES:
        raise ValueError(f"unknown alpha structure {structure!r}; allowed: {ALPHA_STRUCTURES}")
    idx = torch.arange(n_layers)
    distance = (idx[:, None] - idx[None, :]).abs().double()
    off_diagonal = distance > 0
    if structure == "distance":
        weights = torch.where(off_diagonal, decay ** (distance - 1), torch.zeros(()).double())
    else:
        weights = off_diagonal.double()
    if structure != "ones" and n_layers > 1:
        weights = weights / weights.sum(dim=1, keepdim=True)
    return weights.float()


def learned_alpha_row(logits: torch.Tensor, layer: int, n_layers: int) -> torch.Tensor:
    """Row ``layer`` of the learned α: a softmax of ``logits`` ``(..., L − 1)`` over k ≠ l.

    Returns ``(..., L)`` with ``α_ll = 0``; differentiable in ``logits``. Leading axes (the seed
    axis of a seed stack) are independent rows.
    """
    weights = torch.softmax(logits, dim=-1)
    zero = torch.zeros(*weights.shape[:-1], 1, dtype=weights.dtype, device=weights.device)
    return torch.cat([weights[..., :layer], zero, weights[..., layer:]], dim=-1)[..., :n_layers]


def normalised_structures_coincide(n_layers: int) -> bool:
    """With two layers every row has one off-diagonal entry, so all row-normalised α agree."""
    return n_layers == 2
