"""Worker processes of the ``local`` and ``dask`` executors: a worker killed mid-run, and an
interrupt in the driver loop.

The train functions are module-level so that worker processes import them by reference; each
writes its worker's pid to ``$CFFBENCH_TEST_PIDS`` so the test can signal or check that process,
the way an out-of-memory kill or a user's ``kill`` meets a real worker.
"""

from __future__ import annotations

import _thread
import logging
import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from conftest import make_synthetic_splits
from cffbench.ff import train_run
from cffbench.study import expand, make_executor, parse_study
from cffbench.study.executors import WORKER_DIED, SerialExecutor

PIDS = "CFFBENCH_TEST_PIDS"      # folder where the train functions below leave their pids

STUDY = '''
name = "workers"
seeds = [0, 1, 2]
[data]
datasets = ["mnist"]
n_train = 60
[train]
hidden = [8]
epochs_per_layer = 4
train_eval_size = 30
[grid]
variant = ["ff", "f-cff"]
'''


def tiny_load(name, root, n_train=None, seed=0):
    return make_synthetic_splits(n_train=n_train or 60, n_eval=30, n_features=16, seed=seed)


def is_victim(config) -> bool:
    return (config.variant, config.seed) == ("f-cff", 1)


def train_noting_pid(config, splits, device="cpu", on_epoch=None):
    """train_run; the victim run (f-cff seed 1) first leaves its pid and waits to be killed."""
    if is_victim(config):
        folder = Path(os.environ[PIDS])
        (folder / f"victim-{os.getpid()}").touch()
        time.sleep(120)
    result = train_run(config, splits, device=device, on_epoch=on_epoch)
    result.notes.append(f"pid={os.getpid()}")
    return result


def train_sleeping(config, splits, device="cpu", on_epoch=None):
    """Leaves its pid, then takes far longer than any test waits."""
    (Path(os.environ[PIDS]) / f"run-{os.getpid()}").touch()
    time.sleep(300)
    return train_run(config, splits, device=device, on_epoch=on_epoch)


def pids_in(folder: Path, prefix: str) -> list[int]:
    return [int(p.name.split("-")[1]) for p in folder.glob(f"{prefix}-*")]


def wait_for_pids(folder: Path, prefix: str, count: int, timeout: float = 240) -> list[int]:
    deadline = time.monotonic() + timeout
    while len(pids_in(folder, prefix)) < count:
        assert time.monotonic() < deadline, f"no {prefix} pid appeared"
        time.sleep(0.05)
    return pids_in(folder, prefix)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def pid_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(PIDS, str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def serial_results():
    """Every run of STUDY in this process: what the pool's surviving runs must equal."""
    tasks = expand(parse_study(STUDY))
    outcomes = SerialExecutor(None, "cpu", train_run, tiny_load).map_runs(tasks)
    return {o.run_id: (o.result.test_acc, o.result.val_acc, o.result.train_acc) for o in outcomes}


# ----------------------------------------------------------------------------- killed worker
@pytest.mark.slow
def test_killed_local_worker_fails_its_run_and_a_new_pool_finishes_the_rest(pid_folder,
                                                                            serial_results):
    tasks = sorted(expand(parse_study(STUDY)), key=lambda t: not is_victim(t.config))
    assert is_victim(tasks[0].config) and len(tasks) == 6
    # one worker: the victim is the only run in flight, so its death costs no other run
    engine = make_executor("local", 1, None, "cpu", train_noting_pid, tiny_load)

    def kill_the_victim() -> None:
        (pid,) = wait_for_pids(pid_folder, "victim", 1)
        os.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_the_victim, daemon=True)
    killer.start()
    outcomes = {o.run_id: o for o in engine.map_runs(tasks)}
    killer.join(timeout=5)

    assert sorted(outcomes) == sorted(t.run_id for t in tasks)
    victim = outcomes[tasks[0].run_id]
    assert victim.status == "failed" and victim.result is None
    assert victim.error.startswith(WORKER_DIED) and "SIGKILL" in victim.error
    (victim_pid,) = pids_in(pid_folder, "victim")
    rest = [outcomes[t.run_id] for t in tasks[1:]]
    assert all(o.status == "ok" for o in rest)
    assert {o.result.notes[-1] for o in rest} != {f"pid={victim_pid}"}   # a new worker ran them
    for o in rest:
        assert (o.result.test_acc, o.result.val_acc, o.result.train_acc) == serial_results[o.run_id]


# ----------------------------------------------------------------------------- interrupt
@pytest.mark.slow
@pytest.mark.parametrize("executor", ["local", "dask"])
def test_interrupt_in_the_driver_loop_stops_every_worker_without_waiting(executor, pid_folder):
    tasks = expand(parse_study(STUDY))
    engine = make_executor(executor, 2, None, "cpu", train_sleeping, tiny_load)
    interrupted_at: list[float] = []

    def interrupt_once_both_workers_train() -> None:
        wait_for_pids(pid_folder, "run", 2)
        interrupted_at.append(time.monotonic())
        _thread.interrupt_main()   # what Ctrl-C does: KeyboardInterrupt in the driver's loop

    threading.Thread(target=interrupt_once_both_workers_train, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        for _ in engine.map_runs(tasks):
            pytest.fail("a run finished: the workers were meant to be busy")
    stopped = time.monotonic() - interrupted_at[0]
    workers = pids_in(pid_folder, "run")
    assert len(workers) == 2
    # the runs would take 300 s; the workers were stopped, not waited for
    assert stopped < 60
    deadline = time.monotonic() + 20
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if alive(pid)]


@pytest.mark.slow
@pytest.mark.timeout(180)   # a hold that a future shutdown waited on would hang, not fail
def test_interrupt_right_after_a_submit_stops_the_pool_without_a_traceback(pid_folder, capfd,
                                                                           caplog, monkeypatch):
    # Ctrl-C lands most often just after a run finished, when the driver has handed the next
    # job to the pool and no worker holds it yet. That job must not make the pool's shutdown
    # print a traceback (it did: "Exception in executor manager thread ... InvalidStateError").
    from loky.process_executor import _ExecutorManagerThread

    tasks = expand(parse_study(STUDY))
    engine = make_executor("local", 3, None, "cpu", train_sleeping, tiny_load)
    hand_out = threading.Event()
    hand_out.set()
    add_call_items = _ExecutorManagerThread.add_call_item_to_queue

    def add_call_items_unless_held(manager):
        # held: nothing moves while a job is pending; once shutdown has settled the pending jobs,
        # loky's own later calls (it calls this again after flagging shutdown) go through
        if hand_out.is_set() or not manager.pending_work_items:
            add_call_items(manager)

    # The window between a submit and loky's manager thread handing the job to a worker is
    # microseconds; hold the manager there (it moves nothing while held, and its loop goes on),
    # so that the second job is still pending when the interrupt comes, every time. (Holding the
    # GIL with a long switch interval did not: a blocking call in submit lets the manager run.)
    monkeypatch.setattr(_ExecutorManagerThread, "add_call_item_to_queue",
                        add_call_items_unless_held)

    def jobs():
        yield tasks[0]
        wait_for_pids(pid_folder, "run", 1)   # the pool is up and trains its first job
        hand_out.clear()
        yield tasks[1]
        raise KeyboardInterrupt   # what Ctrl-C does while the driver asks for the next job

    with caplog.at_level(logging.WARNING), pytest.raises(KeyboardInterrupt):
        for _ in engine.map_runs(jobs()):
            pytest.fail("a run finished: the workers were meant to be busy")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert "Traceback" not in capfd.readouterr().err
    (worker,) = pids_in(pid_folder, "run")   # the second job never reached a worker
    deadline = time.monotonic() + 20
    while alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(worker)


# ----------------------------------------------------------------------------- epoch relay
@pytest.mark.slow
def test_local_workers_relay_every_curve_row_to_the_driver():
    tasks = expand(parse_study(STUDY))
    received: list[tuple[str, dict]] = []
    engine = make_executor("local", 2, None, "cpu", train_run, tiny_load,
                           on_epoch=lambda run_id, record: received.append((run_id, record)))
    outcomes = {o.run_id: o for o in engine.map_runs(tasks)}
    assert all(o.status == "ok" for o in outcomes.values())
    # each row goes through a manager queue synchronously before its run returns, and the
    # driver drains the queue once more at the end: every row arrives, in order per run
    for run_id, outcome in outcomes.items():
        rows = [(r["layer"], r["epoch"], r["loss"]) for rid, r in received if rid == run_id]
        curves = outcome.result.curves
        assert rows == list(zip(curves["layer"], curves["epoch"], curves["loss"]))
