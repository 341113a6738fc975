"""Per-run overhead of the executors, and their start-up: a study of K runs against one of W.

Two modes:

- ``--mode stub`` (default): the executor alone. ``make_executor(...).map_runs(tasks)`` in a fresh
  process, with a train function that returns a fixed result at once and a load function that
  builds a 20-row data set, so the time is the executor's: starting its workers (pool or
  cluster), sending each task, pickling each result back, tearing down. No data files needed.
- ``--mode cli``: the whole ``python -m cffbench run`` on real MNIST (``$CFFBENCH_DATA``) of runs
  so small (``hidden = [8]``, 1 epoch per layer, 200 training images, one seed: each worker loads
  the data once) that they add start-up, evaluation of the tiny model and the store's atomic
  writes to the executor's cost.

Studies of W = ``--workers`` runs and of K = ``--runs`` runs (they differ only in ``lr``) are
timed; per-run overhead = (t_K - t_W) / (K - W), start-up ≈ t_W (cli: plus imports and one data
load). The small study has W runs, not 1, so that every executor starts all its workers in both
(the standard library's pool starts a second process only for a second job). Wall time: the
stub child's own clock around ``make_executor`` + ``map_runs``, or the whole command (cli).
Configurations (executor x code checkout) are interleaved (A, B, C, A, B, C, ...) ``--repeats``
times so the shared machine's noise hits all alike; medians are printed. ``--checkout NAME=PATH``
runs the cffbench of another checkout (put first on ``PYTHONPATH``), e.g. an older commit
unpacked with ``git archive``. Usage::

    python benchmarks/bench_executors.py --mode stub --runs 48 --repeats 5 --workers 2 \\
        --executor local dask --checkout new=. --checkout old=/tmp/cffbench-old
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STUDY = '''\
name = "overhead"
seeds = [0]
[data]
datasets = ["mnist"]
n_train = 200
[train]
variant = "ff"
hidden = [8]
epochs_per_layer = 1
train_eval_size = 100
[grid]
lr = [{lrs}]
'''


def study_text(k: int) -> str:
    return STUDY.format(lrs=", ".join(f"{0.01 + 0.001 * i:.3f}" for i in range(k)))


# ----------------------------------------------------------------------------- stub child
def instant_train(config, splits, device="cpu", on_epoch=None):
    """A run that costs nothing: a fixed result of the shape train_run returns."""
    import pandas as pd

    from cffbench.ff.result import RunResult

    return RunResult("ok", 0.5, 0.5, 0.5, [], [], [], pd.DataFrame(), None, 0.0, device, [])


def tiny_load(name, root, n_train=None, seed=0):
    import torch

    from cffbench.data.splits import Splits

    x, y = torch.zeros(20, 4), torch.arange(20) % 10
    return Splits("stub", x, y, x, y, x, y, 10)


def stub_child(executor: str, k: int, workers: int) -> None:
    from cffbench.study import expand, make_executor, parse_study

    tasks = expand(parse_study(study_text(k)))
    t0 = time.perf_counter()
    engine = make_executor(executor, workers, None, "cpu", instant_train, tiny_load)
    outcomes = list(engine.map_runs(tasks))
    elapsed = time.perf_counter() - t0
    assert len(outcomes) == k and all(o.error == "" for o in outcomes), outcomes
    print(json.dumps({"seconds": elapsed}))


# ----------------------------------------------------------------------------- driver
def timed(mode: str, checkout: Path, executor: str, k: int, workers: int, scratch: Path,
          tag: str) -> float:
    """Wall seconds of one measurement (see the module docstring)."""
    env = {**os.environ, "PYTHONPATH": str(checkout.resolve())}
    if mode == "stub":
        command = [sys.executable, __file__, "--child", executor, str(k), str(workers)]
    else:
        study = scratch / f"overhead_{k}.toml"
        study.write_text(study_text(k))
        command = [sys.executable, "-m", "cffbench", "run", str(study), "--results",
                   str(scratch / f"r-{tag}"), "--executor", executor, "--workers", str(workers),
                   "--device", "cpu", "--checkpoint-every", "0"]
    t0 = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{executor} ({checkout}) failed:\n{done.stderr}")
    if mode == "stub":
        wall = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
    return wall


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        stub_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["stub", "cli"], default="stub")
    parser.add_argument("--runs", type=int, default=48, help="K, runs in the larger study")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--executor", nargs="+", default=["local"],
                        choices=["serial", "local", "dask"])
    parser.add_argument("--checkout", action="append", default=[],
                        help="NAME=PATH of a cffbench checkout to time (default: this one)")
    args = parser.parse_args()
    checkouts = dict(item.split("=", 1) for item in args.checkout) or {
        "this": str(Path(__file__).resolve().parents[1])}

    configs = [(name, Path(path), executor) for name, path in checkouts.items()
               for executor in args.executor]
    times: dict[tuple[str, str, int], list[float]] = {}
    sizes = (args.workers, args.runs)
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            for name, path, executor in configs:
                for k in sizes:
                    wall = timed(args.mode, path, executor, k, args.workers, Path(scratch),
                                 f"{name}-{executor}-{k}-{repeat}")
                    times.setdefault((name, executor, k), []).append(wall)
                    print(f"repeat {repeat}: {name:>8} {executor:>6} K={k:<3} {wall:6.2f} s",
                          flush=True)
    print(f"\n{args.mode} mode, medians of {args.repeats} repeats, {args.workers} workers, "
          f"K = {args.runs} runs vs W = {args.workers}")
    print(f"{'checkout':>8} {'executor':>8} {'t_W s':>7} {'t_K s':>7} {'per run ms':>10}")
    for name, _, executor in configs:
        tw, tk = (statistics.median(times[(name, executor, k)]) for k in sizes)
        print(f"{name:>8} {executor:>8} {tw:7.2f} {tk:7.2f} "
              f"{1000 * (tk - tw) / (args.runs - args.workers):10.1f}")


if __name__ == "__main__":
    main()
