"""Top-k goodness: the mean of the k largest squared activities of a layer, ``G = (1/k) Σ_{j ∈
top-k(h)} h_j²``, a *selective* goodness that measures only peak activity, after Akkuş, Kocabay,
Yüksel & Sawaf, "Selectivity and Shape in the Design of Forward-Forward Goodness Functions"
(arXiv 2604.13081). This is cffbench's reading of their top-k family (k fixed at 10% of the
units), not a port of their code; cite their paper for the idea and this file for the variant run.

It also gives the manual gradient, so its runs take the fast engine (``gradient`` = ``manual``):
``∂G/∂h_j = 2 h_j / k`` on the top-k units, 0 elsewhere (and 0 where the ReLU is off, since
h = 0 there). ``tests/test_plugins.py`` pins a manual gradient to its autograd form.
"""

__version__ = "1.0"

import torch

from cffbench.extensions import GOODNESS
from cffbench.ff.goodness import GoodnessFunction

FRACTION = 0.1


def _k(width: int) -> int:
    return max(1, round(FRACTION * width))


@GOODNESS.register
class TopKSquares(GoodnessFunction):
    name = "top_k_squares"

    def __call__(self, h):              # (..., N, H) -> (..., N)
        return h.pow(2).topk(_k(h.shape[-1]), dim=-1).values.mean(dim=-1)

    def pre_activation_gradient_(self, h, grad_goodness):
        k = _k(h.shape[-1])
        mask = torch.zeros_like(h).scatter_(-1, h.topk(k, dim=-1).indices, 1.0)
        return h.mul_(mask).mul_((grad_goodness * (2.0 / k))[..., None])
