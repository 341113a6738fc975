"""γ (fixed or learned per layer) and α (fixed structure or learned rows) of the CFF variants."""

from __future__ import annotations

import json

import torch

from cffbench.ff.alpha import alpha_matrix, learned_alpha_row
from cffbench.ff.config import TrainConfig
from cffbench.ff.result import optimizer_step


def layer_optimizers(config: TrainConfig, gammas: list[torch.Tensor] | None,
                     alpha_logits: list[torch.Tensor | None] | None) -> list[torch.optim.Optimizer | None]:
    """One optimiser per layer (SGD or Adam, lr ``gamma_lr``) over that layer's learned γ and α
    logits, so a step for layer l moves only γ_l and α's row l; None where nothing is learned."""
    opt_cls = torch.optim.Adam if config.gamma_optimizer == "adam" else torch.optim.SGD
    optimizers: list[torch.optim.Optimizer | None] = []
    for layer in range(config.n_layers):
        params = ([gammas[layer]] if gammas is not None else []) + (
            [alpha_logits[layer]] if alpha_logits is not None else [])
        optimizers.append(opt_cls(params, lr=config.gamma_lr) if params else None)
    return optimizers


class LayerSteps:
    """``zero_grad(l)`` / ``step(l)`` on layer l's optimiser of ``self.optimizers`` (if any)."""

    optimizers: list[torch.optim.Optimizer | None]

    def zero_grad(self, layer: int) -> None:
        if self.optimizers[layer] is not None:
            self.optimizers[layer].zero_grad(set_to_none=True)

    def step(self, layer: int) -> None:
        if self.optimizers[layer] is not None:
            optimizer_step(self.optimizers[layer])


class Collaboration(LayerSteps):
    """The collaboration parameters of one run.

    ``gamma(l)`` is a scalar tensor: a constant for ``f-cff``, a leaf trained by its own optimiser
    (SGD or Adam, lr ``gamma_lr``) for ``a-cff``. ``alpha_row(l)`` is row l of α, ``(L,)``; for
    ``alpha="learned"`` it is the softmax over k ≠ l of its own logits ``(L − 1,)`` (init 0, i.e.
    uniform), trained with lr ``gamma_lr`` by the ``gamma_optimizer`` kind (for f-cff too). Each layer owns separate γ / α optimisers, so
    :meth:`step` for layer l moves only γ_l and α's row l (Adam momentum of other rows cannot leak).
    """

    def __init__(self, config: TrainConfig, device: torch.device) -> None:
        n_layers = config.n_layers
        self.n_layers = n_layers
        self.learn_gamma = config.variant == "a-cff"
        self.learn_alpha = config.alpha == "learned" and n_layers > 1
        self.fixed_alpha = alpha_matrix(config.alpha, n_layers, config.alpha_decay).to(device)
        self.gammas = [torch.tensor(float(config.gamma), device=device, requires_grad=self.learn_gamma)
                       for _ in range(n_layers)]
        self.alpha_logits = [torch.zeros(n_layers - 1, device=device, requires_grad=True)
                             if self.learn_alpha else None for _ in range(n_layers)]
        self.optimizers = layer_optimizers(config, self.gammas if self.learn_gamma else None,
                                           self.alpha_logits if self.learn_alpha else None)

    def gamma(self, layer: int) -> torch.Tensor:
        return self.gammas[layer]

    def alpha_row(self, layer: int) -> torch.Tensor:
        if self.learn_alpha:
            return learned_alpha_row(self.alpha_logits[layer], layer, self.n_layers)
        return self.fixed_alpha[layer]

    def gamma_value(self, layer: int) -> float:
        return float(self.gammas[layer].detach())

    def alpha_row_json(self, layer: int) -> str:
        """Row l of α as JSON text when α is learned, else ``""`` (the curves column)."""
        if not self.learn_alpha:
            return ""
        with torch.no_grad():
            return json.dumps([round(float(v), 6) for v in self.alpha_row(layer)])

    def alpha_final(self) -> list[list[float]]:
        with torch.no_grad():
            return [[float(v) for v in self.alpha_row(layer)] for layer in range(self.n_layers)]

    def finite(self) -> bool:
        return all(bool(torch.isfinite(g)) for g in self.gammas)
