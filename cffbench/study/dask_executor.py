"""The Dask executor: runs on a local Dask cluster, a running Dask scheduler, or SLURM jobs.

Workers execute :func:`cffbench.study.worker.run_job` for one run at a time and return its
:class:`~cffbench.study.worker.RunOutcome` to the driver, which alone writes the Parquet store,
so workers need no shared filesystem with the driver for the results (checkpoints do need one,
see :class:`DaskExecutor`). Each worker process loads a dataset from its own data root once and
keeps it in the worker module's per-process cache; tasks carry only the configuration, never
tensors. Runs are kept in flight by :func:`cffbench.study.inflight.in_flight`, as in the
``local`` executor.

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
import signal
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from distributed import WorkerPlugin

from cffbench.errors import StudyError
from cffbench.ff.checkpoint import CheckpointPlan
from cffbench.study.grid import RunTask
from cffbench.study.inflight import in_flight
from cffbench.study.worker import (EPOCH_TOPIC, EpochCallback, LoadFn, RunOutcome, RunSettings,
                                   TrainFn, configure_process, error_line, publish_epoch,
                                   run_job)


# ----------------------------------------------------------------------------- worker side
class WorkerSetupPlugin(WorkerPlugin):
    """Dask worker plugin: each worker process trains on ``threads`` torch thread(s)
    (:func:`cffbench.study.worker.configure_process`) and sends curve rows to the driver as Dask
    events (:func:`cffbench.study.worker.publish_epoch`; used only when the driver asks)."""

    name = "cffbench-worker-setup"

    def __init__(self, threads: int = 1):
        self.threads = threads

    def setup(self, worker: Any) -> None:
        configure_process(self.threads, relay=publish_epoch)


# ----------------------------------------------------------------------------- cluster setup
def import_dask_jobqueue() -> Any:
    """``import dask_jobqueue``, keeping this process's Ctrl-C handler.

    Importing it runs ``dask_jobqueue.runner``, which replaces the SIGINT handler with
    ``sys.exit()``: Ctrl-C in ``cffbench run`` would then exit silently (``SystemExit``) instead of
    raising ``KeyboardInterrupt``, which stops the jobs and says so. The handler is put back.
    """
    handler = signal.getsignal(signal.SIGINT)
    import dask_jobqueue

    if (signal.getsignal(signal.SIGINT) is not handler and handler is not None
            and threading.current_thread() is threading.main_thread()):
        signal.signal(signal.SIGINT, handler)
    return dask_jobqueue


def check_interface(interface: Optional[str]) -> None:
    """Raise :class:`StudyError` unless ``interface`` (None: any) is a network interface of
    this machine: with ``[execution.slurm] interface`` the Dask scheduler started here listens
    on it (whether the compute nodes have it only their workers can tell)."""
    if interface is None:
        return
    import psutil

    here = sorted(psutil.net_if_addrs())
    if interface not in here:
        raise StudyError(f"[execution.slurm] interface {interface!r} is not a network interface "
                         f"of this machine, where the Dask scheduler runs (it has: "
                         f"{', '.join(here)})")


def slurm_cluster(slurm: Any, threads_per_worker: int = 1):
    """A ``dask_jobqueue.SLURMCluster`` for an ``[execution.slurm]`` table (not yet scaled).

    Each job runs ``cores`` worker processes of ``threads_per_worker`` thread(s) on
    ``cores * threads_per_worker`` CPUs; ``gpus > 0`` adds ``#SBATCH --gres=gpu:N``.
    ``interface`` is SLURMCluster's ``interface`` (the scheduler here and the workers listen on
    it), ``log_directory`` its ``log_directory`` (made absolute against the working directory,
    so the jobs write where the driver created it) and ``local_directory`` its
    ``local_directory`` (as written: the job's shell expands ``$TMPDIR`` and the like).

    Parameters
    ----------
    slurm : :class:`cffbench.study.spec.SlurmSection` (or any object with its attributes).
    threads_per_worker : int

    Returns
    -------
    dask_jobqueue.SLURMCluster
        ``cluster.job_script()`` shows the batch script; nothing is submitted until ``scale``.

    Raises
    ------
    StudyError
        When ``interface`` is not a network interface of this machine (the scheduler's).
    """
    SLURMCluster = import_dask_jobqueue().SLURMCluster

    directives = list(slurm.extra_directives)
    if slurm.gpus:
        directives.insert(0, f"--gres=gpu:{slurm.gpus}")
    interface = getattr(slurm, "interface", None)
    check_interface(interface)
    log_directory = getattr(slurm, "log_directory", None)
    if log_directory is not None:
        log_directory = str(Path(log_directory).expanduser().absolute())
    return SLURMCluster(
        queue=slurm.queue, account=slurm.account,
        cores=slurm.cores * threads_per_worker, processes=slurm.cores,
        memory=slurm.memory, walltime=slurm.walltime,
        job_extra_directives=directives, job_script_prologue=list(slurm.prologue),
        interface=interface, log_directory=log_directory,
        local_directory=getattr(slurm, "local_directory", None),
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

    def __post_init__(self) -> None:
        # a user mistake is an error before the store is touched, not once the cluster starts
        if self.slurm is not None:
            check_interface(getattr(self.slurm, "interface", None))

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
                    client.register_plugin(WorkerSetupPlugin(self.threads_per_worker))
                except Exception as exc:   # e.g. workers without cffbench installed
                    raise StudyError(f"the Dask workers cannot set up cffbench "
                                     f"({error_line(exc)}); install cffbench on every worker"
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
        settings = RunSettings.of(self)
        deaths: dict[str, int] = {}
        with self.client() as client:

            def submit(job: list[RunTask]) -> Any:
                run_id = job[0].run_id
                return client.submit(run_job, tuple(job), settings, pure=False,
                                     key=f"cffbench-run-{run_id}-{deaths.get(run_id, 0)}")

            def finished(futures: list[Any], timeout: float) -> set[Any]:
                try:
                    return wait(futures, timeout=timeout, return_when="FIRST_COMPLETED")[0]
                except TimeoutError:
                    return set()

            def settle(future: Any, job: list[RunTask]) -> Optional[list[RunOutcome]]:
                if future.status == "finished":
                    outcomes = future.result()
                    future.release()   # frees the worker's copy of the result
                    return outcomes
                exc = future.exception() if future.status == "error" else None
                future.release()
                run_id = job[0].run_id
                if isinstance(exc, KilledWorker):
                    deaths[run_id] = deaths.get(run_id, 0) + 1
                    if deaths[run_id] <= self.retries:
                        return None   # submit it again
                    error = (f"worker process died {deaths[run_id]} time(s) running this run "
                             f"(killed or out of memory?)")
                elif exc is not None:
                    error = error_line(exc)
                else:
                    error = f"task {future.status} by the Dask cluster"
                return [RunOutcome(task.run_id, None, error, device=self.device, environment={})
                        for task in job]

            def cancel(futures: list[Any]) -> None:
                # Ctrl-C or an error: stop the cluster's work on what is still pending.
                with contextlib.suppress(Exception):
                    client.cancel(futures, force=True)

            yield from in_flight(([task] for task in itertools.chain([first], task_iter)),
                                 submit=submit, wait=finished, settle=settle,
                                 limit=lambda: self._in_flight_limit(client), cancel=cancel,
                                 between=self._drain_epochs)
