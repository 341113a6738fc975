"""α matrices against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from cffbench.ff.alpha import alpha_matrix, learned_alpha_row

# hand-computed: distance weights decay^(|l−k|−1) with decay 0.5, rows normalised
HAND = {
    ("uniform", 2): [[0, 1], [1, 0]],
    ("distance", 2): [[0, 1], [1, 0]],
    ("ones", 2): [[0, 1], [1, 0]],
    ("uniform", 3): [[0, .5, .5], [.5, 0, .5], [.5, .5, 0]],
    ("distance", 3): [[0, 2 / 3, 1 / 3], [.5, 0, .5], [1 / 3, 2 / 3, 0]],
    ("ones", 3): [[0, 1, 1], [1, 0, 1], [1, 1, 0]],
    ("uniform", 4): [[0, 1 / 3, 1 / 3, 1 / 3], [1 / 3, 0, 1 / 3, 1 / 3], [1 / 3, 1 / 3, 0, 1 / 3],
                     [1 / 3, 1 / 3, 1 / 3, 0]],
    # row 0: 1, .5, .25 → /1.75; row 1: 1, 1, .5 → /2.5
    ("distance", 4): [[0, 4 / 7, 2 / 7, 1 / 7], [.4, 0, .4, .2], [.2, .4, 0, .4],
                      [1 / 7, 2 / 7, 4 / 7, 0]],
    ("ones", 4): [[0, 1, 1, 1], [1, 0, 1, 1], [1, 1, 0, 1], [1, 1, 1, 0]],
}


@pytest.mark.parametrize("structure,n_layers", sorted(HAND))
def test_alpha_matrix_matches_hand_computed(structure, n_layers):
    torch.testing.assert_close(alpha_matrix(structure, n_layers, 0.5),
                               torch.tensor(HAND[(structure, n_layers)], dtype=torch.float32))


def test_distance_decay_changes_weights():
    # decay 0.25, L = 3, row 0: 1, 0.25 → /1.25
    assert alpha_matrix("distance", 3, 0.25)[0].tolist() == pytest.approx([0, 0.8, 0.2])


@pytest.mark.parametrize("n_layers", [2, 3, 4])
def test_learned_alpha_starts_uniform_with_zero_diagonal(n_layers):
    for layer in range(n_layers):
        row = learned_alpha_row(torch.zeros(n_layers - 1), layer, n_layers)
        torch.testing.assert_close(row, alpha_matrix("uniform", n_layers)[layer])
    row = learned_alpha_row(torch.tensor([0.0, 1.0, 2.0]), 1, 4)
    assert row[1] == 0 and row.sum().item() == pytest.approx(1.0)
    assert row[0] < row[2] < row[3]


def test_unknown_alpha_structure_is_rejected():
    with pytest.raises(ValueError, match="allowed"):
        alpha_matrix("cosine", 3)
