"""Behaviour of ``train_run``: reductions, isolation, determinism, pairing, divergence, learning."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from cffbench.errors import TrainConfigError
from cffbench.ff import RunResult, TrainConfig, train_run
from cffbench.ff.predict import label_goodness
from cffbench.ff.train import FFTrainer
from conftest import make_synthetic_splits

CPU = torch.device("cpu")
SMALL = dict(hidden=(24, 20, 16), epochs_per_layer=4)


def trained(config: TrainConfig, splits) -> FFTrainer:
    trainer = FFTrainer(config, splits, CPU, None)
    if config.schedule == "sequential":
        trainer.train_sequential()
    else:
        trainer.train_alternating()
    return trainer


@pytest.fixture(scope="module")
def small_splits():
    return make_synthetic_splits(n_train=120, n_eval=60, n_features=32)


@pytest.mark.parametrize("schedule", ["sequential", "alternating"])
@pytest.mark.parametrize("placement", ["per_term", "single"])
@pytest.mark.parametrize("alpha", ["uniform", "distance", "learned", "ones"])
@pytest.mark.parametrize("variant", ["f-cff", "a-cff"])
def test_gamma_zero_equals_plain_ff(small_splits, variant, alpha, placement, schedule):
    ff = trained(TrainConfig(variant="ff", schedule=schedule, **SMALL), small_splits)
    cff = trained(TrainConfig(variant=variant, gamma=0.0, gamma_lr=0.0, alpha=alpha,
                              theta_placement=placement, schedule=schedule, **SMALL), small_splits)
    for (w, b), (w_c, b_c) in zip(ff.weights(), cff.weights()):
        assert torch.equal(w, w_c) and torch.equal(b, b_c)
    x = small_splits.x_test
    assert torch.equal(label_goodness(ff.weights(), x, 10), label_goodness(cff.weights(), x, 10))
    # the comparison above is not vacuous: training moved the weights away from their init
    initial = FFTrainer(TrainConfig(variant="ff", schedule=schedule, **SMALL), small_splits, CPU,
                        None).layers[0].weight
    assert not torch.equal(ff.weights()[0][0], initial)


@pytest.mark.parametrize("schedule", ["sequential", "alternating"])
@pytest.mark.parametrize("placement", ["per_term", "single"])
@pytest.mark.parametrize("gamma_optimizer", ["sgd", "adam"])
def test_acff_with_a_frozen_gamma_equals_fcff(small_splits, gamma_optimizer, placement, schedule):
    # A-CFF differs from F-CFF by learning γ and by nothing else: with η_γ = 0 every weight,
    # curve value and accuracy is the same bit for bit (so a difference between their results
    # at paper scale comes from γ's learning alone)
    fixed = dict(gamma=1.0, theta_placement=placement, schedule=schedule, **SMALL)
    fcff = train_run(TrainConfig(variant="f-cff", **fixed), small_splits)
    acff = train_run(TrainConfig(variant="a-cff", gamma_lr=0.0, gamma_optimizer=gamma_optimizer,
                                 **fixed), small_splits)
    assert (acff.test_acc, acff.val_acc, acff.train_acc) == (fcff.test_acc, fcff.val_acc,
                                                             fcff.train_acc)
    assert acff.gamma_final == fcff.gamma_final == [1.0] * 3
    columns = ["layer", "epoch", "loss", "g_pos", "g_neg", "gamma"]
    pd.testing.assert_frame_equal(acff.curves[columns], fcff.curves[columns])
    # not vacuous: with η_γ > 0 the same A-CFF run differs
    moving = train_run(TrainConfig(variant="a-cff", gamma_lr=0.05, gamma_optimizer=gamma_optimizer,
                                   **fixed), small_splits)
    assert not moving.curves[columns].equals(fcff.curves[columns])


def test_acff_with_gamma_init_zero_learns_gamma_away_from_zero(small_splits):
    result = train_run(TrainConfig(variant="a-cff", gamma=0.0, gamma_lr=0.5, **SMALL), small_splits)
    assert result.status == "ok"
    assert any(g != 0.0 for g in result.gamma_final)
    assert any("moves away from 0" in note for note in result.notes)


@pytest.mark.parametrize("variant", ["ff", "f-cff", "a-cff"])
@pytest.mark.parametrize("alpha", ["uniform", "learned"])
def test_step_on_one_layer_touches_no_other_layer(small_splits, variant, alpha):
    config = TrainConfig(variant=variant, alpha=alpha, gamma_optimizer="adam", **SMALL)
    trainer = FFTrainer(config, small_splits, CPU, None)
    for layer_index in range(3):
        inp, lower = trainer.chain_inputs(layer_index)
        before = [(l.weight.detach().clone(), l.bias.detach().clone()) for l in trainer.layers]
        for layer in trainer.layers:
            layer.weight.grad = layer.bias.grad = None
        collab_before = None
        collab = trainer.logit_rule if config.is_collaborative else None
        if collab is not None:
            collab_before = [collab.alpha_row(i).detach().clone() for i in range(3)]
            gammas_before = [collab.gamma_value(i) for i in range(3)]
        trainer.update_layer(layer_index, inp, lower)
        for other, layer in enumerate(trainer.layers):
            changed = not torch.equal(layer.weight, before[other][0])
            assert changed == (other == layer_index)
            if other != layer_index:
                assert torch.equal(layer.bias, before[other][1])
                assert layer.weight.grad is None and layer.bias.grad is None
        if collab_before is not None:
            for other in range(3):
                if other != layer_index:
                    assert torch.equal(collab.alpha_row(other), collab_before[other])
                    assert collab.gamma_value(other) == gammas_before[other]
            if variant == "a-cff":
                assert collab.gamma_value(layer_index) != gammas_before[layer_index]


def _same_result(a: RunResult, b: RunResult) -> bool:
    return (a.test_acc == b.test_acc and a.val_acc == b.val_acc and a.train_acc == b.train_acc
            and a.gamma_final == b.gamma_final and a.curves.equals(b.curves))


@pytest.mark.parametrize("variant", ["ff", "a-cff", "bp"])
def test_same_seed_is_bit_identical_and_other_seed_differs(small_splits, variant):
    config = TrainConfig(variant=variant, alpha="learned", negatives="redraw", batch_size=50, **SMALL)
    first, second = train_run(config, small_splits), train_run(config, small_splits)
    assert _same_result(first, second)
    other = train_run(config.model_copy(update={"seed": 1}), small_splits)
    assert not other.curves["loss"].equals(first.curves["loss"])


def test_ff_and_fcff_with_one_seed_share_initial_weights_and_negatives(small_splits):
    ff = FFTrainer(TrainConfig(variant="ff", seed=7, **SMALL), small_splits, CPU, None)
    cff = FFTrainer(TrainConfig(variant="f-cff", alpha="distance", seed=7, **SMALL), small_splits,
                    CPU, None)
    other_seed = FFTrainer(TrainConfig(variant="ff", seed=8, **SMALL), small_splits, CPU, None)
    for a, b, c in zip(ff.layers, cff.layers, other_seed.layers):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
        assert not torch.equal(a.weight, c.weight)
    assert torch.equal(ff.y_neg, cff.y_neg)
    assert not torch.equal(ff.y_neg, other_seed.y_neg)


@pytest.mark.parametrize("mode", ["fixed", "redraw"])
def test_negative_labels_are_always_wrong(small_splits, mode):
    trainer = FFTrainer(TrainConfig(negatives=mode, **SMALL), small_splits, CPU, None)
    assert bool((trainer.y_neg != trainer.y_train).all())
    counts = torch.bincount((trainer.y_neg - trainer.y_train) % 10, minlength=10)
    assert counts[0] == 0 and bool((counts[1:] > 0).all())


def test_absurd_lr_reports_divergence_without_raising(small_splits):
    result = train_run(TrainConfig(lr=1e30, **SMALL), small_splits)
    assert result.status == "diverged"
    assert isinstance(result.diverged_epoch, int) and 1 <= result.diverged_epoch <= 4
    assert math.isnan(result.test_acc) and math.isnan(result.train_acc)


@pytest.mark.parametrize("variant", ["f-cff", "a-cff"])
def test_absurd_gamma_reports_divergence_without_raising(small_splits, variant):
    result = train_run(TrainConfig(variant=variant, gamma=1e38, **SMALL), small_splits)
    assert result.status == "diverged" and result.diverged_epoch == 1
    assert math.isnan(result.val_acc)


@pytest.mark.parametrize("variant", ["ff", "a-cff", "bp"])
def test_lr_that_overflows_adam_reports_divergence(small_splits, variant):
    result = train_run(TrainConfig(variant=variant, lr=1e38, **SMALL), small_splits)
    assert result.status == "diverged" and result.diverged_epoch is not None


@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_step_factor_check_refuses_exactly_the_steps_torch_cannot_take(kind):
    # Pins the finiteness check against torch itself, at the float32 boundary: where the check
    # says "fits", torch steps; where it says "overflows", torch refuses the step.
    from cffbench.ff.result import largest_step_factor, optimizer_step

    fmax = torch.finfo(torch.float32).max
    base = fmax * (1 - 0.9) if kind == "adam" else fmax
    for lr in (base * 0.999, base * 1.001, base * 10, 1e30, 1e300):
        weight = torch.ones(3, requires_grad=True)
        cls = torch.optim.Adam if kind == "adam" else torch.optim.SGD
        optimizer = cls([weight], lr=lr)
        weight.grad = torch.ones(3)
        fits = largest_step_factor(optimizer.param_groups[0]) <= fmax
        probe = torch.ones(3, requires_grad=True)
        probe.grad = torch.ones(3)
        try:
            cls([probe], lr=lr).step()          # torch's own verdict
            torch_steps = True
        except RuntimeError:
            torch_steps = False
        assert fits == torch_steps, lr
        if fits:
            optimizer_step(optimizer)
            assert not torch.equal(weight, torch.ones(3))
        else:
            with pytest.raises(FloatingPointError):
                optimizer_step(optimizer)
            assert torch.equal(weight, torch.ones(3))     # refused before touching the weights


@pytest.mark.parametrize("overrides", [
    dict(variant="ff"),
    dict(variant="ff", schedule="alternating"),
    dict(variant="ff", negatives="permutation"),
    dict(variant="ff", batch_size=100, negatives="redraw"),
    dict(variant="ff", precision="bf16"),
    dict(variant="a-cff", theta_placement="single"),
    dict(variant="bp"),
])
def test_training_learns_well_above_chance(overrides):
    splits = make_synthetic_splits()
    result = train_run(TrainConfig(hidden=(64, 64), epochs_per_layer=40, **overrides), splits)
    assert result.status == "ok"
    assert result.test_acc > 0.6 and result.train_acc > 0.6   # chance is 0.1


def test_result_reports_curves_and_layer_stats(small_splits):
    seen = []
    config = TrainConfig(variant="a-cff", alpha="learned", **SMALL)
    result = train_run(config, small_splits, on_epoch=seen.append)
    assert list(result.curves.columns) == ["layer", "epoch", "loss", "g_pos", "g_neg", "gamma",
                                           "alpha_row"]
    assert len(result.curves) == 3 * 4 == len(seen)
    assert sorted(result.curves["layer"].unique()) == [1, 2, 3]
    assert all(len(pd.read_json(__import__("io").StringIO(r))) == 3 for r in result.curves["alpha_row"])
    assert [s["layer"] for s in result.layer_stats] == [1, 2, 3]
    assert all(s["seconds"] > 0 and s["g_pos"] >= 0 for s in result.layer_stats)
    assert len(result.alpha_final) == 3 and all(abs(sum(r) - 1) < 1e-6 for r in result.alpha_final)


def test_two_layer_cff_notes_that_alpha_structures_coincide(small_splits):
    result = train_run(TrainConfig(variant="f-cff", hidden=(16, 16), epochs_per_layer=2), small_splits)
    assert any("coincide" in note for note in result.notes)
    assert not train_run(TrainConfig(variant="f-cff", **SMALL), small_splits).notes


def test_long_runs_subsample_curves_with_first_and_last_epoch(small_splits):
    result = train_run(TrainConfig(hidden=(8,), epochs_per_layer=450), small_splits)
    epochs = result.curves["epoch"].tolist()
    assert len(epochs) == 200 and epochs[0] == 1 and epochs[-1] == 450
    assert epochs == sorted(set(epochs))


def test_invalid_config_raises_one_line_train_config_error():
    with pytest.raises(TrainConfigError, match="epochs_per_layer") as info:
        TrainConfig(epochs_per_layer=0)
    assert "\n" not in str(info.value)
    with pytest.raises(TrainConfigError, match="variant"):
        TrainConfig(variant="cff")
    with pytest.raises(TrainConfigError, match="device"):
        train_run(TrainConfig(), make_synthetic_splits(n_train=20, n_eval=10), device="tpu")


def test_effective_drops_fields_that_do_not_affect_the_variant():
    ff = TrainConfig(variant="ff").effective()
    assert not {"gamma", "gamma_lr", "alpha", "alpha_decay", "theta_placement"} & set(ff)
    assert ff["hidden"] == [500, 500] and "negatives" in ff
    assert TrainConfig(variant="ff", gamma=3.0).effective() == TrainConfig(variant="ff").effective()
    bp = TrainConfig(variant="bp").effective()
    assert "negatives" not in bp and "threshold" not in bp
    fcff = TrainConfig(variant="f-cff").effective()
    assert "gamma" in fcff and "gamma_lr" not in fcff and "alpha_decay" not in fcff
    assert "alpha_decay" in TrainConfig(variant="a-cff", alpha="distance", hidden=(9, 9, 9)).effective()


def test_effective_merges_alpha_structures_only_where_they_coincide():
    two = {TrainConfig(variant="f-cff", alpha=a).effective()["alpha"]
           for a in ("uniform", "distance", "learned", "ones")}
    assert two == {"uniform"}
    four = {a: TrainConfig(variant="f-cff", alpha=a, hidden=(50, 50, 50, 50)).effective()
            for a in ("uniform", "distance", "learned", "ones")}
    assert len({str(sorted(e.items())) for e in four.values()}) == 4
    assert "precision" not in TrainConfig(variant="bp").effective()
    assert "precision" in TrainConfig(variant="ff").effective()


def test_two_layer_alpha_structures_train_identically(small_splits):
    results = [train_run(TrainConfig(variant="a-cff", hidden=(16, 16), epochs_per_layer=4, alpha=a),
                         small_splits) for a in ("uniform", "distance", "learned", "ones")]
    assert len({(r.test_acc, r.val_acc, tuple(r.gamma_final)) for r in results}) == 1


def test_one_layer_alternating_equals_sequential(small_splits):
    seq = trained(TrainConfig(hidden=(16,), epochs_per_layer=5), small_splits)
    alt = trained(TrainConfig(hidden=(16,), epochs_per_layer=5, schedule="alternating"), small_splits)
    assert torch.equal(seq.weights()[0][0], alt.weights()[0][0])


def test_theta_placements_differ_once_gamma_is_nonzero(small_splits):
    per_term = trained(TrainConfig(variant="f-cff", theta_placement="per_term", **SMALL), small_splits)
    single = trained(TrainConfig(variant="f-cff", theta_placement="single", **SMALL), small_splits)
    assert not torch.equal(per_term.weights()[0][0], single.weights()[0][0])


def test_bf16_matmuls_stay_close_to_fp32(small_splits):
    fp32 = FFTrainer(TrainConfig(**SMALL), small_splits, CPU, None)
    bf16 = FFTrainer(TrainConfig(precision="bf16", **SMALL), small_splits, CPU, None)
    for index in range(3):
        inp32, _ = fp32.chain_inputs(index)
        inp16, _ = bf16.chain_inputs(index)
        h32, h16 = fp32.layers[index].forward(inp32).clone(), bf16.layers[index].forward(inp16)
        scale = h32.abs().max()
        assert 0 < (h32 - h16).abs().max() < 0.02 * scale   # bf16 really used, error ~ 2^-8


def test_permutation_negatives_are_a_shuffle_of_the_true_labels(small_splits):
    trainer = FFTrainer(TrainConfig(negatives="permutation", **SMALL), small_splits, CPU, None)
    assert torch.equal(trainer.y_neg.sort().values, trainer.y_train.sort().values)
    assert not torch.equal(trainer.y_neg, trainer.y_train)


def test_cuda_device_applies_the_tf32_switch(monkeypatch):
    from cffbench.ff.result import resolve_device

    matmul = torch.backends.cuda.matmul
    before = matmul.fp32_precision
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    try:
        monkeypatch.setenv("CFFBENCH_TF32", "1")
        assert resolve_device("auto") == torch.device("cuda")
        assert matmul.fp32_precision == "tf32"
        monkeypatch.setenv("CFFBENCH_TF32", "0")
        assert resolve_device("cuda:0") == torch.device("cuda:0")
        assert matmul.fp32_precision == "ieee"
        matmul.fp32_precision = "tf32"
        assert resolve_device("cpu") == torch.device("cpu")   # CPU never touches it
        assert matmul.fp32_precision == "tf32"
    finally:
        matmul.fp32_precision = before
