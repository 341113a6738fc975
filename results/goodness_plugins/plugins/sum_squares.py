"""Sum-of-squares goodness, ``G = Σ_j h_j²`` (Hinton 2022, "The Forward-Forward Algorithm",
arXiv 2212.13345, §2: "the sum of the squares of the activities"; the benchmark of Shah &
Tripathi 2025, arXiv 2511.18567, uses it as its baseline). cffbench's built-in ``mean_squares`` is
this divided by the layer width H, so with a threshold θ·H the two give the same logits up to the
factor H.

Plain autograd: only ``__call__`` is given, so its runs train through torch autograd (the run's
``gradient`` column says ``autograd``). Use it with ``plugins = ["sum_squares.py"]`` in a study,
or ``cffbench train --plugin examples/sum_squares.py --goodness sum_squares``.
"""

__version__ = "1.0"

from cffbench.extensions import GOODNESS
from cffbench.ff.goodness import GoodnessFunction


@GOODNESS.register
class SumSquares(GoodnessFunction):
    name = "sum_squares"

    def __call__(self, h):              # (..., N, H) -> (..., N)
        return h.pow(2).sum(dim=-1)
