"""Accuracy check of the engine against the published behaviour of the reference FF protocol.

Not a unit test: trains on real MNIST (n_train = 5000 stratified, 300 epochs per layer, 500-500,
full batch) and prints one row per run. An independent implementation of this protocol reaches
about 82-84 % test accuracy for FF (3 seeds). Usage::

    python benchmarks/accuracy_check.py                       # FF seeds 0-2 + the four CFF rows
    python benchmarks/accuracy_check.py --only ff --seeds 0 1 2 --precision bf16
"""

from __future__ import annotations

import argparse
import time

import torch

from cffbench.data import load_splits
from cffbench.ff import TrainConfig, train_run

RUNS = {
    "ff": dict(variant="ff"),
    "f-cff/per_term": dict(variant="f-cff", theta_placement="per_term"),
    "f-cff/single": dict(variant="f-cff", theta_placement="single"),
    "a-cff/per_term": dict(variant="a-cff", theta_placement="per_term"),
    "a-cff/single": dict(variant="a-cff", theta_placement="single"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2],
                        help="seeds for ff (the CFF rows use the first seed only unless --all-seeds)")
    parser.add_argument("--all-seeds", action="store_true")
    parser.add_argument("--n-train", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print("| run | seed | precision | test acc | val acc | train acc | gamma_final | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.only:
        seeds = args.seeds if name == "ff" or args.all_seeds else args.seeds[:1]
        for seed in seeds:
            splits = load_splits("mnist", n_train=args.n_train, seed=seed)
            config = TrainConfig(**RUNS[name], epochs_per_layer=args.epochs, seed=seed,
                                 precision=args.precision)
            start = time.perf_counter()
            result = train_run(config, splits)
            gammas = ", ".join(f"{g:.3f}" for g in result.gamma_final) or "-"
            print(f"| {name} | {seed} | {args.precision} | {100 * result.test_acc:.2f} | "
                  f"{100 * result.val_acc:.2f} | {100 * result.train_acc:.2f} | {gammas} | "
                  f"{time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
