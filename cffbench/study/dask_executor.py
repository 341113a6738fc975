"""The Dask executor: runs on a local Dask cluster, a running Dask scheduler, or SLURM jobs.

Workers execute :func:`cffbench.study.executors.execute_run` and return the
:class:`~cffbench.study.executors.RunOutcome` to the driver, which alone writes the Parquet
store, so workers need no shared filesystem with the driver. Each worker process loads a dataset
from its own data root once and keeps it in the per-process cache of ``execute_run``; tasks carry
only the configuration, never tensors.

Where the cluster comes from (first match wins):

1. the Dask config key ``scheduler-address`` (set by ``--scheduler`` and
   ``$DASK_SCHEDULER_ADDRESS``), else ``scheduler`` (``[execution] scheduler = "tcp://HOST:PORT"``):
   connect to that running scheduler.
2. ``slurm`` (the ``[execution.slurm]`` table): a ``dask_jobqueue.SLURMCluster`` scaled to
   ``jobs`` jobs, each with ``cores`` single-threaded worker processes.
3. otherwise a ``distributed.LocalCluster`` with ``workers`` single-threaded worker processes on
   127.0.0.1, dashboard off.

A worker that dies while running a task (killed, out of memory, crashed in C code) surfaces as
``distributed.KilledWorker`` once the scheduler's ``distributed.scheduler.allowed-failures``
is exhausted; the driver then resubmits that run up to ``retries`` times before recording it
as failed. A cluster started here (local or SLURM) has ``allowed-failures = 0`` so that
``retries`` is the exact number of extra attempts; a remote scheduler keeps its own setting
(Dask's default 3), which multiplies the attempts.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue as queue_module
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from distributed import WorkerPlugin

from cffbench.errors import StudyError
from cffbench.ff.checkpoint import CheckpointPlan
from cffbench.study.executors import (EpochCallback, LoadFn, RunOutcome, TrainFn, _one_line,
                                      execute_run)
from cffbench.study.grid import RunTask

EPOCH_TOPIC = "cffbench-epoch"
POLL_SECONDS = 0.25


# ----------------------------------------------------------------------------- worker side
class TorchThreadsPlugin(WorkerPlugin):
    """Dask worker plugin: pin torch to ``threads`` intra-op threads in each worker process.

    Several workers each using every core oversubscribe the machine (six-fold slower epochs on
    2 cores, see ``LocalExecutor``), hence one thread per worker.
    """

    name = "cffbench-torch-threads"

    def __init__(self, threads: int = 1):
        self.threads = threads

    def setup(self, worker: Any) -> None:
        import torch

        torch.set_num_threads(self.threads)


def _publish_epoch(run_id: str, record: dict) -> None:
    """Send one curve row to the driver as a Dask event (best effort, never fails a run)."""
    try:
        from distributed import get_worker

        plain = {k: (v if isinstance(v, (str, int, type(None))) else float(v))
                 for k, v in record.items()}
        get_worker().log_event(EPOCH_TOPIC, {"run_id": run_id, "record": plain})
    except Exception:
        pass


def dask_entry(task: RunTask, data_root: Optional[Path], device: str,
               train_fn: Optional[TrainFn], load_fn: Optional[LoadFn],
               verbose: bool, checkpoints: Optional[CheckpointPlan] = None) -> RunOutcome:
    """What a Dask worker runs for one task: :func:`execute_run`, epochs sent as events.

    ``checkpoints`` names the driver's checkpoint folder: the worker reads and writes the run's
    checkpoint there, so on SLURM it must be on a filesystem every node shares with the driver
    (a run resubmitted after its job hit the walltime resumes from it on any node)."""
    return execute_run(task, data_root, device, train_fn, load_fn,
                       _publish_epoch if verbose else None, checkpoints)


# ----------------------------------------------------------------------------- cluster setup
def slurm_cluster(slurm: Any, threads_per_worker: int = 1):
    """A ``dask_jobqueue.SLURMCluster`` for an ``[execution.slurm]`` table (not yet scaled).

    Each job runs ``cores`` worker processes of ``threads_per_worker`` thread(s) on
    ``cores * threads_per_worker`` CPUs; ``gpus > 0`` adds ``#SBATCH --gres=gpu:N``.

    Parameters
    ----------
    slurm : :class:`cffbench.study.spec.SlurmSection` (or any object with its attributes).
    threads_per_worker : int

    Returns
    -------
    dask_jobqueue.SLURMCluster
        ``cluster.job_script()`` shows the batch script; nothing is submitted until ``scale``.
    """
    from dask_jobqueue import SLURMCluster

    directives = list(slurm.extra_directives)
    if slurm.gpus:
        directives.insert(0, f"--gres=gpu:{slurm.gpus}")
    return SLURMCluster(
        queue=slurm.queue, account=slurm.account,
        cores=slurm.cores * threads_per_worker, processes=slurm.cores,
        memory=slurm.memory, walltime=slurm.walltime,
        job_extra_directives=directives, job_script_prologue=list(slurm.prologue),
        silence_logs="error", dashboard_address=None)


@dataclass
class DaskExecutor:
    """Runs tasks on a Dask cluster; see the module docstring for where the cluster comes from.

    Attributes
    ----------
    workers : int
        Worker processes of the local cluster; with another cluster, the least number of runs
        kept in flight (the cluster's total thread count is used when larger).
    data_root : Path or None
        Dataset root as seen by the workers (they load the data themselves).
    scheduler : str or None
        ``tcp://HOST:PORT`` of a running scheduler.
    retries : int
        Extra attempts for a run whose worker died; then the run is recorded as failed.
    slurm : SlurmSection or None
        Start SLURM jobs instead of a local cluster.
    checkpoints : CheckpointPlan or None
        The driver's checkpoint folder and interval, handed to every worker (on SLURM the folder
        must be on a filesystem the driver and all nodes share).
    """

    workers: int = 2
    data_root: Optional[Path] = None
    device: str = "auto"
    train_fn: Optional[TrainFn] = None
    load_fn: Optional[LoadFn] = None
    on_epoch: Optional[EpochCallback] = None
    scheduler: Optional[str] = None
    retries: int = 2
    slurm: Any = None
    threads_per_worker: int = 1
    checkpoints: Optional[CheckpointPlan] = None
    _epochs: queue_module.Queue = field(default_factory=queue_module.Queue, repr=False)

    def scheduler_address(self) -> Optional[str]:
        """Dask's ``scheduler-address`` config (set by ``--scheduler``) or else ``scheduler``."""
        import dask

        return dask.config.get("scheduler-address", None) or self.scheduler or None

    @contextlib.contextmanager
    def client(self) -> Iterator[Any]:
        """A connected ``distributed.Client``; a cluster started here is closed on exit."""
        import dask
        from distributed import Client, LocalCluster

        cluster = None
        address = self.scheduler_address()
        try:
            if address:
                try:
                    client = Client(address, timeout=dask.config.get(
                        "distributed.comm.timeouts.connect"))
                except (OSError, TimeoutError) as exc:
                    raise StudyError(f"cannot reach the Dask scheduler {address}: {exc}; start "
                                     f"it with `dask scheduler` or fix --scheduler") from None
            else:
                # allowed-failures 0: a worker death surfaces at once; ``retries`` decides
                with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
                        warnings.catch_warnings():
                    # the scheduler's HTTP endpoint moving off a busy port 8787 is no news
                    warnings.filterwarnings("ignore", "Port .* is already in use")
                    if self.slurm is not None:
                        cluster = slurm_cluster(self.slurm, self.threads_per_worker)
                        cluster.scale(jobs=self.slurm.jobs)
                    else:
                        cluster = LocalCluster(n_workers=self.workers, processes=True,
                                               threads_per_worker=self.threads_per_worker,
                                               host="127.0.0.1", dashboard_address=None,
                                               silence_logs=logging.ERROR)
                client = Client(cluster)
            try:
                try:
                    client.register_plugin(TorchThreadsPlugin(self.threads_per_worker))
                except Exception as exc:   # e.g. workers without cffbench installed
                    raise StudyError(f"the Dask workers cannot set up cffbench "
                                     f"({_one_line(exc)}); install cffbench on every worker"
                                     ) from None
                if self.on_epoch is not None:
                    client.subscribe_topic(EPOCH_TOPIC, self._epochs.put)
                yield client
            finally:
                client.close()
        finally:
            if cluster is not None:
                cluster.close()

    def _in_flight_limit(self, client: Any) -> int:
        try:
            threads = sum(client.nthreads().values())
        except Exception:
            threads = 0
        if self.slurm is not None:
            threads = max(threads, self.slurm.jobs * self.slurm.cores)
        return max(self.workers, threads, 1)

    def _drain_epochs(self) -> None:
        while self.on_epoch is not None:
            try:
                event = self._epochs.get_nowait()
            except queue_module.Empty:
                return
            message = event[1] if isinstance(event, tuple) else event
            self.on_epoch(message["run_id"], message["record"])

    def map_runs(self, tasks: Iterable[RunTask]) -> Iterator[RunOutcome]:
        """Submit tasks lazily (at most the in-flight limit), yield outcomes as they finish."""
        from distributed import KilledWorker, wait

        task_iter = iter(tasks)
        first = next(task_iter, None)
        if first is None:   # nothing to run: start no cluster (and submit no SLURM jobs)
            return
        task_iter = itertools.chain([first], task_iter)
        with self.client() as client:
            pending: dict[Any, RunTask] = {}
            deaths: dict[str, int] = {}
            exhausted = False

            def submit(task: RunTask) -> None:
                future = client.submit(dask_entry, task, self.data_root, self.device,
                                       self.train_fn, self.load_fn, self.on_epoch is not None,
                                       self.checkpoints,
                                       pure=False, key=f"cffbench-run-{task.run_id}-"
                                                        f"{deaths.get(task.run_id, 0)}")
                pending[future] = task

            try:
                while True:
                    limit = self._in_flight_limit(client)
                    while not exhausted and len(pending) < limit:
                        task = next(task_iter, None)
                        if task is None:
                            exhausted = True
                            break
                        submit(task)
                    if not pending:
                        break
                    try:
                        done, _ = wait(list(pending), timeout=POLL_SECONDS,
                                       return_when="FIRST_COMPLETED")
                    except TimeoutError:
                        done = set()
                    self._drain_epochs()
                    for future in done:
                        task = pending.pop(future)
                        if future.status == "finished":
                            outcome = future.result()
                            future.release()   # frees the worker's copy of the result
                            yield outcome
                            continue
                        exc = future.exception() if future.status == "error" else None
                        future.release()
                        if isinstance(exc, KilledWorker):
                            deaths[task.run_id] = deaths.get(task.run_id, 0) + 1
                            if deaths[task.run_id] <= self.retries:
                                submit(task)
                                continue
                            error = (f"worker process died {deaths[task.run_id]} time(s) "
                                     f"running this run (killed or out of memory?)")
                        elif exc is not None:
                            error = _one_line(exc)
                        else:
                            error = f"task {future.status} by the Dask cluster"
                        yield RunOutcome(task.run_id, None, error, device=self.device)
                self._drain_epochs()
            finally:
                # Ctrl-C or an error: stop the cluster's work on what is still pending.
                if pending:
                    with contextlib.suppress(Exception):
                        client.cancel(list(pending), force=True)
                    pending.clear()
