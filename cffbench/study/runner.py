"""Drive a study: validate everything, then run only what is missing and store each result.

``run_study`` checks the study, the execution settings, the datasets and the results folder
before it writes anything, so a user mistake leaves the store as it was. It then runs the runs
that have no finished (ok / diverged) part file, in completion order, and stores each one as it
arrives; a failing or diverging run is recorded and the study goes on. Ctrl-C stops the workers;
every finished run is already stored and the store stays readable. Runs checkpoint into
``<results>/checkpoints/`` (``[execution] checkpoint_every``, :mod:`cffbench.ff.checkpoint`): an
interrupted run resumes from its last checkpoint on the next call, and a stored run's checkpoint
is deleted.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import pandas as pd

from cffbench.errors import StudyError
from cffbench.ff.checkpoint import CheckpointPlan, read_sidecars, validate_every
from cffbench.study.executors import make_executor
from cffbench.study.grid import RunTask, expand, resolve_results_dir
from cffbench.study.spec import Study, load_study, validate_device
from cffbench.study.plan_record import PLAN_RECORD, record_plan
from cffbench.study.store import DONE_STATUSES, RunStore, provenance, read_study
from cffbench.study.worker import LoadFn, RunOutcome, TrainFn


class SilentReporter:
    """Progress hooks (no output); :class:`cffbench.study.progress.RichReporter` draws them.

    ``epoch`` is called with each recorded curve row only when ``wants_epochs`` is true.
    """

    wants_epochs = False

    def start(self, study: Study, tasks: list[RunTask], total: int, done: int) -> None: ...
    def epoch(self, run_id: str, record: dict) -> None: ...
    def finished(self, task: RunTask, outcome: RunOutcome) -> None: ...
    def stop(self) -> None: ...


@dataclass
class RunSummary:
    """What one ``run_study`` call did.

    Attributes
    ----------
    results_dir : Path
    planned : int            runs in the expanded grid
    already_done : int       finished before this call (skipped)
    executed : int           runs executed by this call
    ok, diverged, failed : int   statuses of the executed runs
    notes : list of str      e.g. corrupt part files redone, study file changed
    """

    results_dir: Path
    planned: int
    already_done: int = 0
    executed: int = 0
    ok: int = 0
    diverged: int = 0
    failed: int = 0
    notes: list[str] = field(default_factory=list)


def _as_study(study: Study | Path | str) -> Study:
    study = study if isinstance(study, Study) else load_study(study)
    if not study.text:   # the store keeps the study file verbatim beside the results
        raise StudyError(f"study {study.name!r} has no TOML text; create it with load_study() "
                         f"or parse_study()")
    return study


def resolve_execution(study: Study, executor: Optional[str], workers: Optional[int],
                      device: Optional[str]) -> tuple[str, int, str]:
    """Command-line overrides over ``[execution]``.

    Workers default to ``n_gpus * tasks_per_gpu`` for the ``local`` executor on CUDA (``device``
    ``cuda``, ``cuda:N`` or ``auto`` with a GPU visible; see :mod:`cffbench.study.gpu`), else to
    the CPU count. GPUs are found through :data:`cffbench.study.gpu.PROBE`.
    """
    from cffbench.study import gpu

    name = executor or study.execution.executor
    try:
        dev = validate_device(device or study.execution.device)
    except ValueError as exc:
        raise StudyError(f"--device: {exc}") from None
    visible = gpu.PROBE.device_count() if dev != "cpu" else 0
    if dev.startswith("cuda") and not visible:
        raise StudyError(f"device {dev!r} requested but CUDA is not available; "
                         f"use --device cpu or auto")
    if dev.startswith("cuda:") and int(dev.split(":")[1]) >= visible:
        raise StudyError(f"device {dev!r} requested but only {visible} GPU(s) are visible "
                         f"(cuda:0 .. cuda:{visible - 1})")
    n_workers = workers if workers is not None else study.execution.workers
    if n_workers is None and name == "local" and visible:
        plan = gpu.gpu_plan(study, dev)
        n_workers = plan.n_gpus * plan.tasks_per_gpu
    if n_workers is None:
        n_workers = os.cpu_count() or 1
    return name, n_workers, dev


def _check_data(study: Study, data_root: Optional[Path]) -> Path:
    """Verify each dataset's raw files before anything is written (DataError names the fix)."""
    from cffbench.data import default_data_root, verify

    root = Path(data_root) if data_root is not None else default_data_root()
    for name in study.data.datasets:
        verify(name, root)
    return root


def _refuse_mixed_numerics(store: RunStore, tasks: list[RunTask]) -> None:
    """StudyError if runs are still to do and stored runs came from another numerics version."""
    from cffbench.ff.result import NUMERICS_VERSION

    statuses = store.statuses()
    done = [t.run_id for t in tasks if statuses.get(t.run_id) in DONE_STATUSES]
    if len(done) == len(tasks):
        return
    other = {v: n for v, n in store.numerics_versions(done).items() if v != NUMERICS_VERSION}
    if other:
        held = ", ".join(f"{n} run{'s' if n != 1 else ''} of numerics version "
                         f"{'unrecorded' if v is None else v}"
                         for v, n in sorted(other.items(), key=lambda kv: str(kv[0])))
        raise StudyError(
            f"{store.root} holds {held} and this engine is version {NUMERICS_VERSION}: the study "
            f"would compare runs of two engines; finish it from a checkout of the commit its runs "
            f"record (git_commit), or pass --allow-mixed-numerics")


def run_study(study: Study | Path | str, results_dir: Path | str | None = None, *,
              executor: Optional[str] = None, workers: Optional[int] = None,
              device: Optional[str] = None, force: bool = False,
              data_root: Optional[Path] = None, train_fn: Optional[TrainFn] = None,
              load_fn: Optional[LoadFn] = None, reporter: Any = None,
              checkpoint_every: Any = None, allow_mixed_numerics: bool = False) -> RunSummary:
    """Run the missing runs of a study and store each result.

    Parameters
    ----------
    study : a :class:`Study` or the path of a study file.
    results_dir : default ``results/<study name>``.
    executor, workers, device : override ``[execution]``.
    force : rerun every run, replacing stored results.
    data_root : dataset root (default ``$CFFBENCH_DATA`` or ``./data``).
    train_fn : executes one run, ``train_fn(config, splits, device=, on_epoch=)``; default
        :func:`cffbench.ff.train_run`. Must be picklable for the ``local`` executor.
    load_fn : ``load_fn(name, root, n_train=, seed=) -> Splits``; default
        :func:`cffbench.data.load_splits`. When given, the raw files are not verified first.
    reporter : progress hooks (see :class:`SilentReporter`).
    checkpoint_every : override ``[execution] checkpoint_every``: epochs between checkpoints,
        ``0`` = off, ``"auto"`` = about every 4 minutes of training. Not part of run ids.
    allow_mixed_numerics : add runs to a store whose runs another engine numerics version
        (:data:`cffbench.ff.NUMERICS_VERSION`) produced; refused by default, because its
        contrasts would then compare runs of two engines.

    Returns
    -------
    RunSummary

    Raises
    ------
    StudyError, DataError
        On any user mistake, before the store is touched.
    KeyboardInterrupt
        After Ctrl-C, once the workers are stopped; finished runs are stored.
    """
    study = _as_study(study)
    tasks = expand(study)
    name, n_workers, dev = resolve_execution(study, executor, workers, device)
    try:
        every = validate_every(study.execution.checkpoint_every if checkpoint_every is None
                               else checkpoint_every)
    except ValueError as exc:
        raise StudyError(f"--checkpoint-every: {exc}") from None
    reporter = reporter or SilentReporter()
    # Per-epoch records cross process boundaries only when the reporter shows them (-v).
    on_epoch = reporter.epoch if getattr(reporter, "wants_epochs", False) else None
    engine = make_executor(name, n_workers, None, dev, train_fn, load_fn, on_epoch,
                           execution=study.execution)
    store = RunStore(resolve_results_dir(study, results_dir))
    store.check_owner(study)
    if not (force or allow_mixed_numerics):
        _refuse_mixed_numerics(store, tasks)
    if load_fn is None:
        engine.data_root = _check_data(study, data_root)
    else:
        engine.data_root = Path(data_root) if data_root is not None else None

    # -- from here on the store may change -------------------------------------------------
    summary = RunSummary(store.root, len(tasks))
    if store.claim(study):
        summary.notes.append(f"{store.study_file} updated: the study file changed since the "
                             f"last run")
    moved, restored = store.set_aside({t.run_id for t in tasks})
    if moved:
        summary.notes.append(f"{moved} run(s) no longer in the study moved to "
                             f"{store.root / 'superseded'} (kept, not analysed)")
    if restored:
        summary.notes.append(f"{restored} superseded run(s) are in the study again and were restored")
    store.remove_stale_temps()
    statuses = store.statuses()
    corrupt = [rid for rid, status in statuses.items() if status == "corrupt"]
    for rid in corrupt:
        store.discard(rid)
    if corrupt:
        summary.notes.append(f"{len(corrupt)} unreadable part file(s) removed; those runs are redone")
    # the plan as declared before these runs: a later change is reported as a deviation
    finished = [rid for rid, status in statuses.items() if status in DONE_STATUSES]
    if record_plan(store.root, study, finished, provenance()["git_commit"]) and finished:
        summary.notes.append(f"the [analysis] plan was recorded with {len(finished)} finished run(s) "
                             f"already stored ({store.root / PLAN_RECORD}); analyses report whether "
                             "it changed after those runs")
    by_id = {t.run_id: t for t in tasks}
    todo = [t for t in tasks if force or statuses.get(t.run_id) not in DONE_STATUSES]
    summary.already_done = len(tasks) - len(todo)
    # A checkpoint of a run that is stored, no longer planned, or forced to start over is stale.
    stale = [rid for rid in store.checkpointed_runs()
             if force or rid not in by_id or statuses.get(rid) in DONE_STATUSES]
    for rid in stale:
        store.discard_checkpoint(rid)
    if stale:
        summary.notes.append(f"{len(stale)} stale checkpoint(s) removed")
    engine.checkpoints = (CheckpointPlan(store.checkpoints_dir.resolve(), every)
                          if every != 0 else None)

    def pending() -> Iterator[RunTask]:
        for task in todo:   # another process may have finished it meanwhile
            if force or not store.is_done(task.run_id):
                yield task

    reporter.start(study, tasks, len(tasks), summary.already_done)
    try:
        with contextlib.closing(engine.map_runs(pending())) as outcomes:
            for outcome in outcomes:
                task = by_id[outcome.run_id]
                store.record(task, outcome, force=force)
                if outcome.status in DONE_STATUSES:   # a failed run keeps it for the retry
                    store.discard_checkpoint(task.run_id)
                summary.executed += 1
                status = outcome.status
                setattr(summary, status, getattr(summary, status) + 1)
                reporter.finished(task, outcome)
    finally:
        reporter.stop()
    return summary


# ----------------------------------------------------------------------------- plan / status
def in_flight_runs(results_dir: Path | str) -> pd.DataFrame:
    """Runs of a results folder that have a checkpoint but no finished part file.

    Returns
    -------
    DataFrame
        Columns ``run_id, variant, schedule, layer, epoch, epochs_per_layer, epochs_done,
        epochs_total, checkpointed_at`` (UTC), one row per run, from the checkpoints' JSON
        summaries; ``layer`` and ``epoch`` (1-based) are where the last checkpoint stands (in the
        ``alternating`` schedule an epoch trains every layer, and ``layer`` is the last; ``bp``
        has schedule ``end-to-end`` and layer 0).
    """
    store = RunStore(results_dir)
    statuses = store.statuses()
    columns = ["run_id", "variant", "schedule", "layer", "epoch", "epochs_per_layer",
               "epochs_done", "epochs_total", "checkpointed_at"]
    rows = [{**{k: info.get(k) for k in columns},
             "checkpointed_at": pd.Timestamp(info.get("saved_at", 0), unit="s", tz="UTC")}
            for info in read_sidecars(store.checkpoints_dir)
            if statuses.get(info["run_id"]) not in DONE_STATUSES
            and (store.checkpoints_dir / f"{info['run_id']}.pt").is_file()]
    return pd.DataFrame(rows, columns=columns)


def study_status(results_dir: Path | str) -> pd.DataFrame:
    """Planned and stored runs per dataset x variant of a results folder.

    Returns
    -------
    DataFrame
        Columns ``dataset, variant, planned, done, ok, diverged, failed, missing``
        (``done = ok + diverged``; ``missing = planned - done``), one row per dataset x variant,
        plus a row ``dataset="(not in study)"`` when the store holds runs the study no longer
        plans.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise StudyError(f"no runs in {results_dir}; run `cffbench run STUDY` first")
    study = read_study(results_dir)
    tasks = expand(study)
    statuses = RunStore(results_dir).statuses()
    rows = []
    for task in tasks:
        status = statuses.get(task.run_id) or "missing"
        rows.append({"dataset": task.dataset, "variant": task.variant, "status": status})
    planned_ids = {t.run_id for t in tasks}
    for rid, status in statuses.items():
        if rid not in planned_ids:
            rows.append({"dataset": "(not in study)", "variant": "", "status": status})
    frame = pd.DataFrame(rows, columns=["dataset", "variant", "status"])
    table = pd.crosstab([frame["dataset"], frame["variant"]], frame["status"])
    for status in ("ok", "diverged", "failed", "corrupt", "missing"):
        if status not in table:
            table[status] = 0
    table["done"] = table["ok"] + table["diverged"]
    table["missing"] = table["missing"] + table["corrupt"]
    table["planned"] = table[["done", "failed", "missing"]].sum(axis=1)
    table = table.reset_index()
    table.loc[table["dataset"] == "(not in study)", "planned"] = 0
    return table[["dataset", "variant", "planned", "done", "ok", "diverged", "failed",
                  "missing"]].reset_index(drop=True)
