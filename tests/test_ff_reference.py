"""The fast engine against plain, hand-written autograd implementations of the reference FF.

The naive code below follows the pytorch_forward_forward reference line by line (overlay the
label, unit-direction input, ``nn.Linear`` + ReLU, ``G = mean(h²)``, softplus loss, autograd, Adam),
so any optimisation in :mod:`cffbench.ff.layers` / :mod:`cffbench.ff.predict` that changes the
maths shows up here as a mismatch beyond float tolerance.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cffbench.ff import TrainConfig
from cffbench.ff.alpha import alpha_matrix
from cffbench.ff.config import run_generators
from cffbench.ff.goodness import collaborative_logits, ff_loss, goodness, overlay_labels, unit_direction
from cffbench.ff.layers import FFLayer, OverlayInput, PlainInput, init_linear
from cffbench.ff.predict import label_goodness
from cffbench.ff.train import FFTrainer, draw_negative_labels
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


def test_collaborative_logits_placements_by_hand():
    own = torch.tensor([3.0])
    others = torch.tensor([[3.0], [1.0], [5.0]])   # row 0 is the layer itself
    alpha_row = torch.tensor([0.0, 0.25, 0.75])
    # per_term: (3 − 2) + 0.5 (0.25 (1 − 2) + 0.75 (5 − 2)) = 1 + 0.5 · 2 = 2
    assert collaborative_logits(own, others, 0.5, alpha_row, THETA, "per_term").item() == 2.0
    # single: 3 + 0.5 (0.25 · 1 + 0.75 · 5) − 2 = 3 + 2 − 2 = 3
    assert collaborative_logits(own, others, 0.5, alpha_row, THETA, "single").item() == 3.0


def naive_reference_training(splits, hidden, epochs, seed):
    """The reference protocol, straightforwardly: sequential layers, autograd, Adam per layer."""
    gens = run_generators(seed)
    widths = (splits.n_features, *hidden)
    params = [init_linear(a, b, gens["init"]) for a, b in zip(widths[:-1], widths[1:])]
    y_neg = draw_negative_labels(splits.y_train, 10, gens["negatives"], "fixed")
    h_pos, h_neg = overlay_labels(splits.x_train, splits.y_train), overlay_labels(splits.x_train, y_neg)
    losses, trained = [], []
    for weight, bias in params:
        weight, bias = weight.clone().requires_grad_(), bias.clone().requires_grad_()
        opt = torch.optim.Adam([weight, bias], lr=0.03)
        for _ in range(epochs):
            loss = naive_ff_loss(naive_layer(h_pos, weight, bias), naive_layer(h_neg, weight, bias))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        trained.append((weight.detach(), bias.detach()))
        with torch.no_grad():
            h_pos, h_neg = naive_layer(h_pos, weight, bias), naive_layer(h_neg, weight, bias)
    return trained, losses


def test_engine_matches_naive_reference_training():
    splits = make_synthetic_splits(n_train=200, n_features=40)
    config = TrainConfig(hidden=(24, 16), epochs_per_layer=4, seed=3)
    trainer = FFTrainer(config, splits, torch.device("cpu"), None)
    trainer.train_sequential()
    naive_weights, naive_losses = naive_reference_training(splits, (24, 16), 4, seed=3)
    torch.testing.assert_close(torch.tensor(trainer.curves_frame()["loss"].to_numpy()),
                               torch.tensor(naive_losses), rtol=1e-5, atol=1e-6, check_dtype=False)
    for (w, b), (w_ref, b_ref) in zip(trainer.weights(), naive_weights):
        torch.testing.assert_close(w, w_ref, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(b, b_ref, rtol=1e-4, atol=1e-5)


def naive_cff_training(splits, hidden, epochs, seed, gamma, placement, gamma_lr=None):
    """F-CFF written plainly (sequential, uniform α = 1/(L−1)): the other layers' goodness is
    computed forward-only — earlier layers frozen, later layers at their current (initial) weights
    on layer l's output — and enters layer l's logit. With ``gamma_lr``: A-CFF, γ_l learned by
    plain SGD while layer l trains."""
    gens = run_generators(seed)
    widths = (splits.n_features, *hidden)
    params = [init_linear(a, b, gens["init"]) for a, b in zip(widths[:-1], widths[1:])]
    y_neg = draw_negative_labels(splits.y_train, 10, gens["negatives"], "fixed")
    x_pos, x_neg = overlay_labels(splits.x_train, splits.y_train), overlay_labels(splits.x_train, y_neg)
    n_layers, losses, gammas = len(params), [], []
    for index in range(n_layers):
        in_pos, in_neg, lower = x_pos, x_neg, []
        with torch.no_grad():
            for w, b in params[:index]:
                in_pos, in_neg = naive_layer(in_pos, w, b), naive_layer(in_neg, w, b)
                lower.append((goodness(in_pos), goodness(in_neg)))
        weight, bias = (t.clone().requires_grad_() for t in params[index])
        opt = torch.optim.Adam([weight, bias], lr=0.03)
        gamma_l = torch.tensor(float(gamma), requires_grad=gamma_lr is not None)
        gamma_opt = torch.optim.SGD([gamma_l], lr=gamma_lr) if gamma_lr is not None else None
        for _ in range(epochs):
            h_pos, h_neg = naive_layer(in_pos, weight, bias), naive_layer(in_neg, weight, bias)
            others = list(lower)
            with torch.no_grad():
                u_pos, u_neg = h_pos.detach(), h_neg.detach()
                for w, b in params[index + 1:]:
                    u_pos, u_neg = naive_layer(u_pos, w, b), naive_layer(u_neg, w, b)
                    others.append((goodness(u_pos), goodness(u_neg)))
            logits = []
            for own, side in ((goodness(h_pos), 0), (goodness(h_neg), 1)):
                if placement == "per_term":
                    collab = sum((g[side] - THETA) / (n_layers - 1) for g in others)
                    logits.append((own - THETA) + gamma_l * collab)
                else:
                    collab = sum(g[side] / (n_layers - 1) for g in others)
                    logits.append(own + gamma_l * collab - THETA)
            loss = F.softplus(torch.cat([-logits[0], logits[1]])).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if gamma_opt is not None:
                gamma_opt.step()
                gamma_opt.zero_grad()
            losses.append(loss.item())
        params[index] = (weight.detach(), bias.detach())
        gammas.append(float(gamma_l.detach()))
    return params, losses, gammas


@pytest.mark.parametrize("variant", ["f-cff", "a-cff"])
@pytest.mark.parametrize("placement", ["per_term", "single"])
def test_cff_engine_matches_naive_collaborative_training(placement, variant):
    splits = make_synthetic_splits(n_train=150, n_features=36)
    gamma_lr = 0.05 if variant == "a-cff" else None
    config = TrainConfig(variant=variant, hidden=(20, 16, 12), epochs_per_layer=3, gamma=0.5,
                         gamma_lr=gamma_lr or 0.01, theta_placement=placement, seed=2)
    trainer = FFTrainer(config, splits, torch.device("cpu"), None)
    trainer.train_sequential()
    naive_weights, naive_losses, naive_gammas = naive_cff_training(
        splits, (20, 16, 12), 3, 2, 0.5, placement, gamma_lr)
    torch.testing.assert_close(torch.tensor(trainer.curves_frame()["loss"].to_numpy()),
                               torch.tensor(naive_losses), rtol=1e-5, atol=1e-6, check_dtype=False)
    for (w, b), (w_ref, b_ref) in zip(trainer.weights(), naive_weights):
        torch.testing.assert_close(w, w_ref, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(b, b_ref, rtol=1e-4, atol=1e-5)
    gammas = [trainer.collab.gamma_value(i) for i in range(3)]
    assert gammas == pytest.approx(naive_gammas, rel=1e-5)
    assert (variant == "a-cff") == any(g != 0.5 for g in gammas)


def naive_alternating_training(splits, hidden, epochs, seed, gamma):
    """Alternating schedule written plainly: every epoch each layer takes one Adam step, bottom to
    top, on the output of the layers below with their current (just updated) weights; with
    ``gamma`` the per-term uniform-α collaborative logit (later layers at their current weights)."""
    gens = run_generators(seed)
    widths = (splits.n_features, *hidden)
    params = [tuple(t.clone().requires_grad_() for t in init_linear(a, b, gens["init"]))
              for a, b in zip(widths[:-1], widths[1:])]
    opts = [torch.optim.Adam(list(p), lr=0.03) for p in params]
    y_neg = draw_negative_labels(splits.y_train, 10, gens["negatives"], "fixed")
    x_pos, x_neg = overlay_labels(splits.x_train, splits.y_train), overlay_labels(splits.x_train, y_neg)
    n_layers, losses = len(params), []
    for _ in range(epochs):
        for index, (weight, bias) in enumerate(params):
            in_pos, in_neg, others = x_pos, x_neg, []
            with torch.no_grad():
                for w, b in params[:index]:
                    in_pos, in_neg = naive_layer(in_pos, w, b), naive_layer(in_neg, w, b)
                    others.append((goodness(in_pos), goodness(in_neg)))
            h_pos, h_neg = naive_layer(in_pos, weight, bias), naive_layer(in_neg, weight, bias)
            with torch.no_grad():
                u_pos, u_neg = h_pos.detach(), h_neg.detach()
                for w, b in params[index + 1:]:
                    u_pos, u_neg = naive_layer(u_pos, w, b), naive_layer(u_neg, w, b)
                    others.append((goodness(u_pos), goodness(u_neg)))
            logit_pos, logit_neg = goodness(h_pos) - THETA, goodness(h_neg) - THETA
            if gamma is not None:
                logit_pos = logit_pos + gamma * sum((g - THETA) / (n_layers - 1) for g, _ in others)
                logit_neg = logit_neg + gamma * sum((g - THETA) / (n_layers - 1) for _, g in others)
            loss = F.softplus(torch.cat([-logit_pos, logit_neg])).mean()
            opts[index].zero_grad()
            loss.backward()
            opts[index].step()
            losses.append((index + 1, loss.item()))
    return [(w.detach(), b.detach()) for w, b in params], losses


@pytest.mark.parametrize("variant", ["ff", "f-cff"])
def test_alternating_schedule_matches_naive_alternating_training(variant):
    splits = make_synthetic_splits(n_train=150, n_features=36)
    config = TrainConfig(variant=variant, hidden=(20, 16, 12), epochs_per_layer=3, gamma=0.5,
                         schedule="alternating", seed=4)
    trainer = FFTrainer(config, splits, torch.device("cpu"), None)
    trainer.train_alternating()
    naive_weights, naive_losses = naive_alternating_training(
        splits, (20, 16, 12), 3, 4, 0.5 if variant == "f-cff" else None)
    curves = trainer.curves_frame().sort_values(["epoch", "layer"])
    torch.testing.assert_close(torch.tensor(curves["loss"].to_numpy()),
                               torch.tensor([loss for _, loss in naive_losses]),
                               rtol=1e-5, atol=1e-6, check_dtype=False)
    for (w, b), (w_ref, b_ref) in zip(trainer.weights(), naive_weights):
        torch.testing.assert_close(w, w_ref, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(b, b_ref, rtol=1e-4, atol=1e-5)
