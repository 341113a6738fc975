"""The one definition of a dead layer (``cffbench.ff.goodness.is_dead_layer``) and the engine's
closing note that uses it (``cffbench.ff.result.finish_result``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cffbench.ff import TrainConfig
from cffbench.ff.goodness import DEAD_GOODNESS_FRACTION, DEAD_GOODNESS_TEXT, is_dead_layer
from cffbench.ff.result import finish_result
from conftest import make_synthetic_splits


def test_dead_bound_is_one_millionth_of_the_threshold():
    assert DEAD_GOODNESS_FRACTION == 1e-6 and DEAD_GOODNESS_TEXT == "1e-06·θ"
    assert is_dead_layer(2e-6, 0.0, 2.0) is True          # at the bound counts as dead
    assert is_dead_layer(2.1e-6, 0.0, 2.0) is False       # either side alive keeps the layer alive
    assert is_dead_layer(0.0, 2.1e-6, 2.0) is False


@pytest.mark.parametrize("g_pos, g_neg, dead", [
    (0.0, 0.0, True), (0.0, 3e-20, True), (9e-12, 3e-11, True),   # paper_mnist A-CFF layer 2
    (4e-4, 4e-4, False),                                          # any layer at initialisation
    (0.05, 0.003, False), (6.3, 2.8, False),                      # healthy trained layers
    (float("nan"), float("nan"), False),                          # diverged / bp: not dead
])
def test_a_layer_is_dead_only_far_below_its_initial_goodness(g_pos, g_neg, dead):
    assert is_dead_layer(g_pos, g_neg, 2.0) is dead


def test_dead_layers_are_found_elementwise_with_a_threshold_per_row():
    g_pos = np.array([0.0, 1e-11, 4e-4, 3e-6])
    g_neg = np.array([3e-20, 1e-11, 4e-4, 0.0])
    theta = np.array([2.0, 2.0, 2.0, 4.0])    # 3e-6 is dead at θ = 4 (bound 4e-6), alive at 2
    np.testing.assert_array_equal(is_dead_layer(g_pos, g_neg, theta), [True, True, False, True])
    assert not is_dead_layer(3e-6, 0.0, 2.0)


def _notes(goodness: list[tuple[float, float]], threshold: float = 2.0) -> list[str]:
    config = TrainConfig(variant="ff", hidden=(8, 8), epochs_per_layer=1, threshold=threshold,
                         train_eval_size=10)
    result = finish_result(
        config, make_synthetic_splits(n_train=20, n_eval=10, n_features=16), diverged_epoch=None,
        accuracy=lambda x, y: 0.5, train_eval_generator=torch.Generator().manual_seed(0),
        layer_goodness=lambda: goodness, layer_seconds=[0.0, 0.0], curves=[],
        finals=([], []), elapsed=lambda: 0.0, device="cpu")
    return result.notes


def test_a_tiny_but_nonzero_final_goodness_is_noted_dead_in_one_wording_for_every_run():
    note = ("layer 2 dead at the end of training (max(G_pos, G_neg) ≤ 1e-06·θ: every unit "
            "(almost) off)")
    assert _notes([(4.1, 2.0), (0.0, 3e-20)]) == [note]
    assert _notes([(4.1, 2.0), (1e-11, 2e-6)]) == [note]           # the bound itself is dead
    assert _notes([(4.1, 2.0), (1e-11, 2.1e-6)]) == []             # just above it is not
    assert _notes([(4.1, 2.0), (0.0, 3e-20)], threshold=1e-15) == []   # relative to θ


def test_a_small_healthy_goodness_gets_no_note():
    assert _notes([(4e-4, 4e-4), (4e-4, 3e-4)]) == []


def test_an_exactly_zero_goodness_keeps_the_collapsed_wording_the_golden_runs_pin():
    assert _notes([(0.0, 0.0), (1.0, 1.0)]) == [
        "layer 1 collapsed (G_pos = G_neg = 0: every unit dead)"]
