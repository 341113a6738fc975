"""``plan``: what a study holds, what is stored, and how long the rest will take.

The time estimate comes from a short calibration. For each distinct architecture among the
remaining runs (variant, hidden, batch size, schedule, negatives, precision), after an untimed
warm-up, one run is timed with 2 and with 6 epochs per layer on the study's first dataset at the study's ``n_train``, on one
torch thread as a worker uses. Run time is taken as linear in the epochs per layer,
``t(E) = t(2) + (E - 2) * (t(6) - t(2)) / 4`` (the fixed part holds data handling and evaluation),
and the remaining runs' times are summed and divided by the number of workers; a run that
resumes from a checkpoint counts with the share of its epochs still to train (its fixed part
too, a slight underestimate). When the study's
device resolves to CUDA the calibration runs on the GPU, synchronised before each clock reading.

With ``gpu_tflops`` the plan also gives a GPU estimate that needs no GPU: each remaining run's
matrix-multiply FLOPs (:func:`cffbench.study.flops.run_flops`) at that sustained rate plus
:data:`~cffbench.study.flops.STEP_OVERHEAD_S` per optimiser step, summed, then divided by the
number of GPUs (the serial bound: one run at a time per GPU) and by GPUs x ``tasks_per_gpu`` (the
optimistic bound: concurrent runs share a GPU perfectly). It is a FLOP count, not a measurement.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from cffbench.ff.checkpoint import read_sidecars
from cffbench.ff.result import NUMERICS_VERSION
from cffbench.study.flops import STEP_OVERHEAD_S
from cffbench.study.grid import RunTask, expand, resolve_results_dir
from cffbench.study.runner import _as_study, _check_data, resolve_execution
from cffbench.study.spec import Study
from cffbench.study.store import DONE_STATUSES, RunStore
from cffbench.study.worker import LoadFn, TrainFn, default_load_fn, default_train_fn

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
    in_flight : dict
        ``{run_id: fraction of its epochs done}`` of the remaining runs that have a checkpoint
        (they resume there; the estimate counts only their epochs left).
    workers : int
    estimate_s : float or None
        Wall-clock estimate for the remaining runs (None without calibration).
    calibration : DataFrame
        One row per architecture: the fields in ``_ARCH_FIELDS``, ``runs`` (remaining),
        ``t2_s``, ``t6_s`` (timed runs), ``per_run_s`` (mean estimate per remaining run).
    method : str
        How the estimate was made, in one sentence.
    gpu : DataFrame
        With ``gpu_tflops`` only: one row per dataset x architecture of the remaining runs:
        ``dataset``, the ``_ARCH_FIELDS``, ``runs``, ``tflop_per_run`` (1e12 FLOPs),
        ``steps_per_run`` (optimiser steps), ``gpu_s_per_run``.
    gpu_tflops : float or None
    gpu_total_s : float or None      sum of the remaining runs' GPU seconds
    gpu_serial_s, gpu_optimistic_s : float or None
        ``gpu_total_s / n_gpus`` and ``gpu_total_s / (n_gpus * tasks_per_gpu)``.
    n_gpus, tasks_per_gpu : int
        GPUs visible for the study's device (1 assumed when none is visible) and runs per GPU.
    gpu_note : str
        Where ``n_gpus`` and ``tasks_per_gpu`` came from.
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
    gpu: pd.DataFrame = field(default_factory=pd.DataFrame)
    gpu_tflops: Optional[float] = None
    gpu_total_s: Optional[float] = None
    gpu_serial_s: Optional[float] = None
    gpu_optimistic_s: Optional[float] = None
    n_gpus: int = 0
    tasks_per_gpu: int = 1
    gpu_note: str = ""
    in_flight: dict = field(default_factory=dict)

    def to_text(self) -> str:
        """What ``cffbench plan`` prints."""
        lines = [f"study {self.study.name}: {self.planned} runs planned, {self.done} done, "
                 f"{self.remaining} remaining ({self.failed} of them failed before) "
                 f"-> {self.results_dir}"]
        if self.in_flight:
            share = sum(self.in_flight.values()) / len(self.in_flight)
            lines.append(f"{len(self.in_flight)} of the remaining runs resume from a checkpoint "
                         f"({100 * share:.0f} % of their epochs done on average)")
        if self.estimate_s is not None and self.remaining:
            lines.append(f"estimated time for the remaining runs: {format_seconds(self.estimate_s)} "
                         f"with {self.workers} worker(s)")
            lines.append(f"how: {self.method}")
            if not self.calibration.empty:
                lines.append(self.calibration.to_string(index=False,
                                                        float_format=lambda v: f"{v:.2f}"))
        if self.gpu_total_s is not None and self.remaining:
            lines.append(f"GPU estimate at {self.gpu_tflops:g} TFLOPS (a FLOP count, not a "
                         f"measurement): {format_seconds(self.gpu_total_s)} of GPU time")
            lines.append(f"  serial bound (one run at a time on each of {self.n_gpus} GPU(s)): "
                         f"{format_seconds(self.gpu_serial_s)}")
            lines.append(f"  optimistic bound ({self.tasks_per_gpu} run(s) per GPU sharing it "
                         f"perfectly): {format_seconds(self.gpu_optimistic_s)}")
            lines.append(f"  how: matmul FLOPs / ({self.gpu_tflops:g} x 1e12 FLOP/s) + "
                         f"{STEP_OVERHEAD_S * 1e3:g} ms launch floor per optimiser step, summed "
                         f"over the remaining runs; {self.gpu_note}")
            lines.append(self.gpu.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
        return "\n".join(lines)


def format_seconds(seconds: float) -> str:
    """``1h 02m 03s`` / ``2m 03s``."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def _arch_key(task: RunTask) -> tuple:
    return tuple(getattr(task.config, f) for f in _ARCH_FIELDS)


def synchronize(device: str) -> None:
    """Wait for the GPU's queued work (a no-op on CPU): read clocks only after it."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


def _time_run(config: Any, splits: Any, train_fn: TrainFn, device: str) -> float:
    synchronize(device)   # GPU work is asynchronous: read the clock only once it is done
    t0 = time.perf_counter()
    train_fn(config, splits, device=device)
    synchronize(device)
    return time.perf_counter() - t0


def gpu_estimate(plan: StudyPlan, remaining: list[RunTask], tflops: float, device: str) -> None:
    """Fill ``plan``'s GPU fields from the remaining runs' FLOP counts (see the module doc)."""
    from cffbench.study.flops import gpu_seconds, optimizer_steps, run_flops
    from cffbench.study.gpu import gpu_plan, run_shape

    rows = []
    for task in remaining:
        flops = run_flops(task.config, **run_shape(task.dataset, task.n_train))
        steps = optimizer_steps(task.config, run_shape(task.dataset, task.n_train)["n_train"])
        rows.append({"dataset": task.dataset, **dict(zip(_ARCH_FIELDS, _arch_key(task))),
                     "tflop": flops / 1e12, "steps": steps,
                     "gpu_s": gpu_seconds(flops, steps, tflops)})
    runs = pd.DataFrame(rows)
    keys = ["dataset", *_ARCH_FIELDS]
    table = runs.groupby(keys, sort=False, dropna=False).agg(
        runs=("gpu_s", "size"), tflop_per_run=("tflop", "mean"),
        steps_per_run=("steps", "mean"), gpu_s_per_run=("gpu_s", "mean")).reset_index()
    table["hidden"] = table["hidden"].map(lambda h: "-".join(map(str, h)))
    gpus = gpu_plan(plan.study, device)
    plan.n_gpus = max(gpus.n_gpus, 1)
    plan.tasks_per_gpu = gpus.tasks_per_gpu
    plan.gpu_note = (f"{gpus.n_gpus} GPU(s) visible" if gpus.n_gpus else
                     "no GPU visible, 1 assumed") + f"; {gpus.how}"
    plan.gpu, plan.gpu_tflops = table, tflops
    plan.gpu_total_s = float(runs["gpu_s"].sum())
    plan.gpu_serial_s = plan.gpu_total_s / plan.n_gpus
    plan.gpu_optimistic_s = plan.gpu_total_s / (plan.n_gpus * plan.tasks_per_gpu)


def plan_study(study: Study | Path | str, results_dir: Path | str | None = None, *,
               calibrate: bool = True, workers: Optional[int] = None,
               device: Optional[str] = None, data_root: Optional[Path] = None,
               train_fn: Optional[TrainFn] = None,
               load_fn: Optional[LoadFn] = None,
               gpu_tflops: Optional[float] = None) -> StudyPlan:
    """Count planned / done / remaining runs and estimate the remaining time; writes nothing.

    Parameters
    ----------
    calibrate : time short runs to estimate the remaining time (see the module docstring).
    gpu_tflops : sustained TFLOPS of one GPU; adds the FLOP-count GPU estimate (no GPU needed).
    Other parameters as in :func:`cffbench.study.run_study`.

    Raises
    ------
    StudyError
        ``gpu_tflops <= 0``, or the errors of :func:`cffbench.study.run_study`.
    """
    from cffbench.errors import StudyError

    if gpu_tflops is not None and not gpu_tflops > 0:
        raise StudyError(f"--gpu-tflops must be > 0 (got {gpu_tflops})")
    import torch

    from cffbench.study.worker import resolve_device_name as resolve_device

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
    remaining_ids = {t.run_id for t in remaining}
    plan.in_flight = {info["run_id"]: min(max(float(info["epochs_done"]) / info["epochs_total"],
                                              0.0), 1.0)
                      for info in read_sidecars(store.checkpoints_dir)
                      if info["run_id"] in remaining_ids and info.get("epochs_total")
                      and info.get("numerics_version") == NUMERICS_VERSION
                      and isinstance(info.get("epochs_done"), (int, float))}
    if gpu_tflops is not None and remaining:
        gpu_estimate(plan, remaining, gpu_tflops, dev)
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
            # a run resuming from a checkpoint has only the rest of its epochs to train
            times = [max(t1 + (m.config.epochs_per_layer - e1) * slope, 0.0)
                     * (1.0 - plan.in_flight.get(m.run_id, 0.0)) for m in members]
            total += sum(times)
            rows.append({**dict(zip(_ARCH_FIELDS, key)), "runs": len(members),
                         f"t{CALIBRATION_EPOCHS[0]}_s": t1, f"t{CALIBRATION_EPOCHS[1]}_s": t3, "per_run_s": sum(times) / len(times)})
    finally:
        torch.set_num_threads(threads)
    plan.calibration = pd.DataFrame(rows)
    plan.estimate_s = total / n_workers
    n_desc = "all 50k" if study.data.n_train is None else f"n_train={study.data.n_train}"
    e1, e2 = CALIBRATION_EPOCHS
    where = (f"the GPU {resolve_device(dev)}, synchronised" if resolve_device(dev).startswith("cuda")
             else "one thread")
    plan.method = (f"timed {e1}- and {e2}-epoch runs of each of {len(groups)} architecture(s) on "
                   f"{dataset} ({n_desc}, {where}), extrapolated linearly in epochs per "
                   f"layer, summed over the remaining runs and divided by {n_workers} worker(s); "
                   f"process start and data loading (seconds per worker) are not included")
    if resolve_device(dev).startswith("cuda") and n_workers > 1:
        plan.method += ("; workers sharing a GPU are assumed not to slow each other (optimistic "
                        "when the GPU is busy)")
    return plan
