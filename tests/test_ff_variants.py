"""The objects the engine calls: variants (``cffbench.ff.variants``) and goodness functions.

The engine takes a layer's goodness and its gradient from a ``GoodnessFunction`` and a layer's
logit from the variant's ``LogitRule``; these tests pin that the fast forms they provide equal
autograd through their plain definitions, for the built-in and for a goodness that is not
built in, with and without a seed axis.
"""

from __future__ import annotations


import pytest
import torch

from cffbench.ff import TrainConfig
from cffbench.ff.alpha import alpha_matrix, learned_alpha_row
from cffbench.ff.collaboration import Collaboration, PlainLogits
from cffbench.ff.goodness import MEAN_SQUARES, GoodnessFunction, collaborative_logits, ff_loss
from cffbench.ff.layers import FFLayer, OverlayInput, PlainInput
from cffbench.ff.variants import VARIANTS, variant_of

CPU = torch.device("cpu")


class SumOfSquares(GoodnessFunction):
    """``G = Σ_j h_j²`` (Hinton 2022 also mentions it): not built in, so the engine's use of the
    goodness object is tested against a goodness it does not already know."""

    name = "sum_squares"

    def __call__(self, h):
        return h.pow(2).sum(dim=-1)

    def fast(self, h, norm):
        return norm.square()

    def pre_activation_gradient_(self, h, grad_goodness):
        return h.mul_(2.0 * grad_goodness[..., None])


@pytest.mark.parametrize("goodness", [MEAN_SQUARES, SumOfSquares()], ids=lambda g: g.name)
def test_goodness_fast_form_and_gradient_equal_autograd_of_the_definition(goodness):
    g = torch.Generator().manual_seed(0)
    pre = torch.randn(3, 40, 9, generator=g, requires_grad=True)   # seed axis, rows, units
    grad_goodness = torch.randn(3, 40, generator=g)
    h = torch.relu(pre)
    (goodness(h) * grad_goodness).sum().backward()
    h_fast = h.detach().clone()
    value = goodness.fast(h_fast, torch.linalg.vector_norm(h_fast, dim=-1))
    torch.testing.assert_close(value, goodness(h.detach()), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(goodness.pre_activation_gradient_(h_fast, grad_goodness), pre.grad,
                               rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("first_layer", [True, False])
@pytest.mark.parametrize("seeds", [None, 2])
def test_layer_weight_gradient_follows_its_goodness_function(first_layer, seeds):
    # FFLayer with a non-default goodness: its manual weight gradient must be autograd's of
    # softplus(±(Σh² − θ)) through relu(W x̂ + b), per seed when stacked
    g = torch.Generator().manual_seed(1)
    shape = () if seeds is None else (seeds,)
    n, d_in, width, n_labels = 12, 30, 7, 10
    weight = torch.randn(*shape, width, d_in, generator=g) * 0.3
    bias = torch.randn(*shape, width, generator=g) * 0.1
    layer = FFLayer.from_parameters(weight.clone(), bias.clone(), 0.03, CPU, goodness=SumOfSquares())
    if first_layer:
        x = torch.randn(*shape, n, d_in, generator=g)
        y_pos = torch.randint(0, n_labels, (*shape, n), generator=g)
        y_neg = (y_pos + torch.randint(1, n_labels, (*shape, n), generator=g)) % n_labels
        parts = [OverlayInput.build(x_s, p_s, n_s, n_labels) for x_s, p_s, n_s in
                 zip(x.reshape(-1, n, d_in), y_pos.reshape(-1, n), y_neg.reshape(-1, n))]
        inp = parts[0] if seeds is None else OverlayInput.stack(parts)
        dense = []
        for part in parts:   # the overlays written out: (2N, D) unit-direction rows per seed
            rows = torch.cat([part.x0_dir, part.x0_dir])
            rows[:, :n_labels] += torch.cat([part.label_pos, part.label_neg])
            dense.append(rows)
        x_dir = dense[0] if seeds is None else torch.stack(dense)
    else:
        x_dir = torch.nn.functional.normalize(torch.randn(*shape, 2 * n, d_in, generator=g), dim=-1)
        inp = PlainInput(x_dir)
    w, b = weight.clone().requires_grad_(), bias.clone().requires_grad_()
    h = torch.relu(x_dir @ w.transpose(-2, -1) + b.unsqueeze(-2))
    logits = SumOfSquares()(h) - 2.0
    ff_loss(logits[..., :n], logits[..., n:]).sum().backward()

    h_fast = layer.forward(inp)
    own, _ = layer.goodness(h_fast)
    own = own.detach().requires_grad_()
    ff_loss(own[..., :n] - 2.0, own[..., n:] - 2.0).sum().backward()
    layer.apply_goodness_gradient(inp, h_fast, own.grad)
    torch.testing.assert_close(layer.weight.grad, w.grad, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(layer.bias.grad, b.grad, rtol=1e-4, atol=1e-7)


def test_every_configurable_variant_is_a_registered_object():
    names = ("ff", "f-cff", "a-cff", "bp")
    assert list(VARIANTS) == list(names) and all(VARIANTS.is_builtin(n) for n in names)
    for name in names:
        config = TrainConfig(variant=name, hidden=(8, 8, 8))
        variant = variant_of(config)
        assert variant.name == name
        if variant.end_to_end:
            continue
        rule = variant.logit_rule(config, CPU)
        # the rule reads the other layers exactly for the collaborative variants
        assert rule.reads_other_layers == config.is_collaborative
        assert isinstance(rule, Collaboration if config.is_collaborative else PlainLogits)


@pytest.mark.parametrize("alpha", ["uniform", "distance", "ones", "learned"])
@pytest.mark.parametrize("placement", ["per_term", "single"])
def test_stacked_logit_rule_equals_one_rule_per_seed(alpha, placement):
    # a seed axis on γ, α and the goodness computes each seed's logit as one run does (bmm
    # against mm: equal to float rounding, not bit for bit)
    config = TrainConfig(variant="a-cff", hidden=(8, 8, 8), alpha=alpha, theta_placement=placement,
                         gamma=0.7)
    stacked = variant_of(config).logit_rule(config, CPU, (3,))
    with torch.no_grad():
        for layer in range(3):
            stacked.gammas[layer].copy_(torch.tensor([0.2, 0.7, -0.4]) + layer)
            if stacked.learn_alpha:
                stacked.alpha_logits[layer].copy_(
                    torch.randn(3, 2, generator=torch.Generator().manual_seed(layer)))
    g = torch.Generator().manual_seed(2)
    others = torch.rand(3, 3, 10, generator=g) * 4
    for layer in range(3):
        logits = stacked.logits(layer, others[:, layer], others)
        for s in range(3):
            alpha_row = (learned_alpha_row(stacked.alpha_logits[layer][s], layer, 3)
                         if stacked.learn_alpha else alpha_matrix(alpha, 3)[layer])
            expected = collaborative_logits(others[s, layer], others[s], stacked.gammas[layer][s],
                                            alpha_row, config.threshold, placement)
            torch.testing.assert_close(logits[s], expected, rtol=1e-6, atol=1e-6)


def test_registry_assignment_only_swaps_an_existing_entry_of_the_same_name():
    import dataclasses

    import pytest

    from cffbench.errors import ExtensionError
    from cffbench.extensions import DATASETS

    original = DATASETS["mnist"]
    stand_in = dataclasses.replace(original, raw_md5s=None)
    DATASETS["mnist"] = stand_in
    try:
        assert DATASETS["mnist"] is stand_in
    finally:
        DATASETS["mnist"] = original
    assert DATASETS["mnist"] is original
    with pytest.raises(ExtensionError, match="register"):
        DATASETS["not-a-dataset"] = stand_in
    with pytest.raises(ExtensionError, match="named 'mnist'"):
        DATASETS["fashion-mnist"] = stand_in
    assert DATASETS["fashion-mnist"] is not stand_in
