"""The negative-data rules (``TrainConfig.negatives``): how each run's wrong labels are drawn.

A :class:`NegativeRule` draws ``(N,)`` negative labels on the CPU from the true labels and the
run's ``negatives`` generator (:func:`cffbench.ff.config.run_generators`); ``redraw_each_epoch``
says whether the engine draws them anew before every epoch. The three built-ins are registered in
:data:`cffbench.extensions.NEGATIVES` like a plugin's rule.
"""

from __future__ import annotations

import torch

from cffbench import extensions


class NegativeRule:
    """One way of drawing negative labels. ``name`` is its ``TrainConfig.negatives``."""

    name: str
    redraw_each_epoch: bool = False

    def draw(self, y: torch.Tensor, n_classes: int, generator: torch.Generator) -> torch.Tensor:
        """Negative labels ``(N,)`` int64 on the CPU for true labels ``y`` ``(N,)`` (CPU)."""
        raise NotImplementedError


class WrongLabel(NegativeRule):
    """``fixed`` (drawn once) / ``redraw`` (every epoch): a uniformly drawn wrong label,
    ``(y + U{1, .., C-1}) mod C``."""

    def __init__(self, name: str, redraw_each_epoch: bool) -> None:
        self.name, self.redraw_each_epoch = name, redraw_each_epoch

    def draw(self, y, n_classes, generator):
        shift = torch.randint(1, n_classes, y.shape, generator=generator)
        return (y + shift) % n_classes


class Permutation(NegativeRule):
    """``permutation``: the reference's ``y[randperm(N)]``, drawn once (may equal the true label)."""

    name = "permutation"

    def draw(self, y, n_classes, generator):
        return y[torch.randperm(y.shape[0], generator=generator)]


for _rule in (WrongLabel("fixed", False), WrongLabel("redraw", True), Permutation()):
    extensions.NEGATIVES.register(_rule, builtin=True)


def negative_rule(name: str) -> NegativeRule:
    """The registered :class:`NegativeRule` called ``name``."""
    return extensions.NEGATIVES[name]
