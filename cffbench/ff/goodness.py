"""The FF building blocks: label overlay, unit-direction input, goodness and the (collaborative) loss.

These are the plain, readable definitions; :mod:`cffbench.ff.layers` computes the same quantities
faster (shared base matmul, reused buffers, manual gradient) and the tests pin the two together.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Added to the row norm before dividing, as in the reference implementation.
NORM_EPS = 1e-4
#: Number of leading pixels that carry the one-hot label.
LABEL_PIXELS = 10


def overlay_labels(x: torch.Tensor, labels: torch.Tensor, value: float | torch.Tensor | None = None,
                   n_labels: int = LABEL_PIXELS) -> torch.Tensor:
    """Write labels one-hot into the first ``n_labels`` (= number of classes, 10) features.

    ``x`` is ``(N, D)``, ``labels`` ``(N,)`` int64. The first n_labels features are set to 0 and feature
    ``labels[i]`` of row i to ``value`` (default ``x.max()``, a scalar over the whole batch, as in
    the reference ``overlay_y_on_x``). Returns a new ``(N, D)`` tensor.
    """
    out = x.clone()
    out[:, :n_labels] = 0.0
    out[torch.arange(x.shape[0], device=x.device), labels] = x.max() if value is None else value
    return out


def unit_direction(x: torch.Tensor) -> torch.Tensor:
    """Row-wise ``x / (‖x‖₂ + 1e-4)``; shape ``(N, D)`` → ``(N, D)``."""
    return x / (x.norm(p=2, dim=1, keepdim=True) + NORM_EPS)


def goodness(h: torch.Tensor) -> torch.Tensor:
    """``G = mean(h², dim=1)``; ``(N, H)`` → ``(N,)``."""
    return h.pow(2).mean(dim=1)


def collaborative_logits(own: torch.Tensor, others: torch.Tensor | None, gamma: torch.Tensor | float,
                         alpha_row: torch.Tensor | None, threshold: float,
                         placement: str = "per_term") -> torch.Tensor:
    """The logit whose sign says "positive" for each sample, shape ``(M,)``.

    ``own`` is ``G^l`` ``(M,)``; ``others`` is ``(L, M)`` with every layer's goodness (row l is
    ignored because ``α_ll = 0``; it must already be detached — stop-gradient); ``alpha_row`` is
    α's row l, ``(L,)``. Plain FF (``others is None``): ``G^l − θ``. Collaborative:

    - ``per_term``: ``(G^l − θ) + γ Σ_{k≠l} α_lk (G^k − θ)`` — every layer's goodness is judged
      against its own threshold, so with normalised α the collaborative term is the mean margin of
      the other layers;
    - ``single``: ``G^l + γ Σ_{k≠l} α_lk G^k − θ`` — one threshold on the summed goodness
      (Lorberbom et al. 2023); the other layers' raw goodness (≥ 0) shifts every logit upward.

    With ``γ = 0`` both are exactly ``G^l − θ`` (adding an exact zero), so CFF reduces to FF bit for
    bit. The diagonal term is removed by multiplying with ``α_ll = 0``.
    """
    if others is None:
        return own - threshold
    if placement == "per_term":
        return (own - threshold) + gamma * (alpha_row @ (others - threshold))
    if placement == "single":
        return (own + gamma * (alpha_row @ others)) - threshold
    raise ValueError(f"unknown theta placement {placement!r}; allowed: per_term, single")


def ff_loss(logits_pos: torch.Tensor, logits_neg: torch.Tensor) -> torch.Tensor:
    """``mean(softplus(cat([−logit_pos, logit_neg])))``, a scalar.

    For FF ``logit = G − θ``, i.e. the reference ``log(1 + exp(cat([θ − G_pos, G_neg − θ])))``.
    """
    return F.softplus(torch.cat([-logits_pos, logits_neg])).mean()
