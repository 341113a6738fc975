"""Checkpoint and resume for real: ``python -m cffbench run`` on a tiny MNIST study is killed
with SIGKILL at a random moment after its first checkpoint, the same command is run again, and
the finished store equals an uninterrupted run's in every stored value and curve.

Fields allowed to differ: ``duration_s`` (the resumed run also counts the killed attempt's
training time, so it differs from the uninterrupted run's wall time) and ``started_at`` (the
resumed run keeps its first attempt's start, which differs from the uninterrupted run's).
Nothing else.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = [pytest.mark.data, pytest.mark.slow]

STUDY = '''\
name = "resume"
seeds = [0]
[data]
datasets = ["mnist"]
n_train = 1000
[train]
variant = "a-cff"
hidden = [64, 48, 32]
epochs_per_layer = 100
batch_size = 250
negatives = "redraw"
train_eval_size = 200
[collab]
alpha = "learned"
gamma_optimizer = "adam"
[execution]
executor = "serial"
device = "cpu"
'''
TIME_FIELDS = ["duration_s", "started_at"]


def cffbench(args: list[str], data_root: Path) -> subprocess.Popen:
    # one thread each, so the killed, the resumed and the reference run do the same arithmetic
    env = {**os.environ, "CFFBENCH_DATA": str(data_root), "PYTHONUNBUFFERED": "1",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "cffbench", "run", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stored(results: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    from cffbench.study import read_curves, read_runs

    return (read_runs(results).drop(columns=TIME_FIELDS).reset_index(drop=True),
            read_curves(results).sort_values(["layer", "epoch"]).reset_index(drop=True))


def test_sigkill_mid_run_then_the_same_command_finishes_it_bit_for_bit(tmp_path, data_root):
    study = tmp_path / "resume.toml"
    study.write_text(STUDY)
    reference = tmp_path / "reference"
    ref = cffbench([str(study), "--results", str(reference), "--checkpoint-every", "0"], data_root)
    assert ref.wait(timeout=300) == 0, ref.communicate()

    results = tmp_path / "results"
    command = [str(study), "--results", str(results), "--checkpoint-every", "5"]
    # a random kill point covers a new phase each run; its seed is in every failure message,
    # and CFFBENCH_TEST_KILL_SEED=<seed> replays it
    seed = int(os.environ.get("CFFBENCH_TEST_KILL_SEED", random.SystemRandom().randrange(2**32)))
    rng = random.Random(seed)
    target = rng.randint(10, 250)               # epochs of 300 done when the kill comes
    print(f"CFFBENCH_TEST_KILL_SEED={seed}: kill after {target} epochs")   # shown on a failure
    process = cffbench(command, data_root)
    deadline = time.monotonic() + 300
    while True:
        assert process.poll() is None, \
            f"finished before the kill at {target} (seed {seed}): {process.communicate()}"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        sidecars = list((results / "checkpoints").glob("*.json")) if results.is_dir() else []
        try:
            done = json.loads(sidecars[0].read_text())["epochs_done"] if sidecars else 0
        except (OSError, ValueError):
            done = 0
        if done >= target:
            break
        time.sleep(0.005)
    time.sleep(rng.uniform(0.0, 0.05))   # anywhere in the next interval, mid-write included
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert list((results / "checkpoints").glob("*.pt")), "the kill left no checkpoint"
    reference_seconds = float(pd.read_parquet(reference / "runs")["duration_s"].iloc[0])
    assert not list((results / "runs").glob("*.parquet")), \
        f"the run finished before the kill (target {target}, seed {seed}, " \
        f"run {reference_seconds:.1f} s)"

    again = cffbench(command, data_root)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert "resumed from its checkpoint" in err, err
    assert not list((results / "checkpoints").iterdir())      # deleted once stored

    runs, curves = stored(results)
    ref_runs, ref_curves = stored(reference)
    assert len(runs) == 1 and runs["status"].iloc[0] == "ok"
    pd.testing.assert_frame_equal(runs, ref_runs)
    pd.testing.assert_frame_equal(curves, ref_curves)
    assert len(curves) == 300
    print(f"killed after >= {target} of 300 epochs; uninterrupted run {reference_seconds:.1f} s")
