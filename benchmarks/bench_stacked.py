"""Seed stacking against separate runs: S seeds as one batched model vs S ``train_run`` calls.

Both sides train the same S configs (identical but ``seed``) on each seed's stratified MNIST
``n_train`` subset, full batch, sequential schedule, and evaluate (test / val / train accuracy);
data loading is outside the timing. Stacked and separate repeats are interleaved so the shared
machine's noise hits both alike; medians of the repeats are printed with the ratio
separate / stacked (> 1: stacking is faster). It also prints the largest test-accuracy difference
per seed between the two, which should be 0 or one test image. Usage::

    python benchmarks/bench_stacked.py --seeds 5 --n-train 2000 --epochs 20 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from cffbench.data import load_splits
from cffbench.ff import TrainConfig, train_run
from cffbench.ff.stacked import train_stacked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=20, help="epochs per layer")
    parser.add_argument("--hidden", default="500-500")
    parser.add_argument("--variant", default="ff", choices=["ff", "f-cff", "a-cff"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    hidden = tuple(int(h) for h in args.hidden.split("-"))
    configs = [TrainConfig(variant=args.variant, hidden=hidden, epochs_per_layer=args.epochs,
                           seed=seed) for seed in range(args.seeds)]
    splits = [load_splits("mnist", n_train=args.n_train, seed=seed) for seed in range(args.seeds)]

    stacked_s, separate_s, worst_diff = [], [], 0.0
    for _ in range(args.repeats):
        start = time.perf_counter()
        stacked = train_stacked(configs, splits, device=args.device)
        stacked_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        separate = [train_run(c, s, device=args.device) for c, s in zip(configs, splits)]
        separate_s.append(time.perf_counter() - start)
        worst_diff = max(worst_diff, *(abs(a.test_acc - b.test_acc) for a, b in zip(stacked, separate)))

    stacked_median, separate_median = statistics.median(stacked_s), statistics.median(separate_s)
    print(f"{args.seeds} seeds, {args.variant}, MNIST n_train {args.n_train}, {args.hidden}, "
          f"{args.epochs} epochs/layer, {args.threads} thread(s), device {stacked[0].device}")
    print(f"stacked  (one batched model): median {stacked_median:.2f} s  "
          f"({', '.join(f'{t:.2f}' for t in stacked_s)})")
    print(f"separate ({args.seeds} x train_run):     median {separate_median:.2f} s  "
          f"({', '.join(f'{t:.2f}' for t in separate_s)})")
    print(f"ratio separate / stacked: {separate_median / stacked_median:.2f}x")
    print(f"test accuracy per seed, stacked vs separate: {[round(r.test_acc, 4) for r in stacked]} "
          f"vs {[round(r.test_acc, 4) for r in separate]}; largest difference {worst_diff:.4f}")


if __name__ == "__main__":
    main()
