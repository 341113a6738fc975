"""FF prediction: the label whose overlay gives the largest goodness summed over all layers."""

from __future__ import annotations

import torch

from cffbench.ff.goodness import MEAN_SQUARES, NORM_EPS, GoodnessFunction
from cffbench.ff.layers import OverlayInput


@torch.no_grad()
def label_goodness(weights: list[tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor,
                   n_labels: int, value: torch.Tensor | float | None = None,
                   goodness: GoodnessFunction = MEAN_SQUARES) -> torch.Tensor:
    """``Σ_l G^l`` for every candidate label, shape ``(N, n_labels)``; fp32; ``G = goodness(h)``.

    ``weights`` is ``[(W_l (H_l, D_l), b_l (H_l,)), ...]``; ``x`` ``(N, D)`` raw (normalised)
    images. Each label c is overlaid with ``value`` (default ``x.max()``, the max of the evaluated batch, as the
    reference predicts on the whole test set at once) and passed through all layers. The first
    layer's ``x₀ s W₁^T + b₁`` is computed once and shared by all labels (see
    :mod:`cffbench.ff.layers`): each label only adds ``(m s) W₁[:, c]``.
    """
    zeros = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    overlay = OverlayInput.build(x, zeros, zeros, n_labels, value)
    w1, b1 = weights[0]
    base = torch.addmm(b1, overlay.x0_dir, w1.t())
    scores = torch.empty(x.shape[0], n_labels, device=x.device)
    for label in range(n_labels):
        h = torch.addr(base, overlay.label_scale, w1[:, label]).clamp_(min=0.0)
        total = goodness(h)
        for weight, bias in weights[1:]:
            h_dir = h / (h.norm(dim=1, keepdim=True) + NORM_EPS)
            h = torch.addmm(bias, h_dir, weight.t()).clamp_(min=0.0)
            total += goodness(h)
        scores[:, label] = total
    return scores


def ff_accuracy(weights: list[tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor, y: torch.Tensor,
                n_labels: int, chunk_size: int = 10000,
                goodness: GoodnessFunction = MEAN_SQUARES) -> float:
    """Fraction of rows whose argmax label goodness equals ``y``; ``x`` ``(N, D)``, ``y`` ``(N,)``.

    The overlay value is the max of the whole ``x`` even when it is evaluated in chunks.
    """
    if x.shape[0] == 0:
        return float("nan")
    value = x.max()
    correct = 0
    for start in range(0, x.shape[0], chunk_size):
        chunk = x[start:start + chunk_size]
        scores = label_goodness(weights, chunk, n_labels, value, goodness)
        correct += int((scores.argmax(dim=1) == y[start:start + chunk_size]).sum())
    return correct / x.shape[0]
