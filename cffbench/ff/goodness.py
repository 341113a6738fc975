"""The FF building blocks: label overlay, unit-direction input, goodness and the (collaborative) loss.

These are the plain, readable definitions; :mod:`cffbench.ff.layers` computes the same quantities
faster (shared base matmul, reused buffers, manual gradient) and the tests pin the two together.
The goodness is an object (:class:`GoodnessFunction`; the built-in :data:`MEAN_SQUARES`) that
carries its fast form and its gradient; the logit and the loss take tensors with optional leading
axes, so one run and S seed-stacked runs share them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from cffbench import extensions

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


class GoodnessFunction:
    """A layer's goodness ``G = g(h)``, ``(..., M, H)`` → ``(..., M)``, with what the fast engine
    needs besides the definition.

    ``h = relu(pre)`` are a layer's activations, rows = samples; any leading axes (the seed axis
    of :mod:`cffbench.ff.stacked`) are carried through. Three methods:

    - ``__call__(h)``: the plain, differentiable definition (what autograd and a reader see);
    - :meth:`fast`: the same value computed by the engine, which may use the row norm ``‖h‖₂``
      it computes anyway for the next layer's unit-direction input;
    - :meth:`pre_activation_gradient_`: ``∂L/∂pre`` from ``∂L/∂G`` ``(..., M)``, i.e.
      ``∂L/∂G · ∂G/∂h ⊙ 1[pre > 0]``, written into ``h`` (whose values the step no longer needs).

    A plugin's goodness needs only ``__call__``: without a manual gradient its layers are
    trained through torch autograd on the definition (the plain path, :attr:`has_manual_gradient`
    False); with one they take the fast engine. ``tests/test_ff_reference.py`` pins the built-in's
    fast form and gradient to autograd through its definition.
    """

    name: str

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def has_manual_gradient(self) -> bool:
        """Whether :meth:`pre_activation_gradient_` is implemented (else the layers train
        through autograd on ``__call__``)."""
        return type(self).pre_activation_gradient_ is not GoodnessFunction.pre_activation_gradient_

    def fast(self, h: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
        """``G`` ``(..., M)`` from ``h`` and its row norm ``‖h‖₂`` ``(..., M)``."""
        return self(h)

    def pre_activation_gradient_(self, h: torch.Tensor, grad_goodness: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class MeanSquares(GoodnessFunction):
    """``G = mean_j h_j² = ‖h‖²/H`` (Hinton 2022). ``∂G/∂h = 2h/H`` is zero wherever the ReLU
    is off (h = 0 there), so ``∂L/∂pre = ∂L/∂G · 2h/H`` needs no mask."""

    name = "mean_squares"

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        return h.pow(2).mean(dim=-1)

    def fast(self, h: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
        return norm.square() / h.shape[-1]

    def pre_activation_gradient_(self, h: torch.Tensor, grad_goodness: torch.Tensor) -> torch.Tensor:
        return h.mul_((grad_goodness * (2.0 / h.shape[-1]))[..., None])


#: The goodness of every built-in variant.
MEAN_SQUARES = MeanSquares()
extensions.GOODNESS.register(MEAN_SQUARES, builtin=True)


def goodness_function(name: str) -> GoodnessFunction:
    """The registered :class:`GoodnessFunction` called ``name`` (``TrainConfig.goodness``)."""
    return extensions.GOODNESS[name]


def gradient_path(goodness_fn: GoodnessFunction) -> str:
    """``"manual"`` (the fast engine's gradient) or ``"autograd"`` (the plain path): how the
    layers of a run with this goodness get their weight gradient (a run's ``gradient`` column)."""
    return "manual" if goodness_fn.has_manual_gradient else "autograd"


def goodness(h: torch.Tensor) -> torch.Tensor:
    """``G = mean(h², dim=-1)``; ``(..., N, H)`` → ``(..., N)`` (:data:`MEAN_SQUARES`)."""
    return MEAN_SQUARES(h)


#: A layer is dead when the mean goodness of its positives and of its negatives are both at most
#: this fraction of the threshold θ (:func:`is_dead_layer`).
DEAD_GOODNESS_FRACTION = 1e-6
#: The bound as notes and reports write it.
DEAD_GOODNESS_TEXT = f"{DEAD_GOODNESS_FRACTION:.0e}·θ"


def is_dead_layer(g_pos, g_neg, threshold):
    """Whether a layer whose mean goodness is ``g_pos`` on positives and ``g_neg`` on negatives is
    dead at threshold ``θ = threshold``: ``max(G_pos, G_neg) ≤ DEAD_GOODNESS_FRACTION · θ``.

    Numbers or arrays that broadcast together; returns a ``bool`` for scalars, else a boolean
    array of the broadcast shape. A nan goodness (a diverged run, bp) is never dead.

    Why this is a state of its own: a goodness this small means (almost) every unit's ReLU is off
    for the positives and the negatives alike (for :data:`MEAN_SQUARES`, ``G ≤ 1e-6·θ`` is an
    rms activation of at most ``1e-3·√θ``). The layer's own logit ``G − θ`` is then ≈ −θ for
    both, so it cannot tell them apart, and its gradient ``∂L/∂pre = ∂L/∂G · ∂G/∂h`` vanishes
    with ``h`` (``2h/H`` for mean squares): gradient descent can only leave the state by a slow
    regrowth of the few units barely on, if at all.

    Why ``1e-6 · θ``: the threshold is the goodness's own scale (the logit is ``G − θ``), and the
    states it separates are many orders of magnitude apart. In the paper-scale MNIST study
    (``results/paper_mnist``, θ = 2, 500-500 units), every layer starts at a mean goodness of
    3.6e-4 to 7.4e-4 (≈ 2e-4·θ) and healthy trained layers end between 0.05 and 6, while A-CFF
    (θ per term)'s layer 2 falls within five epochs to ≈ 1e-11 (seeds 0 and 2, which regrow to
    ≈ 1e-3 after some 100 epochs) or to G_pos = 0, G_neg = 3e-20 for good (seed 1). The bound
    ``1e-6·θ = 2e-6`` lies more than two orders of magnitude below the goodness at
    initialisation and five above the dead values, so neither a small healthy layer nor a dead
    one is near it.
    """
    largest = np.maximum(np.asarray(g_pos, dtype=float), np.asarray(g_neg, dtype=float))
    dead = largest <= DEAD_GOODNESS_FRACTION * np.asarray(threshold, dtype=float)
    return bool(dead) if dead.ndim == 0 else dead


def collaborative_logits(own: torch.Tensor, others: torch.Tensor | None, gamma: torch.Tensor | float,
                         alpha_row: torch.Tensor | None, threshold: float,
                         placement: str = "per_term") -> torch.Tensor:
    """The logit whose sign says "positive" for each sample, shape ``(..., M)``.

    ``own`` is ``G^l`` ``(..., M)``; ``others`` is ``(..., L, M)`` with every layer's goodness
    (row l is ignored because ``α_ll = 0``; it must already be detached — stop-gradient);
    ``alpha_row`` is α's row l, ``(..., L)``; ``gamma`` a number or a tensor of the leading shape
    ``(...)``. The leading axes (none for one run, the seed axis ``S`` for seed-stacked runs) are
    independent. Plain FF (``others is None``): ``G^l − θ``. Collaborative:

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
    if isinstance(gamma, torch.Tensor) and gamma.dim() > 0:
        gamma = gamma[..., None]             # (...) → (..., 1): one γ per run, over its M samples

    def weighted_sum(goodness_rows: torch.Tensor) -> torch.Tensor:   # Σ_k α_lk g_k, (..., M)
        return _mm(alpha_row[..., None, :], goodness_rows)[..., 0, :]

    if placement == "per_term":
        return (own - threshold) + gamma * weighted_sum(others - threshold)
    if placement == "single":
        return (own + gamma * weighted_sum(others)) - threshold
    raise ValueError(f"unknown theta placement {placement!r}; allowed: per_term, single")


def _mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` as ``mm`` (2-D) or ``bmm`` (3-D: one product per run of a seed stack)."""
    return torch.mm(a, b) if a.dim() == 2 else torch.bmm(a, b)


def ff_loss(logits_pos: torch.Tensor, logits_neg: torch.Tensor) -> torch.Tensor:
    """``mean(softplus(cat([−logit_pos, logit_neg])))`` over the last axis: ``(..., M)`` → ``(...)``
    (a scalar for one run, one loss per run of a seed stack).

    For FF ``logit = G − θ``, i.e. the reference ``log(1 + exp(cat([θ − G_pos, G_neg − θ])))``.
    """
    return F.softplus(torch.cat([-logits_pos, logits_neg], dim=-1)).mean(dim=-1)
