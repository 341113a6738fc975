"""Executors: where runs execute. Workers train and return results; only the driver writes.

Every executor has one method, ``map_runs(tasks) -> iterator of RunOutcome`` in completion
order, and pulls tasks lazily (at most ``workers`` in flight,
:func:`cffbench.study.inflight.in_flight`), so the driver can skip a task that another process
finished in the meantime. ``serial`` runs in
this process, ``local`` on a pool of worker processes on this machine (here), ``dask`` on a Dask
cluster (:mod:`cffbench.study.dask_executor`). What runs inside a worker is
:mod:`cffbench.study.worker`.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import os
import queue as queue_module
import re
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from cffbench.errors import StudyError
from cffbench.ff.checkpoint import CheckpointPlan
from cffbench.study.grid import RunTask
from cffbench.study.inflight import in_flight
from cffbench.study.worker import (EpochCallback, LoadFn, RunOutcome, RunSettings, TrainFn,
                                   execute_run, execute_stacked, init_pool_process, run_job,
                                   seed_groups)

#: The ``error`` of a run whose worker process died (and of every other run then in flight).
WORKER_DIED = "worker process died abruptly (killed or out of memory?)"


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
        settings = RunSettings.of(self)
        if self.stack_seeds:
            for group in seed_groups(tasks):
                yield from execute_stacked(group, settings, self.on_epoch)
            return
        for task in tasks:
            yield execute_run(task, settings, self.on_epoch)


@dataclass
class LocalExecutor:
    """A pool of worker processes on this machine, one torch thread per worker.

    The pool is ``loky``'s ``ProcessPoolExecutor``: its processes are fresh interpreters (fork +
    exec, never a fork of a process that already ran torch, which is unsafe); a worker that dies
    (killed, out of memory, crashed in C code) breaks the pool, every run then in flight is
    recorded as failed (retried by the next ``cffbench run``), and a new pool takes the remaining
    runs; on Ctrl-C or an error its workers are killed at once rather than waited for; a worker
    whose driver is gone exits (:func:`cffbench.study.worker.init_pool_process`).
    Oversubscribing cores (several workers each using every core) slowed an epoch six-fold on a
    2-core machine, hence one thread each.
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
        jobs = seed_groups(tasks) if self.stack_seeds else ([task] for task in tasks)
        pool = _LocalPool(self)
        try:
            yield from in_flight(jobs, submit=pool.submit, wait=_finished, settle=pool.settle,
                                 limit=lambda: self.workers, cancel=_leave_to_shutdown,
                                 between=pool.relay_epochs)
        finally:
            pool.close()


def _finished(futures: list[cf.Future], timeout: float) -> set[cf.Future]:
    return cf.wait(futures, timeout=timeout, return_when=cf.FIRST_COMPLETED)[0]


def _leave_to_shutdown(futures: list[cf.Future]) -> None:
    """The pending futures are not cancelled: :meth:`_LocalPool.close` kills the workers, and
    loky's ``shutdown(kill_workers=True)`` settles every future it holds. Cancelling one that
    loky has not yet handed to a worker (a job submitted just before Ctrl-C) makes loky's
    manager thread fail on it at shutdown (``InvalidStateError`` when it sets the shutdown
    error on the cancelled future; loky 3.7 logs that with a traceback on stderr)."""


class _LocalPool:
    """The loky pool behind :class:`LocalExecutor`: started at the first job, replaced after a
    worker death, its workers killed on :meth:`close`."""

    def __init__(self, executor: LocalExecutor):
        self.executor = executor
        self.settings = RunSettings.of(executor)
        self.pool: Any = None
        self.manager: Any = None
        self.epochs: Any = None

    def _new_pool(self) -> Any:
        import loky
        from loky.backend import get_context

        context = get_context("loky")
        if self.executor.on_epoch is not None and self.manager is None:
            # a manager's queue survives a worker killed mid-put (a pipe queue may not)
            self.manager = context.Manager()
            self.epochs = self.manager.Queue()
        slots = None
        if self.executor.worker_devices:   # each process takes one slot as it starts
            slots = context.Queue()
            for device in self.executor.worker_devices[: self.executor.workers]:
                slots.put(device)
        # No idle timeout and no memory-growth recycling: a replaced process would find no
        # device slot left and reload its data; workers live exactly as long as the pool.
        return loky.ProcessPoolExecutor(
            self.executor.workers, context=context, timeout=None,
            initializer=init_pool_process,
            initargs=(self.executor.threads_per_worker, os.getpid(), self.epochs, slots),
            env={"LOKY_MAX_MEMORY_LEAK_SIZE": str(2**62)})

    def submit(self, job: list[RunTask]) -> cf.Future:
        import loky

        args = (tuple(job), self.settings, self.executor.stack_seeds)
        if self.pool is None:
            return self._start_pool(args)
        try:
            return self.pool.submit(run_job, *args)
        except loky.BrokenProcessPool:
            # A worker died: loky has failed every future of this pool (each settles as failed)
            # and refuses new work. Shut it down (its futures are all settled once that returns)
            # and go on with a new pool.
            self.pool.shutdown(wait=True, kill_workers=True)
            return self._start_pool(args)

    def _start_pool(self, args: tuple) -> cf.Future:
        # loky starts every worker process in the first submit (no idle timeout, no recycling:
        # it never starts one later), so this is the only place workers are spawned
        with ctrl_c_ignored_while_spawning():
            self.pool = self._new_pool()
            return self.pool.submit(run_job, *args)

    def settle(self, future: cf.Future, job: list[RunTask]) -> list[RunOutcome]:
        import loky

        try:
            return future.result()
        except loky.BrokenProcessPool as exc:
            # A worker died (killed, out of memory, crashed in C code): every run in flight is
            # lost; record them as failed (retried next time) and go on.
            codes = re.search(r"exit codes of the workers are (\{[^}]*\})", str(exc))
            error = WORKER_DIED + (f"; exit code {codes.group(1)}" if codes else "")
            return [RunOutcome(task.run_id, None, error, device=self.executor.device,
                               environment={}) for task in job]

    def relay_epochs(self) -> None:
        if self.epochs is None or self.executor.on_epoch is None:
            return
        while True:
            try:
                run_id, record = self.epochs.get_nowait()
            except (queue_module.Empty, OSError, EOFError):
                return
            self.executor.on_epoch(run_id, record)

    def close(self) -> None:
        """Kill the workers now (on Ctrl-C or an error their runs are not waited for; after the
        last job they are idle) and stop the epoch queue's manager."""
        try:
            if self.pool is not None:
                self.pool.shutdown(wait=True, kill_workers=True)
        finally:
            if self.manager is not None:
                self.manager.shutdown()


EXECUTORS = ("serial", "local", "dask")


@contextlib.contextmanager
def ctrl_c_ignored_while_spawning() -> Iterator[None]:
    """SIGINT ignored while worker processes are started (fork + exec, milliseconds), so that none
    of them dies of a Ctrl-C with a traceback while it is still starting its interpreter.

    A terminal's Ctrl-C reaches the whole foreground process group, and a worker that has not yet
    reached :func:`~cffbench.study.worker.init_pool_process` (which ignores SIGINT) would die of
    it. An ignored SIGINT is inherited through ``exec``, so Python installs no KeyboardInterrupt
    handler in those processes. (Blocking it instead does not reach them: loky's worker bootstrap
    clears the inherited signal mask, measured.) The price: a Ctrl-C that arrives during the
    spawn itself is dropped (press it again). Only the pool's creation is wrapped, never a wait.
    No-op off the main thread, or when SIGINT's handler was not installed from Python.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = signal.getsignal(signal.SIGINT)
    if handler is None:   # installed by C code: it could not be put back
        yield
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)


def make_executor(name: str, workers: int, data_root: Optional[Path], device: str,
                  train_fn: Optional[TrainFn] = None, load_fn: Optional[LoadFn] = None,
                  on_epoch: Optional[EpochCallback] = None, *, execution: Any = None):
    """Build the executor ``name`` (``serial``, ``local`` or ``dask``).

    ``execution`` (the study's ``[execution]`` section) gives the ``dask`` executor its
    ``scheduler``, ``retries`` and ``slurm`` settings, and ``serial`` / ``local`` their
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
