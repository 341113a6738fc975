"""γ and α of S seed-stacked runs (:mod:`cffbench.ff.stacked`), one slice per seed.

The stacked twin of :class:`cffbench.ff.collaboration.Collaboration`: per layer l, ``γ_l`` ``(S,)``
and, for learned α, row logits ``(S, L − 1)``; one optimiser per layer over both (elementwise, so
equal to S separate ones).
"""

from __future__ import annotations

import json

import torch

from cffbench.ff.alpha import alpha_matrix
from cffbench.ff.collaboration import LayerSteps, layer_optimizers
from cffbench.ff.config import TrainConfig


class StackedCollaboration(LayerSteps):
    """γ and α of S runs: ``gamma(l)`` ``(S,)``, ``alpha_row(l)`` ``(S, L)`` (zero at column l)."""

    def __init__(self, config: TrainConfig, n_seeds: int, device: torch.device) -> None:
        n_layers = self.n_layers = config.n_layers
        self.learn_gamma = config.variant == "a-cff"
        self.learn_alpha = config.alpha == "learned" and n_layers > 1
        self.fixed_alpha = alpha_matrix(config.alpha, n_layers, config.alpha_decay).to(device)
        self.gammas = [torch.full((n_seeds,), float(config.gamma), device=device,
                                  requires_grad=self.learn_gamma) for _ in range(n_layers)]
        self.alpha_logits = [torch.zeros(n_seeds, n_layers - 1, device=device, requires_grad=True)
                             if self.learn_alpha else None for _ in range(n_layers)]
        self.optimizers = layer_optimizers(config, self.gammas if self.learn_gamma else None,
                                           self.alpha_logits if self.learn_alpha else None)

    def alpha_row(self, layer: int) -> torch.Tensor:
        n_seeds = self.gammas[layer].shape[0]
        if not self.learn_alpha:
            return self.fixed_alpha[layer].expand(n_seeds, self.n_layers)
        weights = torch.softmax(self.alpha_logits[layer], dim=1)
        zero = torch.zeros(n_seeds, 1, dtype=weights.dtype, device=weights.device)
        return torch.cat([weights[:, :layer], zero, weights[:, layer:]], dim=1)[:, :self.n_layers]

    def finite(self) -> torch.Tensor:
        """``(S,)`` bool: every layer's γ of seed s is finite."""
        return torch.stack([torch.isfinite(g.detach()) for g in self.gammas]).all(dim=0).cpu()

    def alpha_row_json(self, layer: int, seed_index: int) -> str:
        if not self.learn_alpha:
            return ""
        with torch.no_grad():
            return json.dumps([round(float(v), 6) for v in self.alpha_row(layer)[seed_index]])

    def snapshot(self, seed_index: int) -> tuple[list[float], list[list[float]]]:
        """(γ per layer, α ``L × L``) of one seed, as ``train_run`` reports them."""
        with torch.no_grad():
            return ([float(g[seed_index]) for g in self.gammas],
                    [[float(v) for v in self.alpha_row(layer)[seed_index]]
                     for layer in range(self.n_layers)])
