"""Could fusing the engine's row-wise work reach the bf16 floor target (issue 12: ≥ 0.85)?

In bf16 the matrix products are fast enough that the fp32 row-wise work after each product (bias,
ReLU, row norm, unit direction in the forward; ``δ = ∂L/∂pre`` and its bf16 copy in the gradient)
is a large share of an epoch. This script times that work for one layer of ``2N`` rows three ways,
interleaved, medians over repeats (the first two dropped):

- ``eager``: the engine's own calls, per :data:`cffbench.ff.layers.ROW_BLOCK` block, as
  :meth:`FFLayer.activations` and :meth:`FFLayer.apply_goodness_gradient` make them in bf16
  (``torch.add`` of the bias into the fp32 buffer, :func:`relu_norm_rows_`, the goodness's
  ``pre_activation_gradient_``, the bf16 copy);
- ``compiled``: the same arithmetic as one ``torch.compile`` function per block (inductor's C++
  kernels on CPU), its outputs copied into the engine's buffers, and once over all rows;
- ``minimum``: the memory traffic any fused kernel must still do — per block one pass that reads
  the bf16 product and writes ``h`` and the direction (forward), one pass that writes the bf16 δ
  (gradient) — as plain copies, which no arithmetic kernel can beat.

Then it measures the engine against the bf16 matmul floor (``bench_engine.floor_compare``, same
process) and projects the best ratio a perfect fusion could give:
``floor / (engine − passes × (eager − minimum))``, ``passes`` = the layers' forward and gradient
passes over ``2N`` rows in an epoch pair (2 + 2 for FF, plus CFF's forward-only passes of the
upper layer). Usage::

    python benchmarks/bench_rowwise.py --threads 2 --repeats 12
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from cffbench.ff.goodness import MEAN_SQUARES, NORM_EPS
from cffbench.ff.layers import relu_norm_rows_, row_blocks

import bench_engine


def _fused_forward(product: torch.Tensor, bias: torch.Tensor):
    h = torch.relu(product.float() + bias)
    norm = torch.linalg.vector_norm(h, dim=-1)
    return h, norm, h / (norm + NORM_EPS)[:, None]


def _fused_gradient(h: torch.Tensor, grad_goodness: torch.Tensor):
    delta = h * (grad_goodness * (2.0 / h.shape[-1]))[:, None]
    return delta, delta.to(torch.bfloat16)


class RowWork:
    """Buffers of one layer's ``2N × H`` row-wise work and the ways to do it."""

    def __init__(self, rows: int, width: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.product = torch.randn(rows, width, generator=g).to(torch.bfloat16)
        self.bias = torch.randn(width, generator=g) * 0.1
        self.h = torch.empty(rows, width)
        self.norm = torch.empty(rows)
        self.direction = torch.empty(rows, width)
        # ∂L/∂G = H/2 makes δ = h exactly, so repeated in-place gradients keep h's values (a
        # shrinking h would reach subnormal floats, whose arithmetic is far slower)
        self.grad_goodness = torch.full((rows,), width / 2.0)
        self.low = torch.empty(rows, width, dtype=torch.bfloat16)
        self.blocks = row_blocks(rows)
        self.forward_c = torch.compile(_fused_forward, dynamic=False)
        self.gradient_c = torch.compile(_fused_gradient, dynamic=False)

    def forward_eager(self) -> None:
        for rows in self.blocks:
            torch.add(self.product[rows], self.bias, out=self.h[rows])
            relu_norm_rows_(self.h, self.norm, self.direction, rows)

    def gradient_eager(self) -> None:
        for rows in self.blocks:
            block = self.h[rows]
            self.low[rows].copy_(MEAN_SQUARES.pre_activation_gradient_(block, self.grad_goodness[rows]))

    def forward_compiled(self) -> None:
        for rows in self.blocks:
            h, norm, direction = self.forward_c(self.product[rows], self.bias)
            self.h[rows].copy_(h)
            self.norm[rows].copy_(norm)
            self.direction[rows].copy_(direction)

    def gradient_compiled(self) -> None:
        for rows in self.blocks:
            delta, low = self.gradient_c(self.h[rows], self.grad_goodness[rows])
            self.h[rows].copy_(delta)
            self.low[rows].copy_(low)

    def forward_compiled_whole(self) -> None:
        self.forward_c(self.product, self.bias)

    def gradient_compiled_whole(self) -> None:
        self.gradient_c(self.h, self.grad_goodness)

    def forward_minimum(self) -> None:
        for rows in self.blocks:
            self.h[rows].copy_(self.product[rows])
            self.direction[rows].copy_(self.h[rows])

    def gradient_minimum(self) -> None:
        for rows in self.blocks:
            self.low[rows].copy_(self.h[rows])


def time_row_work(rows: int, width: int, repeats: int) -> dict[str, float]:
    """Median seconds of each way, interleaved (one call of each per repeat)."""
    work = RowWork(rows, width)
    ways = {name: getattr(work, name) for name in (
        "forward_eager", "forward_compiled", "forward_compiled_whole", "forward_minimum",
        "gradient_eager", "gradient_compiled", "gradient_compiled_whole", "gradient_minimum")}
    for way in ways.values():          # compile (one shape per block size) and warm up
        way()
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(repeats):
        for name, way in ways.items():
            start = time.perf_counter()
            way()
            times[name].append(time.perf_counter() - start)
    check_same_arithmetic(work)
    return {name: statistics.median(t[2:]) for name, t in times.items()}


def check_same_arithmetic(work: RowWork) -> None:
    """The compiled functions compute what the engine's calls compute (else the comparison is
    unfair): same h, norm and direction to fp32 rounding (inductor may reorder the norm's sum)."""
    work.forward_eager()
    expected = (work.h.clone(), work.norm.clone(), work.direction.clone())
    for got, want in zip(work.forward_c(work.product, work.bias), expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    delta, low = work.gradient_c(work.h, work.grad_goodness)
    work.gradient_eager()
    torch.testing.assert_close(delta, work.h, rtol=0, atol=0)
    torch.testing.assert_close(low, work.low, rtol=0, atol=0)


def main() -> None:
    parser = argparse.ArgumentParser(description="row-wise work of a bf16 epoch: eager, "
                                     "torch.compile, memory-traffic minimum; projected floor ratio")
    parser.add_argument("--n-train", type=int, default=50000)
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=7, help="engine epochs per layer (floor)")
    parser.add_argument("--variants", nargs="*", default=["ff", "f-cff"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {args.threads}, "
          f"cpu {torch.backends.cpu.get_cpu_capability()}, rows {2 * args.n_train}", flush=True)
    medians = time_row_work(2 * args.n_train, args.width, args.repeats)
    print(json.dumps({k: round(v * 1000, 1) for k, v in medians.items()} | {"unit": "ms"}),
          flush=True)
    saving = (medians["forward_eager"] - medians["forward_minimum"]
              + medians["gradient_eager"] - medians["gradient_minimum"])
    splits = bench_engine.mnist_like(args.n_train)
    for variant in args.variants:
        rows = bench_engine.floor_compare(splits, variant, "bf16", args.epochs)
        floor = sum(r["floor_s"] for r in rows)
        engine = sum(r["engine_s"] for r in rows)
        # FF: each layer one forward and one gradient pass over 2N rows; CFF's layer 1 also runs
        # layer 2 forward-only, counted here as a whole forward + gradient saving: an
        # overestimate, so the projection is the most a perfect fusion could give
        passes = len(rows) + (1 if variant != "ff" else 0)
        best = engine - passes * saving
        print(json.dumps({"variant": variant, "floor_s": round(floor, 3),
                          "engine_s": round(engine, 3), "floor_over_engine": round(floor / engine, 3),
                          "perfect_fusion_saving_s": round(passes * saving, 3),
                          "projected_floor_over_engine": round(floor / best, 3)}), flush=True)


if __name__ == "__main__":
    main()
