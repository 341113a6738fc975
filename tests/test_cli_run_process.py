"""``python -m cffbench run`` as a real process on a tiny MNIST subset: kill -9 and resume,
two processes on one results folder, plan's calibration, and the quick study end to end."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.data, pytest.mark.slow]

TINY = '''\
name = "tiny"
seeds = [0, 1, 2, 3]
[data]
datasets = ["mnist"]
n_train = 200
[train]
hidden = [50, 50]
epochs_per_layer = {epochs}
train_eval_size = 200
[grid]
variant = ["ff", "f-cff", "a-cff"]
[execution]
executor = "serial"
'''
TINY_RUNS = 4 * 3

SUMMARY = re.compile(r"(\d+) runs planned, (\d+) already stored, (\d+) run now")


def cffbench(args: list[str], data_root: Path, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "CFFBENCH_DATA": str(data_root), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "cffbench", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def finish(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def part_files(results: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes())
            for p in (results / "runs").glob("*.parquet") if not p.name.startswith(".")}


def test_sigkill_loses_only_runs_in_flight_and_rerun_does_only_the_rest(tmp_path, data_root):
    study = tmp_path / "tiny.toml"
    study.write_text(TINY.format(epochs=20).replace('"serial"', '"local"\nworkers = 2'))
    results = tmp_path / "results"
    process = cffbench(["run", str(study), "--results", str(results)], data_root)
    deadline = time.monotonic() + 240
    while len(part_files(results) if (results / "runs").is_dir() else {}) < 2:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no part file appeared"
        time.sleep(0.05)
    workers = psutil.Process(process.pid).children(recursive=True)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = part_files(results)
    # orphaned pool workers notice the dead driver and exit instead of waiting forever
    _, alive = psutil.wait_procs(workers, timeout=20)
    assert not alive
    assert 2 <= len(before) < TINY_RUNS
    assert len(pd.read_parquet(results / "runs")) == len(before)   # readable right after kill -9

    code, out, err = finish(cffbench(["run", str(study), "--results", str(results)], data_root))
    assert code == 0, err
    planned, already, ran = map(int, SUMMARY.search(out).groups())
    assert (planned, already, ran) == (TINY_RUNS, len(before), TINY_RUNS - len(before))
    after = part_files(results)
    assert len(after) == TINY_RUNS
    assert all(after[name] == before[name] for name in before)     # finished runs untouched
    runs = pd.read_parquet(results / "runs")
    assert len(runs) == TINY_RUNS and set(runs["status"]) == {"ok"}
    assert not [p for p in results.rglob(".*.tmp")]


def test_ctrl_c_stops_workers_keeps_finished_runs_and_exits_130(tmp_path, data_root,
                                                               foreground_job):
    study = tmp_path / "tiny.toml"
    study.write_text(TINY.format(epochs=20).replace('"serial"', '"local"\nworkers = 2'))
    results = tmp_path / "results"
    # a terminal's Ctrl-C sends SIGINT to the whole foreground process group
    process = cffbench(["run", str(study), "--results", str(results), "-v"], data_root,
                       **foreground_job)
    deadline = time.monotonic() + 240
    while len(part_files(results) if (results / "runs").is_dir() else {}) < 1:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no part file appeared"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    code, _, err = finish(process, timeout=60)
    assert code == 130, err
    assert err.splitlines()[-1].startswith("cffbench: interrupted") and "Traceback" not in err
    kept = part_files(results)
    assert 1 <= len(kept) < TINY_RUNS
    assert len(pd.read_parquet(results / "runs")) == len(kept)
    code, out, err = finish(cffbench(["run", str(study), "--results", str(results)], data_root))
    assert code == 0, err
    assert SUMMARY.search(out).groups() == (str(TINY_RUNS), str(len(kept)), str(TINY_RUNS - len(kept)))


def command_line(process: psutil.Process) -> str:
    """The process's command line, or "" once it has exited: a child can turn zombie (or vanish)
    between listing and reading, and psutil then raises instead of answering."""
    try:
        return " ".join(process.cmdline())
    except psutil.NoSuchProcess:   # ZombieProcess is a NoSuchProcess
        return ""


def alive(process: psutil.Process) -> bool:
    """Running and not a zombie; False too if it exits while we ask."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_ctrl_c_while_the_workers_start_exits_130_without_a_traceback(tmp_path, data_root,
                                                                     foreground_job):
    # Ctrl-C the moment the first worker process exists, i.e. while it is still starting its
    # interpreter and importing torch: it must not die of the SIGINT with a traceback.
    study = tmp_path / "tiny.toml"
    study.write_text(TINY.format(epochs=20).replace('"serial"', '"local"\nworkers = 2'))
    process = cffbench(["run", str(study), "--results", str(tmp_path / "results")], data_root,
                       **foreground_job)
    driver = psutil.Process(process.pid)
    deadline = time.monotonic() + 120
    while not any("loky" in command_line(child) for child in driver.children()):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no worker process appeared"
        time.sleep(0.01)
    workers = [child for child in driver.children(recursive=True)]
    for worker in workers:   # the worker first, surely still starting; then the whole group
        with contextlib.suppress(psutil.NoSuchProcess):
            worker.send_signal(signal.SIGINT)
    time.sleep(0.5)
    os.killpg(process.pid, signal.SIGINT)
    code, _, err = finish(process, timeout=60)
    assert code == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.splitlines()[-1].startswith("cffbench: interrupted"), err
    psutil.wait_procs(workers, timeout=30)
    assert not [w for w in workers if alive(w)]


def test_two_processes_on_one_results_folder_leave_one_readable_table(tmp_path, data_root):
    study = tmp_path / "tiny.toml"
    study.write_text(TINY.format(epochs=5).replace("seeds = [0, 1, 2, 3]", "seeds = [0, 1]"))
    n_runs = 2 * 3
    results = tmp_path / "results"
    processes = [cffbench(["run", str(study), "--results", str(results)], data_root)
                 for _ in range(2)]
    outcomes = [finish(p) for p in processes]
    assert [code for code, _, _ in outcomes] == [0, 0], [err for _, _, err in outcomes]
    ran = [int(SUMMARY.search(out).group(3)) for _, out, _ in outcomes]
    assert sum(ran) >= n_runs
    runs = pd.read_parquet(results / "runs")
    assert len(runs) == n_runs and runs["run_id"].is_unique
    assert set(runs["status"]) == {"ok"}
    assert len(pd.read_parquet(results / "curves")["run_id"].unique()) == n_runs
    assert not [p for p in results.rglob(".*.tmp")]


def test_plan_calibrates_and_estimates_without_writing(tmp_path, data_root):
    study = tmp_path / "tiny.toml"
    study.write_text(TINY.format(epochs=20))
    code, out, err = finish(cffbench(["plan", str(study), "--results", str(tmp_path / "r"),
                                      "--workers", "2"], data_root))
    assert code == 0, err
    assert f"{TINY_RUNS} runs planned, 0 done, {TINY_RUNS} remaining" in out
    assert re.search(r"estimated time for the remaining runs: \d+m \d\ds with 2 worker", out)
    assert "timed 2- and 6-epoch runs of each of 3 architecture(s) on mnist" in out
    assert not (tmp_path / "r").exists()


def test_quick_study_scaled_down_runs_end_to_end(tmp_path, data_root):
    text = (REPO / "studies" / "quick.toml").read_text()
    text = re.sub(r"n_train = \d+", "n_train = 200", text)
    text = re.sub(r"epochs_per_layer = \d+", "epochs_per_layer = 5", text)
    text = re.sub(r"hidden = \[[\d, ]+\]", "hidden = [50, 50]", text)
    text = re.sub(r"train_eval_size = \d+", "train_eval_size = 200", text)
    study = tmp_path / "quick.toml"
    study.write_text(text)
    results = tmp_path / "results"
    code, out, err = finish(cffbench(["run", str(study), "--results", str(results)], data_root))
    assert code == 0, err
    from cffbench.study import expand, load_study, read_runs

    spec = load_study(study)
    planned = len(expand(spec))
    assert len(spec.seeds) >= 3 and planned == len(spec.seeds) * 2 * 3   # seeds x datasets x variants
    runs = read_runs(results)
    assert len(runs) == planned and set(runs["status"]) == {"ok"}
    assert set(runs["dataset"]) == {"mnist", "fashion-mnist"}
    code, out, err = finish(cffbench(["status", str(results)], data_root))
    assert code == 0 and f"total: planned {planned}, done {planned}" in out
    # the rest of the README's pipeline reads this store
    code, out, err = finish(cffbench(["analyze", str(results)], data_root))
    assert code == 0, err
    code, out, err = finish(cffbench(["report", str(results), "--format", "html",
                                      "--out", str(tmp_path / "report")], data_root))
    assert code == 0, err
    assert list((tmp_path / "report").glob("*.html"))
