"""The one GPU check to run when a device is lent; also runs on CPU with ``--smoke``.

Writes under ``--out`` (default ``$OUT``, else ``./gpu_check_out``):

- ``env.json``: torch / CUDA versions, the GPU, its free / total memory, TF32 on or off;
- ``paper_run.json``: (a) one paper-protocol run (784-500-500, 1000 full-batch epochs per layer,
  50k MNIST) of ``ff`` and of ``a-cff``: wall seconds (after an untimed 1-epoch warm-up,
  ``torch.cuda.synchronize`` before each clock reading), accuracies, the FLOP count and the TFLOPS
  it implies, the peak of ``torch.cuda.max_memory_allocated`` beside
  :func:`cffbench.study.gpu.estimate_run_memory`;
- ``stacked.json``: (b) 10 seeds of ``ff`` as one batched model (``train_stacked``), wall
  seconds in total and per run;
- ``plan.txt`` / ``plan.json``: (c) ``cffbench plan studies/paper_table1.toml`` on the device
  (calibration timed there) with the FLOP-count estimate at the TFLOPS measured in (a). The plan
  calibrates on MNIST only, so only MNIST is needed (Fashion-MNIST's files are not verified);
- ``log.txt``: the lines printed.

Usage on the lent machine (MNIST raw files, 53 MB, carried as ``data/MNIST``)::

    python benchmarks/gpu_check.py --data-root data          # ~3-5 min on one H100 (estimate)

and on CPU, to check that it runs (tiny sizes, synthetic MNIST-shaped data)::

    python benchmarks/gpu_check.py --smoke --synthetic --device cpu --out /tmp/gpu_check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from cffbench.ff import TrainConfig, train_run
from cffbench.ff.stacked import train_stacked
from cffbench.study.flops import gpu_seconds, optimizer_steps, run_flops
from cffbench.study.gpu import estimate_run_memory
from cffbench.study.planning import synchronize

PAPER = {"hidden": (500, 500), "epochs_per_layer": 1000, "n_train": None}
SMOKE = {"hidden": (32, 32), "epochs_per_layer": 3, "n_train": 300}
STACK_SEEDS = 10


def synthetic_loader(n_train_default: int):
    """``load_splits``-shaped loader of MNIST-shaped noise (784 features, 10 classes)."""
    from cffbench.data.splits import Splits

    def load(name, root=None, n_train=None, seed=0):
        generator = torch.Generator().manual_seed(seed)
        n = min(n_train or n_train_default, n_train_default)

        def draw(rows: int):
            return (torch.randn(rows, 784, generator=generator),
                    torch.arange(rows) % 10)

        (xtr, ytr), (xva, yva), (xte, yte) = draw(n), draw(200), draw(200)
        return Splits(name, xtr, ytr, xva, yva, xte, yte, 10)

    return load


def timed(fn, device: str):
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return out, time.perf_counter() - start


def environment(device: str) -> dict:
    from cffbench.ff.result import tf32_enabled

    info = {"python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "device": device, "tf32": tf32_enabled(),
            "threads": torch.get_num_threads()}
    if device.startswith("cuda"):
        free, total = torch.cuda.mem_get_info(device)
        info.update(gpu=torch.cuda.get_device_name(device), gpus=torch.cuda.device_count(),
                    free_bytes=free, total_bytes=total)
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CPU check)")
    parser.add_argument("--synthetic", action="store_true", help="MNIST-shaped noise, no files")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu_check_out")))
    parser.add_argument("--tflops", type=float, default=None,
                        help="TFLOPS for the plan's FLOP estimate (default: measured in (a))")
    args = parser.parse_args(argv)
    torch.set_num_threads(1 if args.smoke else torch.get_num_threads())
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    sizes = SMOKE if args.smoke else PAPER
    args.out.mkdir(parents=True, exist_ok=True)
    log_lines: list[str] = []

    def log(line: str) -> None:
        print(line, flush=True)
        log_lines.append(line)

    def write(name: str, payload: dict) -> None:
        (args.out / name).write_text(json.dumps(payload, indent=2, default=str))

    write("env.json", environment(device))
    if args.synthetic:
        load = synthetic_loader(sizes["n_train"] or 50_000)
    else:
        from cffbench.data import default_data_root, load_splits

        root = args.data_root or default_data_root()
        load = lambda name, _root=None, n_train=None, seed=0: load_splits(   # noqa: E731
            name, root, n_train=n_train, seed=seed)
    splits = load("mnist", None, n_train=sizes["n_train"], seed=0)
    shape = {"n_train": int(splits.x_train.shape[0]), "n_val": int(splits.x_val.shape[0]),
             "n_test": int(splits.x_test.shape[0]), "n_features": splits.n_features,
             "n_classes": splits.n_classes}
    log(f"device {device}; data {shape}")

    # (a) one paper-protocol run per variant
    runs, achieved = [], []
    for variant in ("ff", "a-cff"):
        config = TrainConfig(variant=variant, hidden=sizes["hidden"],
                             epochs_per_layer=sizes["epochs_per_layer"])
        train_run(config.model_copy(update={"epochs_per_layer": 1}), splits, device=device)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats(device)
        result, seconds = timed(lambda: train_run(config, splits, device=device), device)
        flops = run_flops(config, **shape)
        row = {"variant": variant, "seconds": seconds, "status": result.status,
               "test_acc": result.test_acc, "val_acc": result.val_acc, "flops": flops,
               "achieved_tflops": flops / seconds / 1e12,
               "flop_estimate_s_at_50_tflops": gpu_seconds(flops, optimizer_steps(
                   config, shape["n_train"]), 50.0),
               "estimated_peak_bytes": estimate_run_memory(config, **shape)}
        if device.startswith("cuda"):
            row["measured_peak_bytes"] = torch.cuda.max_memory_allocated(device)
        runs.append(row)
        achieved.append(row["achieved_tflops"])
        log(f"(a) {variant}: {seconds:.2f} s, test {result.test_acc:.4f}, "
            f"{row['achieved_tflops']:.2f} TFLOPS achieved")
    write("paper_run.json", {"config": {k: v for k, v in sizes.items()}, "runs": runs})

    # (b) a seed-stacked group of 10 ff seeds (the full split is the same for every seed)
    configs = [TrainConfig(variant="ff", hidden=sizes["hidden"],
                           epochs_per_layer=sizes["epochs_per_layer"], seed=s)
               for s in range(STACK_SEEDS)]
    results, seconds = timed(lambda: train_stacked(configs, [splits] * STACK_SEEDS,
                                                   device=device), device)
    write("stacked.json", {"seeds": STACK_SEEDS, "seconds": seconds,
                           "seconds_per_run": seconds / STACK_SEEDS,
                           "test_acc": [r.test_acc for r in results]})
    log(f"(b) {STACK_SEEDS} stacked ff seeds: {seconds:.2f} s ({seconds / STACK_SEEDS:.2f} s/run)")

    # (c) plan the paper's Table 1 study on this device
    import tempfile

    from cffbench.study import load_study, plan_study

    tflops = args.tflops or max(min(achieved), 1e-3)
    study = load_study(Path(__file__).resolve().parents[1] / "studies" / "paper_table1.toml")
    with tempfile.TemporaryDirectory() as results_dir:
        plan, seconds = timed(lambda: plan_study(
            study, Path(results_dir) / "paper_table1", device=device,
            data_root=args.data_root, load_fn=load, gpu_tflops=tflops), device)
    (args.out / "plan.txt").write_text(plan.to_text() + "\n")
    write("plan.json", {"planned": plan.planned, "remaining": plan.remaining,
                        "estimate_s": plan.estimate_s, "workers": plan.workers,
                        "method": plan.method, "gpu_tflops": plan.gpu_tflops,
                        "gpu_serial_s": plan.gpu_serial_s,
                        "gpu_optimistic_s": plan.gpu_optimistic_s,
                        "plan_seconds": seconds,
                        "calibration": plan.calibration.to_dict(orient="records")})
    log(f"(c) plan: {plan.estimate_s:.0f} s calibrated, {plan.gpu_serial_s:.0f} s FLOP estimate "
        f"at {tflops:.1f} TFLOPS (serial); plan took {seconds:.1f} s")
    (args.out / "log.txt").write_text("\n".join(log_lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
