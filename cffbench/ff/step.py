"""One FF training step of one layer: the step both engines take (one run, or S seed-stacked runs).

For layer l with input ``x`` (positives and negatives, ``(..., 2N, ·)``) and the goodness of the
layers below on the same samples (``lower``, each ``(..., 2N)``, computed with their current
weights):

1. ``h = relu(W x̂ + b)`` (:meth:`~cffbench.ff.layers.FFLayer.activations`) and ``G^l = g(h)``;
2. if the variant's logit rule reads the other layers, the layers above run forward-only on
   ``h / (‖h‖ + ε)`` (stop-gradient), giving every layer's goodness ``(..., L, 2N)``;
3. ``logit = rule.logits(l, G^l, others)``, ``L = mean(softplus(cat([−logit_pos, logit_neg])))``
   per run; autograd runs on the ``(..., 2N)`` goodness vector only (and the rule's parameters);
4. the weight gradient is the layer's manual one from ``∂L/∂G^l``; the layer's Adam steps, then
   the rule's optimiser of layer l.

With a seed axis the per-run losses are summed before ``backward()``:
``∂(Σ_s L_s)/∂θ_s = ∂L_s/∂θ_s``, so the seeds do not mix.
"""

from __future__ import annotations

import torch

from cffbench.ff.collaboration import LogitRule
from cffbench.ff.goodness import ff_loss
from cffbench.ff.layers import FFLayer, OverlayInput, PlainInput

LayerInput = OverlayInput | PlainInput


def layer_step(layers: list[FFLayer], index: int, inp: LayerInput, lower: list[torch.Tensor],
               rule: LogitRule) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One optimiser step of ``layers[index]`` on ``inp``; returns ``(loss, mean G_pos, mean G_neg)``,
    each of the seed shape (scalars for one run), measured before the step."""
    layer, n = layers[index], inp.n

    def direction_buffer(position: int) -> str | None:
        # the next layer's input is needed only to run the layers above forward, and the last
        # layer feeds no one
        feeds = rule.reads_other_layers and position + 1 < len(layers)
        return "dir_collab" if feeds else None

    h, norm, h_dir = layer.activations(inp, direction_name=direction_buffer(index))
    own, _ = layer.goodness(h, norm)
    others = None
    if rule.reads_other_layers:
        upper = []
        for position, later in enumerate(layers[index + 1:], start=index + 1):
            h_later, norm_later, h_dir = later.forward_rows(h_dir, direction_name=direction_buffer(position))
            upper.append(later.goodness(h_later, norm_later)[0])
        others = torch.stack([*lower, own, *upper], dim=-2)     # (..., L, 2N), no gradient
    own_leaf = own.detach().requires_grad_()
    with torch.enable_grad():
        rule.zero_grad(index)
        logits = rule.logits(index, own_leaf, others)
        loss = ff_loss(logits[..., :n], logits[..., n:])
        loss.sum().backward()
    layer.apply_goodness_gradient(inp, h, own_leaf.grad)
    layer.step()
    rule.step(index)
    return loss.detach(), own[..., :n].mean(dim=-1), own[..., n:].mean(dim=-1)


@torch.no_grad()
def chain_inputs(layers: list[FFLayer], overlay: OverlayInput, upto: int
                 ) -> tuple[LayerInput, list[torch.Tensor]]:
    """Input of layer ``upto`` and the goodness ``(..., 2N)`` of the layers below it (current
    weights), starting from the label overlay."""
    inp: LayerInput = overlay
    lower: list[torch.Tensor] = []
    for layer in layers[:upto]:
        own, direction = layer.goodness_and_direction(inp)
        lower.append(own)
        inp = PlainInput(direction)
    return inp, lower


@torch.no_grad()
def mean_layer_goodness(layers: list[FFLayer], overlay: OverlayInput
                        ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer, the mean ``G_pos`` and ``G_neg`` (each of the seed shape) of the training
    overlay with the current weights; releases every layer's buffers."""
    for layer in layers:
        layer.release_buffers()
    inp: LayerInput = overlay
    out = []
    for layer in layers:
        own, direction = layer.goodness_and_direction(inp)
        out.append((own[..., :inp.n].mean(dim=-1), own[..., inp.n:].mean(dim=-1)))
        inp = PlainInput(direction)
        layer.release_buffers()   # inp keeps the one tensor the next layer needs
    return out
