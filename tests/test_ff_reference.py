"""The fast engine against plain, hand-written autograd implementations of the reference FF.

The layer-level code below follows the pytorch_forward_forward reference line by line (overlay
the label, unit-direction input, ``nn.Linear`` + ReLU, ``G = mean(h²)``, softplus loss,
autograd, Adam); whole training loops are pinned to :mod:`cffbench.ff.reference`, the plain
definition of FF / F-CFF / A-CFF, for every α structure, SGD and Adam γ, minibatches, every
negatives mode, both schedules and both θ placements. Any optimisation in
:mod:`cffbench.ff.layers` / :mod:`cffbench.ff.train` / :mod:`cffbench.ff.predict` that changes
the maths shows up here as a mismatch beyond float tolerance.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from cffbench.ff import TrainConfig, train_run
from cffbench.ff.alpha import alpha_matrix
from cffbench.ff.goodness import collaborative_logits, ff_loss, goodness, overlay_labels, unit_direction
from cffbench.ff.layers import FFLayer, OverlayInput, PlainInput, init_linear
from cffbench.ff.predict import label_goodness
from cffbench.ff.reference import reference_train
from cffbench.ff.stacked import StackedFFTrainer, stacking_unsupported
from cffbench.ff.train import FFTrainer
from conftest import make_synthetic_splits

THETA = 2.0


def naive_layer(x_in: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """The reference ``Layer.forward``: ``relu(linear(x / (‖x‖ + 1e-4)))``."""
    direction = x_in / (x_in.norm(2, 1, keepdim=True) + 1e-4)
    return torch.relu(F.linear(direction, weight, bias))


def naive_ff_loss(h_pos: torch.Tensor, h_neg: torch.Tensor) -> torch.Tensor:
    g_pos, g_neg = h_pos.pow(2).mean(1), h_neg.pow(2).mean(1)
    return F.softplus(torch.cat([-g_pos + THETA, g_neg - THETA])).mean()


def tiny_batch(n: int = 12, d: int = 30, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    y_neg = (y + torch.randint(1, 10, (n,), generator=g)) % 10
    return x, y, y_neg


def test_overlay_writes_batch_max_into_label_pixel():
    x, y, _ = tiny_batch()
    out = overlay_labels(x, y)
    expected = torch.zeros(x.shape[0], 10)
    expected[torch.arange(x.shape[0]), y] = x.max()
    assert torch.equal(out[:, :10], expected)
    assert torch.equal(out[:, 10:], x[:, 10:])


def test_shared_base_matmul_equals_overlay_normalise_matmul():
    x, y, y_neg = tiny_batch()
    weight, bias = init_linear(x.shape[1], 7, torch.Generator().manual_seed(3))
    layer = FFLayer(x.shape[1], 7, torch.Generator().manual_seed(3), 0.03, torch.device("cpu"))
    h = layer.forward(OverlayInput.build(x, y, y_neg, 10))
    expected = torch.cat([naive_layer(overlay_labels(x, y), weight, bias),
                          naive_layer(overlay_labels(x, y_neg), weight, bias)])
    torch.testing.assert_close(h, expected, rtol=1e-5, atol=1e-6)


def test_label_goodness_equals_per_label_overlay_loop():
    x, y, _ = tiny_batch(n=20)
    gen = torch.Generator().manual_seed(4)
    weights = [init_linear(30, 16, gen), init_linear(16, 8, gen)]
    scores = label_goodness(weights, x, 10)
    for label in range(10):
        h = overlay_labels(x, torch.full_like(y, label))
        total = torch.zeros(x.shape[0])
        for weight, bias in weights:
            h = naive_layer(h, weight, bias)
            total = total + goodness(h)
        torch.testing.assert_close(scores[:, label], total, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("first_layer", [True, False])
@pytest.mark.parametrize("collaborative", [None, "per_term", "single"])
def test_manual_gradient_matches_autograd(first_layer, collaborative):
    x, y, y_neg = tiny_batch()
    d_in = x.shape[1]
    layer = FFLayer(d_in, 9, torch.Generator().manual_seed(5), 0.03, torch.device("cpu"))
    weight = layer.weight.detach().clone().requires_grad_()
    bias = layer.bias.detach().clone().requires_grad_()
    if first_layer:
        x_pos, x_neg = overlay_labels(x, y), overlay_labels(x, y_neg)
        inp = OverlayInput.build(x, y, y_neg, 10)
    else:
        x_pos, x_neg = x, x.flip(0) * 0.5
        inp = PlainInput(unit_direction(torch.cat([x_pos, x_neg])))
    g_all = torch.cat([goodness(naive_layer(x_pos, weight, bias)),
                       goodness(naive_layer(x_neg, weight, bias))])
    others = torch.stack([g_all.detach(), torch.linspace(0.5, 3.0, g_all.shape[0])])
    alpha_row = alpha_matrix("uniform", 2)[0]
    logits = collaborative_logits(g_all, others if collaborative else None, 0.7, alpha_row, THETA,
                                  collaborative or "per_term")
    n = x.shape[0]
    ff_loss(logits[:n], logits[n:]).backward()

    h = layer.forward(inp)
    own = h.square().mean(1).requires_grad_()
    logits_fast = collaborative_logits(own, others if collaborative else None, 0.7, alpha_row,
                                       THETA, collaborative or "per_term")
    ff_loss(logits_fast[:n], logits_fast[n:]).backward()
    layer.apply_goodness_gradient(inp, h, own.grad)
    torch.testing.assert_close(layer.weight.grad, weight.grad, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(layer.bias.grad, bias.grad, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("first_layer", [True, False])
def test_bf16_pre_activations_are_the_bf16_product_plus_the_fp32_bias_exactly(first_layer,
                                                                              monkeypatch):
    # precision="bf16": bf16 operands, a bf16 product, copied to fp32, then the fp32 bias, per
    # row block (several blocks here). The positives' rows (and every row of a later layer) are
    # exactly that product; a bias rounded to bf16, or a block written twice, is not.
    from cffbench.ff import layers

    monkeypatch.setattr(layers, "ROW_BLOCK", 8)
    x, y, y_neg = tiny_batch(n=20)
    layer = FFLayer(x.shape[1], 9, torch.Generator().manual_seed(5), 0.03, torch.device("cpu"),
                    precision="bf16")
    with torch.no_grad():
        layer.bias.normal_(generator=torch.Generator().manual_seed(6))   # a bias bf16 cannot hold
    assert not torch.equal(layer.bias, layer.bias.bfloat16().float())
    if first_layer:
        inp = OverlayInput.build(x, y, y_neg, 10)
        rows = inp.positive_matrix(torch.bfloat16)
    else:
        inp = PlainInput(unit_direction(torch.cat([x, x.flip(0) * 0.5])))
        rows = inp.matrix(torch.bfloat16)
    w_t = layer.weight.detach().transpose(0, 1).to(torch.bfloat16)
    want = torch.relu(torch.mm(rows, w_t).float() + layer.bias.detach())
    h = layer.forward(inp)
    assert torch.equal(h[: want.shape[0]], want)


@pytest.mark.parametrize("first_layer", [True, False])
def test_bf16_weight_gradient_matches_fp32_autograd_to_bf16_precision(first_layer, monkeypatch):
    # The bf16 path's manual gradient (δ cast to bf16 per row block, several blocks here) is the
    # fp32 autograd gradient up to bf16 rounding (~2^-8 per operand): a δ missing its negatives'
    # part, or h in place of δ, is off by far more.
    from cffbench.ff import layers

    monkeypatch.setattr(layers, "ROW_BLOCK", 8)
    x, y, y_neg = tiny_batch(n=40)
    grads = {}
    for precision in ("fp32", "bf16"):
        layer = FFLayer(x.shape[1], 9, torch.Generator().manual_seed(5), 0.03,
                        torch.device("cpu"), precision=precision)
        inp = (OverlayInput.build(x, y, y_neg, 10) if first_layer
               else PlainInput(unit_direction(torch.cat([x, x.flip(0) * 0.5]))))
        h = layer.forward(inp)
        own = h.square().mean(1).requires_grad_()
        n = x.shape[0]
        ff_loss(own[:n] - THETA, own[n:] - THETA).backward()
        if precision == "fp32":
            layer.autograd_goodness_gradient(inp, own.grad)     # the plain torch definition
        else:
            layer.apply_goodness_gradient(inp, h, own.grad)
        grads[precision] = (layer.weight.grad.clone(), layer.bias.grad.clone())
    for want, got in zip(grads["fp32"], grads["bf16"]):
        assert 0 < (got - want).norm() < 0.02 * want.norm()


def test_collaborative_logits_placements_by_hand():
    own = torch.tensor([3.0])
    others = torch.tensor([[3.0], [1.0], [5.0]])   # row 0 is the layer itself
    alpha_row = torch.tensor([0.0, 0.25, 0.75])
    # per_term: (3 − 2) + 0.5 (0.25 (1 − 2) + 0.75 (5 − 2)) = 1 + 0.5 · 2 = 2
    assert collaborative_logits(own, others, 0.5, alpha_row, THETA, "per_term").item() == 2.0
    # single: 3 + 0.5 (0.25 · 1 + 0.75 · 5) − 2 = 3 + 2 − 2 = 3
    assert collaborative_logits(own, others, 0.5, alpha_row, THETA, "single").item() == 3.0


def engine_and_reference(splits, **fields):
    config = TrainConfig(hidden=(20, 16, 12), epochs_per_layer=3, **fields)
    return train_run(config, splits), reference_train(config, splits)


def assert_engine_matches_reference(result, reference) -> None:
    curves = result.curves.sort_values(["layer", "epoch"]).reset_index(drop=True)
    expected = reference.curves.sort_values(["layer", "epoch"]).reset_index(drop=True)
    assert curves[["layer", "epoch"]].equals(expected[["layer", "epoch"]])
    for column in ("loss", "g_pos", "g_neg", "gamma"):
        torch.testing.assert_close(torch.tensor(curves[column].to_numpy()),
                                   torch.tensor(expected[column].to_numpy()), rtol=1e-5,
                                   atol=1e-6, equal_nan=True, msg=column)
    assert result.gamma_final == pytest.approx(reference.gamma_final, rel=1e-5)
    for row, row_ref in zip(result.alpha_final, reference.alpha_final):
        assert row == pytest.approx(row_ref, rel=1e-5, abs=1e-7)
    assert len(result.alpha_final) == len(reference.alpha_final)


#: The grid the engine is pinned on: each α structure, SGD / Adam γ, full batch and minibatches,
#: each negatives mode, both schedules, both θ placements (3 layers, so the α structures differ).
REFERENCE_CASES = {
    "ff": dict(variant="ff"),
    "ff_alternating": dict(variant="ff", schedule="alternating"),
    "ff_minibatch_redraw": dict(variant="ff", batch_size=40, negatives="redraw"),
    "ff_permutation": dict(variant="ff", negatives="permutation"),
    "fcff_uniform_per_term": dict(variant="f-cff", alpha="uniform", gamma=0.5),
    "fcff_uniform_single": dict(variant="f-cff", alpha="uniform", gamma=0.5,
                                theta_placement="single"),
    "fcff_distance_single": dict(variant="f-cff", alpha="distance", alpha_decay=0.3,
                                 theta_placement="single"),
    "fcff_ones_per_term": dict(variant="f-cff", alpha="ones", gamma=0.3),
    "fcff_learned_sgd": dict(variant="f-cff", alpha="learned", gamma_lr=0.5),
    "fcff_alternating_single": dict(variant="f-cff", schedule="alternating",
                                    theta_placement="single", gamma=0.5),
    "acff_sgd_per_term": dict(variant="a-cff", gamma=0.5, gamma_lr=0.05),
    "acff_sgd_single": dict(variant="a-cff", gamma=0.5, gamma_lr=0.05, theta_placement="single"),
    "acff_adam_learned": dict(variant="a-cff", alpha="learned", gamma_optimizer="adam",
                              gamma_lr=0.05),
    "acff_adam_distance_minibatch_redraw": dict(variant="a-cff", alpha="distance",
                                                gamma_optimizer="adam", batch_size=50,
                                                negatives="redraw"),
    "acff_alternating_ones_permutation": dict(variant="a-cff", schedule="alternating",
                                              alpha="ones", gamma=0.3, negatives="permutation"),
    "acff_alternating_learned_adam_minibatch": dict(
        variant="a-cff", schedule="alternating", alpha="learned", gamma_optimizer="adam",
        batch_size=50, theta_placement="single"),
    # the cases below fill the pairs the ones above miss (see the pairwise test): each α
    # structure with each θ placement, schedule, negatives mode and batching; SGD γ on minibatches
    "fcff_ones_single_minibatch_redraw": dict(variant="f-cff", alpha="ones", gamma=0.3,
                                              theta_placement="single", batch_size=50,
                                              negatives="redraw"),
    "acff_sgd_alternating_uniform_minibatch_redraw": dict(
        variant="a-cff", schedule="alternating", gamma=0.5, gamma_lr=0.05, batch_size=40,
        negatives="redraw"),
    # batch 30, not 50: with 50, one layer-1 weight gets a first gradient of 1e-8, which Adam
    # (eps 1e-8) turns into a step of about lr / 2, so a 1e-11 rounding difference between the
    # engine's summed pos + neg gradient and autograd's becomes a 3e-5 weight difference
    "fcff_alternating_distance_single_minibatch_permutation": dict(
        variant="f-cff", schedule="alternating", alpha="distance", theta_placement="single",
        batch_size=30, negatives="permutation"),
    "acff_sgd_learned_redraw": dict(variant="a-cff", alpha="learned", gamma_lr=0.05,
                                    negatives="redraw"),
    "fcff_learned_adam_permutation": dict(variant="f-cff", alpha="learned",
                                          gamma_optimizer="adam", gamma_lr=0.05,
                                          negatives="permutation"),
    "acff_adam_uniform_single_permutation": dict(variant="a-cff", gamma_optimizer="adam",
                                                 gamma_lr=0.05, theta_placement="single",
                                                 negatives="permutation"),
    "ff_alternating_minibatch_redraw": dict(variant="ff", schedule="alternating", batch_size=40,
                                            negatives="redraw"),
}


@pytest.fixture(scope="module")
def reference_splits():
    return make_synthetic_splits(n_train=150, n_features=36)


@pytest.mark.parametrize("name", sorted(REFERENCE_CASES))
def test_engine_matches_the_plain_reference_loop(reference_splits, name):
    result, reference = engine_and_reference(reference_splits, seed=2, **REFERENCE_CASES[name])
    assert_engine_matches_reference(result, reference)
    trainer = FFTrainer(TrainConfig(hidden=(20, 16, 12), epochs_per_layer=3, seed=2,
                                    **REFERENCE_CASES[name]), reference_splits,
                        torch.device("cpu"), None)
    trainer.train_sequential() if trainer.config.schedule == "sequential" else \
        trainer.train_alternating()
    for (w, b), (w_ref, b_ref) in zip(trainer.weights(), reference.weights):
        torch.testing.assert_close(w, w_ref, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(b, b_ref, rtol=1e-4, atol=1e-5)


def test_reference_cases_cover_every_structure_optimizer_mode_schedule_and_placement():
    cases = [TrainConfig(**fields) for fields in REFERENCE_CASES.values()]
    cff = [c for c in cases if c.is_collaborative]
    assert {c.alpha for c in cff} == {"uniform", "distance", "ones", "learned"}
    assert {c.gamma_optimizer for c in cases if c.variant == "a-cff"} == {"sgd", "adam"}
    assert {c.negatives for c in cases} == {"fixed", "redraw", "permutation"}
    assert {c.schedule for c in cff} == {"sequential", "alternating"}
    assert {c.theta_placement for c in cff} == {"per_term", "single"}
    assert any(c.batch_size for c in cff) and any(not c.batch_size for c in cff)


def test_reference_cases_cover_every_pair_of_collaboration_settings():
    # pairwise: a bug that shows only in one combination (say learned α with redrawn negatives,
    # or the single placement in the alternating schedule) cannot hide between the cases
    cff = [TrainConfig(**fields) for fields in REFERENCE_CASES.values()
           if TrainConfig(**fields).is_collaborative]
    settings = {"alpha": ("uniform", "distance", "ones", "learned"),
                "theta_placement": ("per_term", "single"),
                "schedule": ("sequential", "alternating"),
                "negatives": ("fixed", "redraw", "permutation"),
                "minibatch": (False, True)}

    def value(config, name):
        return config.batch_size > 0 if name == "minibatch" else getattr(config, name)

    for first, second in itertools.combinations(settings, 2):
        covered = {(value(c, first), value(c, second)) for c in cff}
        missing = set(itertools.product(settings[first], settings[second])) - covered
        assert not missing, f"no reference case for {first} x {second} = {sorted(missing)}"
    learned = [c for c in cff if c.variant == "a-cff" or c.alpha == "learned"]
    assert {(c.gamma_optimizer, c.batch_size > 0) for c in learned} == set(
        itertools.product(("sgd", "adam"), (False, True)))
    assert {(c.gamma_optimizer, c.schedule) for c in learned} == set(
        itertools.product(("sgd", "adam"), ("sequential", "alternating")))
    assert {c.gamma_optimizer for c in cff if c.variant == "f-cff" and c.alpha == "learned"} == {
        "sgd", "adam"}


#: The reference cases the seed-stacked engine trains itself (it falls back to train_run for
#: the alternating schedule, minibatches and redrawn negatives).
STACKABLE_CASES = sorted(name for name, fields in REFERENCE_CASES.items()
                         if stacking_unsupported(TrainConfig(**fields), 150) is None)


def test_stackable_cases_cover_every_variant_structure_optimizer_and_placement():
    cases = [TrainConfig(**REFERENCE_CASES[name]) for name in STACKABLE_CASES]
    cff = [c for c in cases if c.is_collaborative]
    assert {c.variant for c in cases} == {"ff", "f-cff", "a-cff"}
    assert {c.alpha for c in cff} == {"uniform", "distance", "ones", "learned"}
    assert {(c.alpha == "learned", c.theta_placement) for c in cff} == set(
        itertools.product((False, True), ("per_term", "single"))) - {(True, "single")}
    assert {c.gamma_optimizer for c in cff if c.variant == "a-cff" or c.alpha == "learned"} == {
        "sgd", "adam"}
    assert {c.negatives for c in cases} == {"fixed", "permutation"}


@pytest.mark.parametrize("name", STACKABLE_CASES)
def test_stacked_engine_matches_the_plain_reference_loop(reference_splits, name):
    # the seed-stacked engine against the definition itself, not only against train_run
    configs = [TrainConfig(hidden=(20, 16, 12), epochs_per_layer=3, seed=seed,
                           **REFERENCE_CASES[name]) for seed in (2, 5)]
    trainer = StackedFFTrainer(configs, [reference_splits] * 2, torch.device("cpu"))
    trainer.train_sequential()
    for s, (config, result) in enumerate(zip(configs, trainer.results(0.0))):
        reference = reference_train(config, reference_splits)
        assert_engine_matches_reference(result, reference)
        for (w, b), (w_ref, b_ref) in zip(trainer.seed_weights(s), reference.weights):
            torch.testing.assert_close(w, w_ref, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(b, b_ref, rtol=1e-4, atol=1e-5)
    assert not torch.equal(trainer.seed_weights(0)[0][0], trainer.seed_weights(1)[0][0])


def test_reference_gamma_moves_only_for_acff_and_alpha_rows_sum_to_one(reference_splits):
    _, fcff = engine_and_reference(reference_splits, variant="f-cff", alpha="learned", gamma=0.5)
    _, acff = engine_and_reference(reference_splits, variant="a-cff", gamma=0.5, gamma_lr=0.05)
    assert fcff.gamma_final == [0.5] * 3 and all(g != 0.5 for g in acff.gamma_final)
    assert all(abs(sum(row) - 1) < 1e-6 and row[i] == 0 for i, row in enumerate(fcff.alpha_final))
    assert fcff.alpha_final != alpha_matrix("uniform", 3).tolist()   # learned α moved


def test_reference_refuses_what_it_does_not_define(reference_splits):
    for fields in (dict(variant="bp"), dict(precision="bf16")):
        with pytest.raises(ValueError, match="reference covers"):
            reference_train(TrainConfig(hidden=(8,), epochs_per_layer=1, **fields), reference_splits)
