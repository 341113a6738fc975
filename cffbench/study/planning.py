"""``plan``: what a study holds, what is stored, and how long the rest will take.

The time estimate comes from a short calibration. For each distinct architecture among the
remaining runs (variant, hidden, batch size, schedule, negatives, precision), after an untimed
warm-up, one run is timed with 2 and with 6 epochs per layer on the study's first dataset at the study's ``n_train``, on one
torch thread as a worker uses. Run time is taken as linear in the epochs per layer,
``t(E) = t(2) + (E - 2) * (t(6) - t(2)) / 4`` (the fixed part holds data handling and evaluation),
and the remaining runs' times are summed and divided by the number of workers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from cffbench.study.executors import LoadFn, TrainFn, default_load_fn, default_train_fn
from cffbench.study.grid import RunTask, expand, resolve_results_dir
from cffbench.study.runner import _as_study, _check_data, resolve_execution
from cffbench.study.spec import Study
from cffbench.study.store import DONE_STATUSES, RunStore

CALIBRATION_EPOCHS = (2, 6)
_ARCH_FIELDS = ("variant", "hidden", "batch_size", "schedule", "negatives", "precision")


@dataclass
class StudyPlan:
    """Result of :func:`plan_study`.

    Attributes
    ----------
    study : Study
    results_dir : Path
    planned, done, failed, remaining : int
        Runs in the grid; finished (ok / diverged); stored as failed (retried next run);
        still to run (failed ones included).
    workers : int
    estimate_s : float or None
        Wall-clock estimate for the remaining runs (None without calibration).
    calibration : DataFrame
        One row per architecture: the fields in ``_ARCH_FIELDS``, ``runs`` (remaining),
        ``t2_s``, ``t6_s`` (timed runs), ``per_run_s`` (mean estimate per remaining run).
    method : str
        How the estimate was made, in one sentence.
    """

    study: Study
    results_dir: Path
    planned: int
    done: int
    failed: int
    remaining: int
    workers: int
    estimate_s: Optional[float] = None
    calibration: pd.DataFrame = field(default_factory=pd.DataFrame)
    method: str = ""


def _arch_key(task: RunTask) -> tuple:
    return tuple(getattr(task.config, f) for f in _ARCH_FIELDS)


def _time_run(config: Any, splits: Any, train_fn: TrainFn, device: str) -> float:
    t0 = time.perf_counter()
    train_fn(config, splits, device=device)
    return time.perf_counter() - t0


def plan_study(study: Study | Path | str, results_dir: Path | str | None = None, *,
               calibrate: bool = True, workers: Optional[int] = None,
               device: Optional[str] = None, data_root: Optional[Path] = None,
               train_fn: Optional[TrainFn] = None,
               load_fn: Optional[LoadFn] = None) -> StudyPlan:
    """Count planned / done / remaining runs and estimate the remaining time; writes nothing.

    Parameters
    ----------
    calibrate : time short runs to estimate the remaining time (see the module docstring).
    Other parameters as in :func:`cffbench.study.run_study`.
    """
    import torch

    from cffbench.study.executors import resolve_device

    study = _as_study(study)
    tasks = expand(study)
    _, n_workers, dev = resolve_execution(study, None, workers, device)
    store = RunStore(resolve_results_dir(study, results_dir))
    store.check_owner(study)
    statuses = store.statuses()
    done = sum(statuses.get(t.run_id) in DONE_STATUSES for t in tasks)
    failed = sum(statuses.get(t.run_id) == "failed" for t in tasks)
    remaining = [t for t in tasks if statuses.get(t.run_id) not in DONE_STATUSES]
    plan = StudyPlan(study, store.root, len(tasks), done, failed, len(remaining), n_workers)
    if not calibrate or not remaining:
        plan.estimate_s = 0.0 if not remaining else None
        return plan

    root = _check_data(study, data_root) if load_fn is None else data_root
    load = load_fn or default_load_fn()
    train = train_fn or default_train_fn()
    dataset = study.data.datasets[0]
    splits = load(dataset, root, n_train=study.data.n_train, seed=study.seeds[0])
    groups: dict[tuple, list[RunTask]] = {}
    for task in remaining:
        groups.setdefault(_arch_key(task), []).append(task)
    rows, total = [], 0.0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # as a worker runs
    try:
        for key, members in groups.items():
            config = members[0].config
            # untimed warm-up: the first call pays for lazy initialisation (kernels, allocator)
            train(config.model_copy(update={"epochs_per_layer": 1}), splits,
                  device=resolve_device(dev))
            t1, t3 = (_time_run(config.model_copy(update={"epochs_per_layer": e}), splits, train,
                                resolve_device(dev)) for e in CALIBRATION_EPOCHS)
            slope = max(t3 - t1, 0.0) / (CALIBRATION_EPOCHS[1] - CALIBRATION_EPOCHS[0])
            e1 = CALIBRATION_EPOCHS[0]
            times = [max(t1 + (m.config.epochs_per_layer - e1) * slope, 0.0) for m in members]
            total += sum(times)
            rows.append({**dict(zip(_ARCH_FIELDS, key)), "runs": len(members),
                         f"t{CALIBRATION_EPOCHS[0]}_s": t1, f"t{CALIBRATION_EPOCHS[1]}_s": t3, "per_run_s": sum(times) / len(times)})
    finally:
        torch.set_num_threads(threads)
    plan.calibration = pd.DataFrame(rows)
    plan.estimate_s = total / n_workers
    n_desc = "all 50k" if study.data.n_train is None else f"n_train={study.data.n_train}"
    e1, e2 = CALIBRATION_EPOCHS
    plan.method = (f"timed {e1}- and {e2}-epoch runs of each of {len(groups)} architecture(s) on "
                   f"{dataset} ({n_desc}, one thread), extrapolated linearly in epochs per "
                   f"layer, summed over the remaining runs and divided by {n_workers} worker(s); "
                   f"process start and data loading (seconds per worker) are not included")
    return plan
