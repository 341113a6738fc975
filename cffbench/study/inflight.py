"""The in-flight window that the ``local`` and ``dask`` executors share.

:func:`in_flight` keeps at most ``limit()`` jobs submitted, takes the next job from the job
iterator only when one has finished (so the driver's iterator can skip a run that another
process stored in the meantime), and yields each finished job's outcomes in completion order.
What a finished job means is the executor's ``settle``: its outcomes, or ``None`` to submit the
job again (the Dask executor's retry after a worker died). A worker death that costs every job in
flight (a broken process pool) settles each of them as failed; the study goes on. On any exit, the
normal end, an error, Ctrl-C (``KeyboardInterrupt`` while waiting or in the consumer) or the
consumer closing the generator, ``cancel`` gets the futures still pending, so the executor can
stop their work without waiting for it.
"""

from __future__ import annotations

from typing import Callable, Collection, Iterable, Iterator, Optional, TypeVar

from cffbench.study.worker import RunOutcome

Job = TypeVar("Job")
Future = TypeVar("Future")

#: Longest wait for a finished job before ``between`` runs again (seconds): the latency of the
#: epoch-progress relay, not of results (a finished job ends the wait at once).
POLL_SECONDS = 0.25

_EXHAUSTED = object()


def in_flight(jobs: Iterable[Job], *, submit: Callable[[Job], Future],
              wait: Callable[[list[Future], float], Collection[Future]],
              settle: Callable[[Future, Job], Optional[Iterable[RunOutcome]]],
              limit: Callable[[], int], cancel: Callable[[list[Future]], None],
              between: Callable[[], None] = lambda: None,
              poll_seconds: float = POLL_SECONDS) -> Iterator[RunOutcome]:
    """Run ``jobs`` with at most ``limit()`` in flight; yield their outcomes as they finish.

    Parameters
    ----------
    jobs : iterable of jobs, read lazily (one job is taken only when a slot is free).
    submit : ``submit(job) -> future``; starts the job.
    wait : ``wait(futures, timeout) -> finished futures`` (may be empty after ``timeout`` s).
    settle : ``settle(future, job)`` for a finished future: the job's outcomes, or ``None`` to
        submit the job again.
    limit : the number of jobs to keep in flight, asked before each refill (a cluster may grow).
    cancel : ``cancel(futures)`` for the futures still pending when the window closes.
    between : runs after every wait and once at the end (e.g. to relay epoch progress).
    poll_seconds : the ``timeout`` handed to ``wait``.

    Yields
    ------
    RunOutcome
        In completion order; each job's outcomes together.
    """
    pending: dict[Future, Job] = {}
    job_iter = iter(jobs)
    exhausted = False
    try:
        while True:
            while not exhausted and len(pending) < max(limit(), 1):
                job = next(job_iter, _EXHAUSTED)
                if job is _EXHAUSTED:
                    exhausted = True
                    break
                pending[submit(job)] = job
            if not pending:
                break
            done = wait(list(pending), poll_seconds)
            between()
            for future in done:
                job = pending.pop(future)
                outcomes = settle(future, job)
                if outcomes is None:
                    pending[submit(job)] = job
                else:
                    yield from outcomes
        between()
    finally:
        if pending:
            cancel(list(pending))
