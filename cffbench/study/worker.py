"""The worker side: what runs inside a worker process, for every executor.

A worker trains and returns :class:`RunOutcome` objects; only the driver writes the store. The
unit of work an executor sends is a *job*: one run, or (``stack_seeds``) a group of runs that
differ only in seed, trained as one batched model. Here are

- :func:`execute_run` / :func:`execute_stacked`: load a task's data (cached per process), train,
  and never raise for a run's failure (it becomes ``RunOutcome(result=None, error=...)``);
- :class:`RunSettings` and :func:`run_job`: what every job of a study is run with, and the entry
  point a pool process or a Dask worker calls for one job, on this process's device slot and with
  its epoch-progress relay;
- :func:`init_pool_process`, the ``local`` pool's initializer: one torch thread, Ctrl-C left to the
  driver, a device slot taken from the driver's queue, epoch records relayed through the driver's
  queue, and exit as soon as the driver process is gone (a ``kill -9`` of the driver cannot stop
  its pool otherwise); :func:`configure_process` is the part a Dask worker plugin shares.

Workers load each dataset themselves and keep it in a per-process cache keyed by
``(dataset, data_root, n_train, seed, load_fn)``; tasks carry only the configuration, never
tensors. The serial executor calls :func:`execute_run` / :func:`execute_stacked` in the driver.
"""

from __future__ import annotations

import functools
import inspect
import os
import queue as queue_module
import signal
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Sequence

from cffbench.ff.checkpoint import CheckpointPlan, numerics_environment
from cffbench.plugins import ensure_loaded
from cffbench.study.grid import RunTask

if TYPE_CHECKING:
    from cffbench.data.splits import Splits
    from cffbench.ff.result import RunResult

TrainFn = Callable[..., Any]          # train_run(config, splits, device=..., on_epoch=...)
LoadFn = Callable[..., Any]           # load_splits(name, root, n_train=..., seed=...)
EpochCallback = Callable[[str, dict], None]   # (run_id, curve row)

#: How often a pool process checks that its driver is still alive (seconds).
DRIVER_CHECK_SECONDS = 1.0
#: The Dask event topic that carries curve rows from Dask workers to the driver.
EPOCH_TOPIC = "cffbench-epoch"


def run_environment() -> dict[str, Any]:
    """Where this process runs a job: ``hostname`` and what besides the code decides a CPU
    result's last bits (``cpu_capability``, ``torch_threads``:
    :func:`~cffbench.ff.checkpoint.numerics_environment`)."""
    return {"hostname": socket.gethostname(), **numerics_environment()}


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
    environment : dict
        :func:`run_environment` of the process that made the outcome (the worker's: a SLURM
        or Dask run's node, not the driver's); empty when the driver made it for a worker that
        died.
    """

    run_id: str
    result: Optional["RunResult"] = None
    error: str = ""
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    duration_s: float = 0.0
    device: str = ""
    n_train: Optional[int] = None
    environment: dict = field(default_factory=run_environment)

    @property
    def status(self) -> str:
        return "failed" if self.result is None else str(self.result.status)


@dataclass(frozen=True)
class RunSettings:
    """How every run of one ``map_runs`` call executes; sent with each job (picklable).

    Attributes
    ----------
    data_root : Path or None
        Dataset root as the worker sees it.
    device : str
        ``auto | cpu | cuda | cuda:N``; a pool process with a device slot uses its slot instead.
    train_fn, load_fn : callables or None
        Default :func:`cffbench.ff.train_run` and :func:`cffbench.data.load_splits`.
    checkpoints : CheckpointPlan or None
        The driver's checkpoint folder and interval (None: no checkpoints).
    relay_epochs : bool
        Send each curve row to the driver through this process's relay (``-v`` progress).
    """

    data_root: Optional[Path] = None
    device: str = "auto"
    train_fn: Optional[TrainFn] = None
    load_fn: Optional[LoadFn] = None
    checkpoints: Optional[CheckpointPlan] = None
    relay_epochs: bool = False

    @classmethod
    def of(cls, executor: Any) -> "RunSettings":
        """The settings of an executor's fields (``data_root``, ``device``, ``train_fn``,
        ``load_fn``, ``checkpoints``); epochs are relayed when it has an ``on_epoch``."""
        return cls(executor.data_root, executor.device, executor.train_fn, executor.load_fn,
                   executor.checkpoints, executor.on_epoch is not None)


def default_train_fn() -> TrainFn:
    from cffbench.ff import train_run

    return train_run


def default_load_fn() -> LoadFn:
    from cffbench.data import load_splits

    return load_splits


def resolve_device_name(device: str) -> str:
    """``auto`` becomes ``cuda`` when a GPU is visible, else ``cpu``; others pass through."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def error_line(exc: BaseException) -> str:
    """``Type: message`` on one line (at most 1500 characters), plus the innermost frame, for
    the store's ``error`` column."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text[:1500] + where


@functools.lru_cache(maxsize=4)   # bounded: a worker rarely needs more than a few data sets
def _load_cached(dataset: str, data_root: Optional[Path], n_train: Optional[int], seed: int,
                 load_fn: Optional[LoadFn]) -> "Splits":
    return (load_fn or default_load_fn())(dataset, data_root, n_train=n_train, seed=seed)


def cached_splits(task: RunTask, settings: RunSettings) -> "Splits":
    """The task's :class:`Splits`, loaded once per process."""
    return _load_cached(task.dataset, settings.data_root, task.n_train, task.seed,
                        settings.load_fn)


def takes_checkpoint(train: TrainFn) -> bool:
    """Whether a train function accepts ``checkpoint=`` (``train_run`` does; a custom one may not)."""
    try:
        return "checkpoint" in inspect.signature(train).parameters
    except (TypeError, ValueError):
        return False


def execute_run(task: RunTask, settings: RunSettings,
                on_epoch: Optional[EpochCallback] = None) -> RunOutcome:
    """Load the task's data (cached per process), train, and never raise for a run's failure.

    An exception inside loading or training becomes ``RunOutcome(result=None, error=...)``.
    With ``settings.checkpoints`` (the folder the driver names) the run resumes from its
    checkpoint there and writes it as it falls due, when the train function takes
    ``checkpoint=``; ``duration_s`` then includes the training time of the interrupted attempts,
    and a run that finishes is stored with the ``started_at`` of its earliest attempt whose
    checkpoint it resumed (a failed run: this attempt's).
    """
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    resolved = resolve_device_name(settings.device)
    try:
        ensure_loaded(task.plugins)    # a worker process imports the task's plugin files itself
        train = settings.train_fn or default_train_fn()
        splits = cached_splits(task, settings)
        callback = None if on_epoch is None else functools.partial(on_epoch, task.run_id)
        extra = {}
        if settings.checkpoints is not None and takes_checkpoint(train):
            extra["checkpoint"] = settings.checkpoints.for_run(task.run_id, started.timestamp())
        result = train(task.config, splits, device=resolved, on_epoch=callback, **extra)
        earlier = float(getattr(result, "resumed_elapsed_s", 0.0) or 0.0)
        handle = extra.get("checkpoint")
        if handle is not None and handle.started_at != handle.attempt_started_at:
            # resumed: the run keeps the start of its first attempt
            started = datetime.fromtimestamp(handle.started_at, timezone.utc)
        return RunOutcome(task.run_id, result, "", started, time.perf_counter() - t0 + earlier,
                          str(getattr(result, "device", resolved) or resolved),
                          int(splits.x_train.shape[0]))
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a failing run is recorded; the study goes on
        return RunOutcome(task.run_id, None, error_line(exc), started,
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


def execute_stacked(tasks: list[RunTask], settings: RunSettings,
                    on_epoch: Optional[EpochCallback] = None) -> list[RunOutcome]:
    """Run a seed group as one batched model (:func:`cffbench.ff.stacked.train_stacked`).

    One :class:`RunOutcome` per task, as :func:`execute_run` gives; ``duration_s`` is the group's
    wall time / S. A task whose data fails to load fails alone; a training error fails the group.
    A custom ``train_fn`` cannot be stacked, nor splits of different shapes, nor a configuration
    :func:`~cffbench.ff.stacked.stacking_unsupported` names: then every task goes through
    :func:`execute_run` (and is checkpointed there; a stacked group is not).
    """
    if settings.train_fn is not None or len(tasks) < 2:
        return [execute_run(t, settings, on_epoch) for t in tasks]
    started = datetime.now(timezone.utc)
    t0, resolved = time.perf_counter(), resolve_device_name(settings.device)
    outcomes: dict[str, RunOutcome] = {}
    loaded: list[tuple[RunTask, Any]] = []
    for task in tasks:
        try:
            ensure_loaded(task.plugins)
            loaded.append((task, cached_splits(task, settings)))
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            outcomes[task.run_id] = RunOutcome(task.run_id, None, error_line(exc), started, 0.0,
                                               resolved)
    from cffbench.ff.stacked import check_stackable, stacking_unsupported, train_stacked

    try:   # e.g. subsets of unequal size: run them one by one rather than fail them
        check_stackable([t.config for t, _ in loaded], [s for _, s in loaded])
        # a configuration the stacked engine does not batch (alternating, minibatches, bf16,
        # redrawn negatives) runs one by one here, where each run checkpoints, rather than
        # inside train_stacked, where none would
        unsupported = loaded and stacking_unsupported(loaded[0][0].config,
                                                      loaded[0][1].x_train.shape[0]) is not None
    except ValueError:
        unsupported = True
    if unsupported:
        return [outcomes.get(t.run_id) or execute_run(t, settings, on_epoch) for t in tasks]
    try:
        callbacks = None if on_epoch is None else [
            functools.partial(on_epoch, task.run_id) for task, _ in loaded]
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
            outcomes[task.run_id] = RunOutcome(task.run_id, None, error_line(exc), started,
                                               time.perf_counter() - t0, resolved, None)
    return [outcomes[t.run_id] for t in tasks]


# ----------------------------------------------------------------------------- this process
@dataclass
class _ProcessRole:
    """What the executor told this worker process when it started."""

    device: Optional[str] = None                 # the device slot (None: the job's device)
    relay: Optional[EpochCallback] = None        # where curve rows go (None: nowhere)


_THIS_PROCESS = _ProcessRole()


def configure_process(threads: int = 1, device: Optional[str] = None,
                      relay: Optional[EpochCallback] = None) -> None:
    """Pin torch to ``threads`` intra-op threads and remember this process's device and relay.

    Several workers each using every core oversubscribe the machine (an epoch ran six-fold
    slower with two such workers on a 2-core machine), hence one thread per worker.
    """
    import torch

    torch.set_num_threads(threads)
    _THIS_PROCESS.device = device
    _THIS_PROCESS.relay = relay


def run_job(tasks: Sequence[RunTask], settings: RunSettings,
            stacked: bool = False) -> list[RunOutcome]:
    """One job in a worker process: the tasks one by one, or as one batched model (``stacked``),
    on this process's device slot when it has one, relaying epochs when the driver asked."""
    if _THIS_PROCESS.device is not None:
        settings = replace(settings, device=_THIS_PROCESS.device)
    relay = _THIS_PROCESS.relay if settings.relay_epochs else None
    if stacked:
        return execute_stacked(list(tasks), settings, relay)
    return [execute_run(task, settings, relay) for task in tasks]


def _queue_epoch(epoch_queue: Any, run_id: str, record: dict) -> None:
    try:
        epoch_queue.put_nowait((run_id, dict(record)))
    except Exception:  # progress is best effort; never fail a run over it
        pass


def _exit_when_driver_dies(driver_pid: int) -> None:
    # A killed driver (kill -9) cannot stop its pool: the workers would train on, or wait for
    # tasks, for nothing.
    while True:
        time.sleep(DRIVER_CHECK_SECONDS)
        try:
            os.kill(driver_pid, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:
            pass


def init_pool_process(threads: int, driver_pid: int, epoch_queue: Any = None,
                      device_slots: Any = None) -> None:
    """Initializer of each ``local`` pool process.

    Ignores Ctrl-C (the driver stops the pool), pins torch to ``threads`` threads, takes this
    process's device from ``device_slots`` (a queue holding one device per worker process),
    relays curve rows through ``epoch_queue`` when given, and exits when ``driver_pid`` is gone.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    device = None
    if device_slots is not None:
        try:
            device = device_slots.get(timeout=10)
        except queue_module.Empty:   # more processes than slots cannot happen; fall back
            device = None
    relay = None if epoch_queue is None else functools.partial(_queue_epoch, epoch_queue)
    configure_process(threads, device, relay)
    threading.Thread(target=_exit_when_driver_dies, args=(driver_pid,), daemon=True,
                     name="cffbench-driver-watch").start()


def publish_epoch(run_id: str, record: dict) -> None:
    """A Dask worker's relay: send one curve row to the driver as a Dask event (best effort)."""
    try:
        from distributed import get_worker

        plain = {k: (v if isinstance(v, (str, int, type(None))) else float(v))
                 for k, v in record.items()}
        get_worker().log_event(EPOCH_TOPIC, {"run_id": run_id, "record": plain})
    except Exception:
        pass
