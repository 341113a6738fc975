"""The training step of FF, F-CFF and A-CFF written plainly: the definition the engine is checked
against (``tests/test_ff_reference.py`` pins :func:`cffbench.ff.train_run` to it).

Nothing here is fast. Every layer is ``nn.Linear`` + ReLU on the unit-direction input, every
gradient comes from autograd, and each line can be read against the formulas:

- input of layer 1: the image with its label written one-hot into the first C pixels (value =
  the training set's max), positives with the true label, negatives with a wrong one;
- layer l: ``h_l = relu(W_l · x / (‖x‖₂ + 1e-4) + b_l)`` on the output of layer l − 1;
- goodness ``G_l = mean_j h_lj²``;
- logit of a sample for layer l, with θ the threshold and the other layers' goodness ``G_k``
  taken forward-only (stop-gradient; k < l on the current input, k > l on layer l's current
  output, each layer with its current weights):

  - FF: ``G_l − θ``
  - F-CFF / A-CFF, ``per_term``: ``(G_l − θ) + γ_l Σ_{k≠l} α_lk (G_k − θ)``
  - F-CFF / A-CFF, ``single``:   ``G_l + γ_l Σ_{k≠l} α_lk G_k − θ``

- loss ``mean(softplus(cat([−logit_pos, logit_neg])))``, one Adam per layer (lr ``lr``);
  A-CFF also learns γ_l and a learned α its row logits (``α_l· = softmax`` over k ≠ l), each
  layer's by its own SGD or Adam (lr ``gamma_lr``), stepped with layer l;
- ``sequential``: layer 1 for E epochs, then layer 2, ...; ``alternating``: per epoch and
  minibatch, every layer one step, bottom to top;
- per epoch (``batch_size`` > 0): a fresh random order of the N training images in batches;
  negatives ``redraw``: fresh wrong labels before every epoch (of every layer, in ``sequential``).

Random draws come from the run's per-purpose generators in the engine's order, so for one
configuration the reference and the engine start from the same weights and see the same
negatives and batches; they then agree to float rounding (the engine reorders the arithmetic).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F

from cffbench.data.splits import Splits
from cffbench.ff.alpha import alpha_matrix
from cffbench.ff.config import TrainConfig, run_generators
from cffbench.ff.goodness import overlay_labels
from cffbench.ff.layers import init_linear
from cffbench.ff.train import draw_negative_labels


@dataclass
class ReferenceRun:
    """``weights``: ``[(W_l (H_l, D_l), b_l (H_l,))]``; ``curves``: one row per layer × epoch
    (``layer`` 1-based, ``epoch``, ``loss``, ``g_pos``, ``g_neg``: means over the epoch's batches,
    before each step; ``gamma`` after the epoch); ``gamma_final`` ``[γ_l]`` and ``alpha_final``
    (L × L) for the collaborative variants, else empty."""

    weights: list[tuple[torch.Tensor, torch.Tensor]]
    curves: pd.DataFrame
    gamma_final: list[float]
    alpha_final: list[list[float]]


def layer_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``relu(W · x / (‖x‖₂ + 1e-4) + b)``, row by row."""
    return torch.relu(F.linear(x / (x.norm(p=2, dim=1, keepdim=True) + 1e-4), weight, bias))


def goodness(h: torch.Tensor) -> torch.Tensor:
    return h.pow(2).mean(dim=1)


def reference_train(config: TrainConfig, splits: Splits) -> ReferenceRun:
    """Train ``config`` (ff / f-cff / a-cff, fp32) on ``splits`` the plain way; see the module doc."""
    if config.variant not in ("ff", "f-cff", "a-cff") or config.precision != "fp32":
        raise ValueError("the reference covers ff / f-cff / a-cff in fp32")
    gens = run_generators(config.seed)
    n_layers, theta, collaborative = config.n_layers, config.threshold, config.is_collaborative
    widths = (splits.n_features, *config.hidden)
    params = [tuple(t.clone().requires_grad_() for t in init_linear(d_in, d_out, gens["init"]))
              for d_in, d_out in zip(widths[:-1], widths[1:])]
    layer_opts = [torch.optim.Adam(p, lr=config.lr) for p in params]

    learn_alpha = collaborative and config.alpha == "learned" and n_layers > 1
    gammas = [torch.tensor(float(config.gamma), requires_grad=config.variant == "a-cff")
              for _ in range(n_layers)]
    alpha_logits = [torch.zeros(n_layers - 1, requires_grad=True) for _ in range(n_layers)]
    fixed_alpha = alpha_matrix(config.alpha, n_layers, config.alpha_decay)
    opt_cls = torch.optim.Adam if config.gamma_optimizer == "adam" else torch.optim.SGD
    collab_opts = []
    for layer in range(n_layers):
        learned = ([gammas[layer]] if collaborative and config.variant == "a-cff" else []) + (
            [alpha_logits[layer]] if learn_alpha else [])
        collab_opts.append(opt_cls(learned, lr=config.gamma_lr) if learned else None)

    def alpha_row(layer: int) -> torch.Tensor:
        if not learn_alpha:
            return fixed_alpha[layer]
        weights = torch.softmax(alpha_logits[layer], dim=0)
        return torch.cat([weights[:layer], torch.zeros(1), weights[layer:]])

    x, y = splits.x_train, splits.y_train
    n, value = x.shape[0], x.max()
    y_neg = draw_negative_labels(y, splits.n_classes, gens["negatives"], config.negatives)

    def step_layer(layer: int, rows: torch.Tensor) -> tuple[float, float, float]:
        """One step of layer ``layer`` on the images ``rows``; returns (loss, mean G_pos, G_neg)."""
        inputs = []
        for labels in (y[rows], y_neg[rows]):
            inputs.append(overlay_labels(x[rows], labels, value, splits.n_classes))
        others = [[], []]                      # forward-only goodness of the other layers
        with torch.no_grad():                  # layers below, current weights
            for weight, bias in params[:layer]:
                for side in (0, 1):
                    inputs[side] = layer_forward(inputs[side], weight, bias)
                    others[side].append(goodness(inputs[side]))
        h = [layer_forward(inputs[side], *params[layer]) for side in (0, 1)]
        own = [goodness(h[side]) for side in (0, 1)]
        with torch.no_grad():                  # layers above, on this layer's current output
            for side in (0, 1):
                others[side].append(own[side].detach())      # row l, multiplied by α_ll = 0
                u = h[side]
                for weight, bias in params[layer + 1:]:
                    u = layer_forward(u, weight, bias)
                    others[side].append(goodness(u))
        logits = []
        for side in (0, 1):
            if not collaborative:
                logits.append(own[side] - theta)
                continue
            g_all = torch.stack(others[side])                 # (L, batch)
            if config.theta_placement == "per_term":
                collab = alpha_row(layer) @ (g_all - theta)
                logits.append((own[side] - theta) + gammas[layer] * collab)
            else:
                collab = alpha_row(layer) @ g_all
                logits.append(own[side] + gammas[layer] * collab - theta)
        loss = F.softplus(torch.cat([-logits[0], logits[1]])).mean()
        layer_opts[layer].zero_grad()
        if collab_opts[layer] is not None:
            collab_opts[layer].zero_grad()
        loss.backward()
        layer_opts[layer].step()
        if collab_opts[layer] is not None:
            collab_opts[layer].step()
        return loss.item(), own[0].mean().item(), own[1].mean().item()

    def epoch_batches() -> list[torch.Tensor]:
        if config.batch_size == 0 or config.batch_size >= n:
            return [torch.arange(n)]
        return list(torch.randperm(n, generator=gens["batches"]).split(config.batch_size))

    curves = []

    def record(layer: int, epoch: int, stats: list[tuple[float, float, float]]) -> None:
        loss, g_pos, g_neg = (sum(column) / len(column) for column in zip(*stats))
        curves.append({"layer": layer + 1, "epoch": epoch, "loss": loss, "g_pos": g_pos,
                       "g_neg": g_neg,
                       "gamma": float(gammas[layer].detach()) if collaborative else float("nan")})

    epochs = range(1, config.epochs_per_layer + 1)
    if config.schedule == "sequential":
        for layer in range(n_layers):
            for epoch in epochs:
                if config.negatives == "redraw":
                    y_neg = draw_negative_labels(y, splits.n_classes, gens["negatives"], "redraw")
                record(layer, epoch, [step_layer(layer, rows) for rows in epoch_batches()])
    else:
        for epoch in epochs:
            if config.negatives == "redraw":
                y_neg = draw_negative_labels(y, splits.n_classes, gens["negatives"], "redraw")
            stats = [[] for _ in range(n_layers)]
            for rows in epoch_batches():
                for layer in range(n_layers):
                    stats[layer].append(step_layer(layer, rows))
            for layer in range(n_layers):
                record(layer, epoch, stats[layer])
    with torch.no_grad():
        alpha_final = [[float(a) for a in alpha_row(layer)] for layer in range(n_layers)]
    return ReferenceRun(
        weights=[(w.detach(), b.detach()) for w, b in params],
        curves=pd.DataFrame(curves),
        gamma_final=[float(g.detach()) for g in gammas] if collaborative else [],
        alpha_final=alpha_final if collaborative else [])
