"""Executors: where runs execute. Workers train and return results; only the driver writes.

Every executor has one method, ``map_runs(tasks) -> iterator of RunOutcome`` in completion
order, and pulls tasks lazily (at most ``workers`` in flight), so the driver can skip a task that
another process finished in the meantime. A Dask executor drops in beside these two later.

Workers load each dataset themselves and keep it in a per-process cache keyed by
``(dataset, data_root, n_train, seed)``; tasks carry only the configuration, never tensors.
"""

from __future__ import annotations

import concurrent.futures as cf
import inspect
import itertools
import multiprocessing
import os
import queue as queue_module
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

from cffbench.errors import StudyError
from cffbench.ff.checkpoint import CheckpointPlan
from cffbench.plugins import ensure_loaded
from cffbench.study.grid import RunTask

TrainFn = Callable[..., Any]          # train_run(config, splits, device=..., on_epoch=...)
LoadFn = Callable[..., Any]           # load_splits(name, root, n_train=..., seed=...)
EpochCallback = Callable[[str, dict], None]


@dataclass
class RunOutcome:
    """What a worker returns for one run.

    Attributes
    ----------
    run_id : str
    result : RunResult or None
        ``None`` when the run raised; then ``error`` holds the one-line reason.
    error : str
    started_at : datetime (UTC)
    duration_s : float
        Wall time of the whole task, data loading included.
    device : str
    n_train : int or None
        Number of training examples actually used (``len(splits.x_train)``).
    """

    run_id: str
    result: Any = None
    error: str = ""
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    duration_s: float = 0.0
    device: str = ""
    n_train: Optional[int] = None

    @property
    def status(self) -> str:
        return "failed" if self.result is None else str(self.result.status)


def default_train_fn() -> TrainFn:
    from cffbench.ff import train_run

    return train_run


def default_load_fn() -> LoadFn:
    from cffbench.data import load_splits

    return load_splits


def resolve_device(device: str) -> str:
    """``auto`` becomes ``cuda`` when a GPU is visible, else ``cpu``; others pass through."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# ----------------------------------------------------------------------------- worker side
_SPLITS_CACHE: dict[tuple, Any] = {}
_EPOCH_QUEUE: Any = None
_WORKER_DEVICE: Optional[str] = None   # this pool process's GPU (LocalExecutor.worker_devices)


def _one_line(exc: BaseException) -> str:
    """``Type: message`` on one line, plus the innermost frame, for the ``error`` column."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return (text[:1500] + where)


def _cached_splits(task: RunTask, data_root: Optional[Path], load_fn: Optional[LoadFn]) -> Any:
    """The task's :class:`Splits`, loaded once per process (cache keyed by dataset, root,
    n_train and seed)."""
    key = (task.dataset, str(data_root), task.n_train, task.seed)
    if key not in _SPLITS_CACHE:
        if len(_SPLITS_CACHE) >= 4:   # bounded: a worker rarely needs more than a few
            _SPLITS_CACHE.pop(next(iter(_SPLITS_CACHE)))
        _SPLITS_CACHE[key] = (load_fn or default_load_fn())(task.dataset, data_root,
                                                            n_train=task.n_train, seed=task.seed)
    return _SPLITS_CACHE[key]


def takes_checkpoint(train: TrainFn) -> bool:
    """Whether a train function accepts ``checkpoint=`` (``train_run`` does; a custom one may not)."""
    try:
        return "checkpoint" in inspect.signature(train).parameters
    except (TypeError, ValueError):
        return False


def execute_run(task: RunTask, data_root: Optional[Path], device: str,
                train_fn: Optional[TrainFn] = None, load_fn: Optional[LoadFn] = None,
                on_epoch: Optional[EpochCallback] = None,
                checkpoints: Optional[CheckpointPlan] = None) -> RunOutcome:
    """Load the task's data (cached per process), train, and never raise for a run's failure.

    An exception inside loading or training becomes ``RunOutcome(result=None, error=...)``.
    ``checkpoints`` (the folder the driver names): the run resumes from its checkpoint there and
    writes it as it falls due, when the train function takes ``checkpoint=``; ``duration_s`` then
    includes the training time of the interrupted attempts.
    """
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    resolved = resolve_device(device)
    try:
        ensure_loaded(task.plugins)    # a worker process imports the task's plugin files itself
        train = train_fn or default_train_fn()
        splits = _cached_splits(task, data_root, load_fn)
        callback = None
        if on_epoch is not None:
            def callback(record: dict, _rid=task.run_id) -> None:
                on_epoch(_rid, record)
        extra = {}
        if checkpoints is not None and takes_checkpoint(train):
            extra["checkpoint"] = checkpoints.for_run(task.run_id)
        result = train(task.config, splits, device=resolved, on_epoch=callback, **extra)
        earlier = float(getattr(result, "resumed_elapsed_s", 0.0) or 0.0)
        return RunOutcome(task.run_id, result, "", started, time.perf_counter() - t0 + earlier,
                          str(getattr(result, "device", resolved) or resolved),
                          int(splits.x_train.shape[0]))
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a failing run is recorded; the study goes on
        return RunOutcome(task.run_id, None, _one_line(exc), started,
                          time.perf_counter() - t0, resolved, None)


def seed_groups(tasks: Iterable[RunTask]) -> list[list[RunTask]]:
    """Group tasks that differ only in seed (same dataset, n_train and config but ``seed``),
    in order of first appearance. Reads every task first (stacking needs the whole group)."""
    from cffbench.study.grid import canonical_json

    groups: dict[tuple, list[RunTask]] = {}
    for task in tasks:
        key = (task.dataset, task.n_train, canonical_json(task.config.model_dump(exclude={"seed"})))
        groups.setdefault(key, []).append(task)
    return list(groups.values())


def execute_stacked(tasks: list[RunTask], data_root: Optional[Path], device: str,
                    train_fn: Optional[TrainFn] = None, load_fn: Optional[LoadFn] = None,
                    on_epoch: Optional[EpochCallback] = None,
                    checkpoints: Optional[CheckpointPlan] = None) -> list[RunOutcome]:
    """Run a seed group as one batched model (:func:`cffbench.ff.stacked.train_stacked`).

    One :class:`RunOutcome` per task, as :func:`execute_run` gives; ``duration_s`` is the group's
    wall time / S. A task whose data fails to load fails alone; a training error fails the group.
    A custom ``train_fn`` cannot be stacked, nor splits of different shapes: then every task goes
    through :func:`execute_run` (and is checkpointed there; a stacked group is not).
    """
    if train_fn is not None or len(tasks) < 2:
        return [execute_run(t, data_root, device, train_fn, load_fn, on_epoch, checkpoints)
                for t in tasks]
    started, t0, resolved = datetime.now(timezone.utc), time.perf_counter(), resolve_device(device)
    outcomes: dict[str, RunOutcome] = {}
    loaded: list[tuple[RunTask, Any]] = []
    for task in tasks:
        try:
            ensure_loaded(task.plugins)
            loaded.append((task, _cached_splits(task, data_root, load_fn)))
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            outcomes[task.run_id] = RunOutcome(task.run_id, None, _one_line(exc), started, 0.0, resolved)
    from cffbench.ff.stacked import check_stackable, train_stacked

    try:   # e.g. subsets of unequal size: run them one by one rather than fail them
        check_stackable([t.config for t, _ in loaded], [s for _, s in loaded])
    except ValueError:
        return [outcomes.get(t.run_id) or execute_run(t, data_root, device, None, load_fn, on_epoch,
                                                       checkpoints)
                for t in tasks]
    try:
        callbacks = None if on_epoch is None else [
            (lambda record, _rid=task.run_id: on_epoch(_rid, record)) for task, _ in loaded]
        results = train_stacked([t.config for t, _ in loaded], [s for _, s in loaded],
                                device=resolved, on_epoch=callbacks)
        share = (time.perf_counter() - t0) / max(len(loaded), 1)
        for (task, splits), result in zip(loaded, results):
            outcomes[task.run_id] = RunOutcome(task.run_id, result, "", started, share,
                                               str(result.device or resolved),
                                               int(splits.x_train.shape[0]))
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a failing group is recorded; the study goes on
        for task, _ in loaded:
            outcomes[task.run_id] = RunOutcome(task.run_id, None, _one_line(exc), started,
                                               time.perf_counter() - t0, resolved, None)
    return [outcomes[t.run_id] for t in tasks]


def _exit_when_driver_dies(driver_pid: int) -> None:
    # A killed driver (kill -9) cannot stop its pool: the workers would wait for tasks forever.
    while True:
        time.sleep(1.0)
        try:
            os.kill(driver_pid, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:
            pass


def _worker_init(threads: int, epoch_queue: Any, driver_pid: Optional[int] = None,
                 device_slots: Any = None) -> None:
    """Pin torch to ``threads`` threads, leave Ctrl-C to the driver, keep the epoch queue,
    take this process's device from ``device_slots`` (a queue holding one device per worker),
    and exit when the driver process is gone."""
    global _EPOCH_QUEUE, _WORKER_DEVICE
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    torch.set_num_threads(threads)
    _EPOCH_QUEUE = epoch_queue
    if device_slots is not None:
        try:
            _WORKER_DEVICE = device_slots.get(timeout=10)
        except queue_module.Empty:   # more processes than slots cannot happen; fall back
            _WORKER_DEVICE = None
    if driver_pid is not None:
        threading.Thread(target=_exit_when_driver_dies, args=(driver_pid,), daemon=True,
                         name="cffbench-driver-watch").start()


def _queue_epoch(run_id: str, record: dict) -> None:
    if _EPOCH_QUEUE is not None:
        try:
            _EPOCH_QUEUE.put_nowait((run_id, dict(record)))
        except Exception:  # progress is best effort; never fail a run over it
            pass


def _pool_entry(task: RunTask, data_root: Optional[Path], device: str,
                train_fn: Optional[TrainFn], load_fn: Optional[LoadFn],
                verbose: bool, checkpoints: Optional[CheckpointPlan] = None) -> RunOutcome:
    return execute_run(task, data_root, _WORKER_DEVICE or device, train_fn, load_fn,
                       _queue_epoch if verbose else None, checkpoints)


def _pool_entry_stacked(tasks: list[RunTask], data_root: Optional[Path], device: str,
                        train_fn: Optional[TrainFn], load_fn: Optional[LoadFn],
                        verbose: bool, checkpoints: Optional[CheckpointPlan] = None
                        ) -> list[RunOutcome]:
    return execute_stacked(tasks, data_root, _WORKER_DEVICE or device, train_fn, load_fn,
                           _queue_epoch if verbose else None, checkpoints)


# ----------------------------------------------------------------------------- executors
@dataclass
class SerialExecutor:
    """Runs tasks one after another in this process (simplest; best for debugging).

    ``stack_seeds``: run each group of tasks that differ only in seed as one batched model
    (:func:`execute_stacked`, not checkpointed); the task list is then read whole before the
    first run starts. ``checkpoints``: where and how often runs checkpoint (None: never).
    """

    data_root: Optional[Path] = None
    device: str = "auto"
    train_fn: Optional[TrainFn] = None
    load_fn: Optional[LoadFn] = None
    on_epoch: Optional[EpochCallback] = None
    workers: int = 1
    stack_seeds: bool = False
    checkpoints: Optional[CheckpointPlan] = None

    def map_runs(self, tasks: Iterable[RunTask]) -> Iterator[RunOutcome]:
        if self.stack_seeds:
            for group in seed_groups(tasks):
                yield from execute_stacked(group, self.data_root, self.device, self.train_fn,
                                           self.load_fn, self.on_epoch, self.checkpoints)
            return
        for task in tasks:
            yield execute_run(task, self.data_root, self.device, self.train_fn, self.load_fn,
                              self.on_epoch, self.checkpoints)


@dataclass
class LocalExecutor:
    """A process pool on this machine, one torch thread per worker.

    Uses the ``forkserver`` start method where available (``spawn`` otherwise): forking a
    process that already ran torch is unsafe. Oversubscribing cores (several workers each
    using every core) slowed an epoch six-fold on a 2-core machine, hence one thread each.
    ``stack_seeds``: each worker job is a seed group run as one batched model
    (:func:`execute_stacked`) instead of one task. ``worker_devices``: one device per worker
    process (e.g. ``["cuda:0", "cuda:1", "cuda:0", "cuda:1"]``); process i trains every job it
    takes on ``worker_devices[i]`` (:func:`cffbench.study.gpu.worker_devices`); None: ``device``.
    """

    workers: int = 2
    data_root: Optional[Path] = None
    device: str = "auto"
    train_fn: Optional[TrainFn] = None
    load_fn: Optional[LoadFn] = None
    on_epoch: Optional[EpochCallback] = None
    threads_per_worker: int = 1
    stack_seeds: bool = False
    worker_devices: Optional[list[str]] = None
    checkpoints: Optional[CheckpointPlan] = None

    def map_runs(self, tasks: Iterable[RunTask]) -> Iterator[RunOutcome]:
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        manager = context.Manager() if self.on_epoch is not None else None
        epoch_queue = manager.Queue() if manager is not None else None

        def new_pool() -> cf.ProcessPoolExecutor:
            slots = None
            if self.worker_devices:   # each process takes one slot as it starts
                slots = context.Queue()
                for device in self.worker_devices[: self.workers]:
                    slots.put(device)
            return cf.ProcessPoolExecutor(self.workers, mp_context=context,
                                          initializer=_worker_init,
                                          initargs=(self.threads_per_worker, epoch_queue,
                                                    os.getpid(), slots))

        pool = new_pool()
        pending: dict[cf.Future, list[RunTask]] = {}
        job_iter = iter(seed_groups(tasks) if self.stack_seeds else ([task] for task in tasks))
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < self.workers:
                    job = next(job_iter, None)
                    if job is None:
                        exhausted = True
                        break
                    entry = _pool_entry_stacked if self.stack_seeds else _pool_entry
                    try:
                        future = pool.submit(entry, job if self.stack_seeds else job[0],
                                             self.data_root, self.device, self.train_fn,
                                             self.load_fn, self.on_epoch is not None,
                                             self.checkpoints)
                    except cf.process.BrokenProcessPool:
                        # A worker died before the pool's futures said so: take this job up again
                        # once the dead pool's futures are collected and a new pool runs.
                        job_iter = itertools.chain([job], job_iter)
                        if not pending:
                            pool.shutdown(wait=False, cancel_futures=True)
                            pool = new_pool()
                        break
                    pending[future] = job
                if not pending:
                    break
                done, _ = cf.wait(list(pending), timeout=0.25, return_when=cf.FIRST_COMPLETED)
                self._drain(epoch_queue)
                broken = False
                for future in done:
                    job = pending.pop(future)
                    try:
                        result = future.result()
                    except cf.process.BrokenProcessPool:
                        # A worker died (killed, out of memory, crashed in C code): every run in
                        # flight is lost; record them as failed (retried next time) and go on.
                        broken = True
                        for task in job:
                            yield RunOutcome(task.run_id, None, "worker process died abruptly "
                                             "(killed or out of memory?)", device=self.device)
                        continue
                    yield from (result if self.stack_seeds else [result])
                if broken:
                    for future, job in pending.items():
                        for task in job:
                            yield RunOutcome(task.run_id, None, "worker process died abruptly "
                                             "(killed or out of memory?)", device=self.device)
                    pending.clear()
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool = new_pool()
        finally:
            for future in pending:
                future.cancel()
            # On interrupt or error, stop workers now rather than waiting for their runs.
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                if process.is_alive():
                    process.terminate()
            pool.shutdown(wait=True, cancel_futures=True)
            if manager is not None:
                manager.shutdown()

    def _drain(self, epoch_queue: Any) -> None:
        if epoch_queue is None or self.on_epoch is None:
            return
        while True:
            try:
                run_id, record = epoch_queue.get_nowait()
            except (queue_module.Empty, OSError, EOFError):
                return
            self.on_epoch(run_id, record)


EXECUTORS = ("serial", "local", "dask")


def make_executor(name: str, workers: int, data_root: Optional[Path], device: str,
                  train_fn: Optional[TrainFn] = None, load_fn: Optional[LoadFn] = None,
                  on_epoch: Optional[EpochCallback] = None, *, execution: Any = None):
    """Build the executor ``name`` (``serial``, ``local`` or ``dask``).

    ``execution`` (the study's ``[execution]`` section) gives the ``dask`` executor its
    ``scheduler``, ``retries`` and ``slurm`` settings, and ``serial`` / ``local`` its
    ``stack_seeds`` (the ``dask`` executor does not stack). On CUDA the ``local`` executor's
    worker i trains on ``cuda:{i % n_gpus}`` (or on the one ``cuda:N`` given).

    Raises
    ------
    StudyError
        For an unknown name, or ``workers < 1``.
    """
    if workers < 1:
        raise StudyError(f"workers must be >= 1 (got {workers})")
    stack_seeds = bool(getattr(execution, "stack_seeds", False))
    if name == "serial":
        return SerialExecutor(data_root, device, train_fn, load_fn, on_epoch,
                              stack_seeds=stack_seeds)
    if name == "local":
        from cffbench.study.gpu import worker_devices

        return LocalExecutor(workers, data_root, device, train_fn, load_fn, on_epoch,
                             stack_seeds=stack_seeds,
                             worker_devices=worker_devices(device, workers))
    if name == "dask":
        from cffbench.study.dask_executor import DaskExecutor

        options = {} if execution is None else {"scheduler": execution.scheduler,
                                                "retries": execution.retries,
                                                "slurm": execution.slurm}
        return DaskExecutor(workers, data_root, device, train_fn, load_fn, on_epoch, **options)
    raise StudyError(f"unknown executor {name!r}; allowed: serial, local, dask")
