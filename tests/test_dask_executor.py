"""The Dask executor end to end: same results as ``local``, dying workers, Ctrl-C, remote scheduler.

The real engine (``cffbench.ff.train_run``) runs on small synthetic data injected through
``load_fn``; the helpers below are module-level so that Dask workers (spawned processes that
inherit ``sys.path``) import them by reference. A "dying" run calls ``os._exit`` inside the
worker process, exactly what a kill or the out-of-memory killer does to it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import torch

from conftest import make_synthetic_splits
from cffbench.errors import StudyError
from cffbench.ff import train_run
from cffbench.study import read_curves, read_runs, run_study
from cffbench.study.runner import SilentReporter

torch.set_num_threads(1)

STUDY = '''
name = "synthetic"
seeds = [0, 1]
[data]
datasets = ["mnist"]
n_train = 200
[train]
hidden = [16, 16]
epochs_per_layer = 40
lr = 0.1
train_eval_size = 100
[grid]
variant = ["ff", "a-cff"]
'''
N_RUNS = 4
ACCURACIES = ["test_acc", "val_acc", "train_acc"]
CRASH_DIR = "CFFBENCH_TEST_CRASH_DIR"      # where the dying train function keeps its markers


def synthetic_load(name, root, n_train=None, seed=0):
    """Stands in for load_splits: small learnable data, different per seed."""
    return make_synthetic_splits(n_train=n_train or 200, n_eval=100, n_features=32, seed=seed)


def train_noting_threads(config, splits, device="cpu", on_epoch=None):
    """train_run, plus a note with the torch thread count of the process that trained."""
    result = train_run(config, splits, device=device, on_epoch=on_epoch)
    result.notes.append(f"torch_threads={torch.get_num_threads()}")
    return result


def train_dying(config, splits, device="cpu", on_epoch=None):
    """Kills its own process for the a-cff seed-1 run: once (``once`` marker) or always.

    Every attempt appends a line to ``attempts`` in ``$CFFBENCH_TEST_CRASH_DIR``.
    """
    crash_dir = Path(os.environ[CRASH_DIR])
    if config.variant == "a-cff" and config.seed == 1:
        with open(crash_dir / "attempts", "a") as attempts:
            attempts.write(f"{os.getpid()}\n")
        if (crash_dir / "always").exists():
            os._exit(3)
        if not (crash_dir / "died-once").exists():
            (crash_dir / "died-once").touch()
            os._exit(3)
    return train_run(config, splits, device=device, on_epoch=on_epoch)


@pytest.fixture
def study_file(tmp_path):
    path = tmp_path / "synthetic.toml"
    path.write_text(STUDY)
    return path


def run(study_file, results, **kwargs):
    kwargs.setdefault("executor", "dask")
    kwargs.setdefault("workers", 2)
    kwargs.setdefault("device", "cpu")
    return run_study(study_file, results, load_fn=synthetic_load, **kwargs)


@pytest.fixture(scope="module")
def local_runs(tmp_path_factory):
    """The ``local`` executor's results of STUDY: the reference every Dask run must equal."""
    folder = tmp_path_factory.mktemp("local")
    (folder / "synthetic.toml").write_text(STUDY)
    summary = run(folder / "synthetic.toml", folder / "r", executor="local")
    assert summary.ok == N_RUNS
    runs = read_runs(folder / "r").set_index("run_id").sort_index()
    # the comparison means something only if the runs differ from one another
    assert runs["test_acc"].nunique() > 1 and runs["test_acc"].max() > 0.5
    return runs


class ChildWatcher(SilentReporter):
    """Notes every process below this one while runs finish (the cluster's workers)."""

    def __init__(self, wants_epochs: bool = False):
        self.seen: dict[int, psutil.Process] = {}
        self.wants_epochs = wants_epochs
        self.epochs: list[tuple[str, dict]] = []

    def epoch(self, run_id, record):
        self.epochs.append((run_id, record))

    def finished(self, task, outcome):
        for child in psutil.Process().children(recursive=True):
            self.seen.setdefault(child.pid, child)

    def still_running(self, before: set[int]) -> list[psutil.Process]:
        return [p for pid, p in self.seen.items()
                if pid not in before and p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def children_now() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def assert_same_accuracies(runs: pd.DataFrame, reference: pd.DataFrame) -> None:
    assert sorted(runs.index) == sorted(reference.index)
    pd.testing.assert_frame_equal(runs[ACCURACIES].sort_index(), reference[ACCURACIES])


# ----------------------------------------------------------------------------- local cluster
@pytest.mark.slow
def test_local_dask_cluster_gives_exactly_the_local_executors_results(study_file, tmp_path,
                                                                      local_runs):
    before = children_now()
    watcher = ChildWatcher(wants_epochs=True)
    summary = run(study_file, tmp_path / "r", train_fn=train_noting_threads, reporter=watcher)
    assert (summary.executed, summary.ok) == (N_RUNS, N_RUNS)
    runs = read_runs(tmp_path / "r").set_index("run_id")
    assert_same_accuracies(runs, local_runs)
    # each worker trains on one torch thread
    assert runs["notes"].map(lambda text: "torch_threads=1" in json.loads(text)).all()
    # the cluster's worker processes existed during the run and are gone afterwards
    assert watcher.seen and not watcher.still_running(before)
    # -v progress: the workers' epoch records reach the driver's reporter (best effort, so
    # only records that did arrive are checked against the stored curves)
    curves = read_curves(tmp_path / "r")
    assert watcher.epochs
    for run_id, record in watcher.epochs:
        rows = curves[(curves["run_id"] == run_id) & (curves["layer"] == record["layer"])
                      & (curves["epoch"] == record["epoch"])]
        assert len(rows) == 1 and rows["loss"].iloc[0] == pytest.approx(record["loss"])
    # resume: nothing left to do, and no cluster is started for it
    before = children_now()
    assert run(study_file, tmp_path / "r").executed == 0
    assert children_now() <= before


@pytest.mark.slow
def test_dask_workers_import_the_studys_plugin_file_and_train_like_the_serial_executor(tmp_path):
    # the worker processes are spawned: they load the plugin file themselves (by path, refusing
    # a file changed since the driver hashed it) and train the same runs as the serial executor
    (tmp_path / "sumsq.py").write_text(
        "from cffbench.extensions import GOODNESS\n"
        "from cffbench.ff.goodness import GoodnessFunction\n"
        "@GOODNESS.register\n"
        "class SumSquares(GoodnessFunction):\n"
        "    name = 'sum_squares'\n"
        "    def __call__(self, h):\n"
        "        return h.pow(2).sum(dim=-1)\n")
    study = (tmp_path / "plugged.toml")
    study.write_text(STUDY.replace('seeds = [0, 1]', 'seeds = [0, 1]\nplugins = ["sumsq.py"]')
                     .replace('variant = ["ff", "a-cff"]', 'variant = ["ff"]\n'
                              'goodness = ["mean_squares", "sum_squares"]')
                     .replace("epochs_per_layer = 40", "epochs_per_layer = 5\nthreshold = 8.0"))
    from cffbench.plugins import unload_plugin_files

    summary = run(study, tmp_path / "dask")
    unload_plugin_files()
    serial = run(study, tmp_path / "serial", executor="serial")
    assert (summary.ok, serial.ok) == (4, 4)
    dask_runs = read_runs(tmp_path / "dask").set_index("run_id").sort_index()
    serial_runs = read_runs(tmp_path / "serial").set_index("run_id").sort_index()
    assert set(dask_runs["gradient"]) == {"manual", "autograd"}
    assert set(dask_runs["plugin"].dropna()) == {"sumsq"}
    assert_same_accuracies(dask_runs, serial_runs)


@pytest.mark.slow
def test_worker_killed_once_costs_one_retry_and_changes_no_result(study_file, tmp_path,
                                                                   monkeypatch, local_runs):
    monkeypatch.setenv(CRASH_DIR, str(tmp_path))
    summary = run(study_file, tmp_path / "r", train_fn=train_dying)
    assert (tmp_path / "died-once").exists()
    assert len((tmp_path / "attempts").read_text().split()) == 2   # died, then retried
    assert (summary.executed, summary.ok, summary.failed) == (N_RUNS, N_RUNS, 0)
    assert_same_accuracies(read_runs(tmp_path / "r").set_index("run_id"), local_runs)


@pytest.mark.slow
def test_run_whose_worker_always_dies_is_failed_after_retries_and_study_completes(
        study_file, tmp_path, monkeypatch, local_runs):
    monkeypatch.setenv(CRASH_DIR, str(tmp_path))
    (tmp_path / "always").touch()
    summary = run(study_file, tmp_path / "r", train_fn=train_dying)
    assert (summary.executed, summary.ok, summary.failed) == (N_RUNS, N_RUNS - 1, 1)
    attempts = (tmp_path / "attempts").read_text().split()
    assert len(attempts) == 3 and len(set(attempts)) == 3   # default retries = 2, new process each
    runs = read_runs(tmp_path / "r")
    failed = runs.query("status == 'failed'")
    assert list(failed["variant"]) == ["a-cff"] and list(failed["seed"]) == [1]
    assert failed["error"].str.contains("worker process died 3 time").all()
    # resume: only the failed run is redone, and now it matches the local executor
    (tmp_path / "always").unlink()
    (tmp_path / "died-once").touch()
    resumed = run(study_file, tmp_path / "r", train_fn=train_dying)
    assert (resumed.already_done, resumed.executed, resumed.ok) == (N_RUNS - 1, 1, 1)
    assert_same_accuracies(read_runs(tmp_path / "r").set_index("run_id"), local_runs)


@pytest.mark.slow
def test_retries_from_the_study_file_zero_records_the_first_death_as_failed(tmp_path,
                                                                            monkeypatch):
    monkeypatch.setenv(CRASH_DIR, str(tmp_path))
    study_file = tmp_path / "synthetic.toml"
    study_file.write_text(STUDY + '[execution]\nexecutor = "dask"\nretries = 0\n')
    # one worker: one run in flight, so the death can cost no other run
    summary = run_study(study_file, tmp_path / "r", workers=1, device="cpu",
                        load_fn=synthetic_load, train_fn=train_dying)
    assert (summary.ok, summary.failed) == (N_RUNS - 1, 1)
    assert "worker process died 1 time" in read_runs(tmp_path / "r").query(
        "status == 'failed'")["error"].iloc[0]
    assert len((tmp_path / "attempts").read_text().split()) == 1


DRIVER = """
import sys
sys.path.insert(0, {tests!r})
from test_dask_executor import synthetic_load, train_slow_unless_ff_seed_0
from cffbench.study import run_study
if __name__ == "__main__":   # worker processes are spawned: they import this file
    try:
        run_study({study!r}, {results!r}, executor="dask", workers=2, device="cpu",
                  load_fn=synthetic_load, train_fn=train_slow_unless_ff_seed_0)
    except KeyboardInterrupt:
        sys.exit(130)
"""


def train_slow_unless_ff_seed_0(config, splits, device="cpu", on_epoch=None):
    """train_run; while ``$CFFBENCH_TEST_SLOW`` is set, every run but ff seed 0 first sleeps."""
    if os.environ.get("CFFBENCH_TEST_SLOW") and (config.variant, config.seed) != ("ff", 0):
        time.sleep(120)
    return train_run(config, splits, device=device, on_epoch=on_epoch)


@pytest.mark.slow
def test_ctrl_c_keeps_finished_runs_stops_every_worker_and_resumes(study_file, tmp_path,
                                                                   local_runs, foreground_job):
    results = tmp_path / "r"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(tests=str(Path(__file__).parent), study=str(study_file),
                                    results=str(results)))
    env = {**os.environ, "CFFBENCH_TEST_SLOW": "1"}
    driver = subprocess.Popen([sys.executable, str(script)], env=env, stderr=subprocess.PIPE,
                              text=True, **foreground_job)
    seen: dict[int, psutil.Process] = {}
    deadline = time.monotonic() + 180
    while not list(results.glob("runs/*.parquet")) and time.monotonic() < deadline:
        assert driver.poll() is None, driver.stderr.read()
        for child in psutil.Process(driver.pid).children(recursive=True):
            seen.setdefault(child.pid, child)
        time.sleep(0.2)
    # what a terminal's Ctrl-C does: SIGINT to the whole foreground process group
    os.killpg(driver.pid, signal.SIGINT)
    assert driver.wait(timeout=60) == 130
    assert "Traceback" not in driver.stderr.read()
    assert len(seen) >= 2   # the cluster's worker processes (and their nannies' helpers)
    time.sleep(1)
    assert not [p for p in seen.values() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert len(read_runs(results)) == 1           # the finished run was kept, readable
    resumed = run(study_file, results)
    assert (resumed.already_done, resumed.executed, resumed.ok) == (1, N_RUNS - 1, N_RUNS - 1)
    assert_same_accuracies(read_runs(results).set_index("run_id"), local_runs)


# ----------------------------------------------------------------------------- running cluster
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Port .* is already in use")
def test_scheduler_in_the_study_file_is_used_and_left_running(study_file, tmp_path, local_runs):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        with open(study_file, "a") as study:
            study.write(f'[execution]\nscheduler = "{cluster.scheduler_address}"\n')
        summary = run(study_file, tmp_path / "r", workers=1, train_fn=train_noting_threads)
        assert summary.ok == N_RUNS
        runs = read_runs(tmp_path / "r").set_index("run_id")
        assert_same_accuracies(runs, local_runs)
        assert runs["notes"].map(lambda text: "torch_threads=1" in json.loads(text)).all()
        assert "cffbench-run" in cluster.scheduler.task_prefixes   # our runs went there
        with Client(cluster) as client:          # the cluster we did not start still serves
            assert len(client.nthreads()) == 2


def test_unreachable_scheduler_is_a_study_error_and_store_untouched(study_file, tmp_path):
    import dask

    with dask.config.set({"scheduler-address": "tcp://127.0.0.1:9",
                          "distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(StudyError, match="cannot reach the Dask scheduler tcp://127.0.0.1:9"):
            run(study_file, tmp_path / "r")
    assert not list((tmp_path / "r").glob("runs/*.parquet"))
