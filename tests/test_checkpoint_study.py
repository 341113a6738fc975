"""Checkpoints in a study: the driver names the folder (``<results>/checkpoints``), every
executor's workers resume from it, a stored run's checkpoint is deleted, stale ones are removed,
``status`` shows in-flight runs, and checkpoint settings never change run ids.

The real engine runs on small synthetic data injected through ``load_fn`` (module level, so
local and Dask worker processes import it by reference).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from conftest import make_synthetic_splits
from cffbench.errors import StudyError
from cffbench.ff import NUMERICS_VERSION, train_run
from cffbench.ff.checkpoint import RunCheckpoint, read_state, write_state
from cffbench.study import expand, in_flight_runs, parse_study, read_curves, read_runs, run_study

torch.set_num_threads(1)

STUDY = '''\
name = "ckpt"
seeds = [0, 1]
[data]
datasets = ["mnist"]
n_train = 120
[train]
hidden = [16, 12, 8]
epochs_per_layer = 6
train_eval_size = 60
[collab]
alpha = "learned"
gamma_optimizer = "adam"
[grid]
variant = ["ff", "a-cff"]
'''
#: wall-clock / per-attempt fields that legitimately differ between an interrupted and an
#: uninterrupted run (the resumed one's duration also counts the interrupted attempt)
TIME_FIELDS = ["duration_s", "started_at"]
#: a first attempt's start (Unix s, 2023-11-14 22:13:20 UTC) planted in a checkpoint
FIRST_START = 1.7e9


class Interrupt(Exception):
    pass


def synthetic_load(name, root, n_train=None, seed=0):
    return make_synthetic_splits(n_train=n_train or 120, n_eval=60, n_features=32, seed=seed)


@pytest.fixture
def study_file(tmp_path):
    path = tmp_path / "ckpt.toml"
    path.write_text(STUDY)
    return path


def run(study_file, results, **kwargs):
    kwargs.setdefault("executor", "serial")
    return run_study(study_file, results, load_fn=synthetic_load, **kwargs)


def stored(results) -> tuple[pd.DataFrame, pd.DataFrame]:
    runs = read_runs(results).drop(columns=TIME_FIELDS).set_index("run_id").sort_index()
    curves = read_curves(results).sort_values(["run_id", "layer", "epoch"]).reset_index(drop=True)
    return runs, curves


def interrupt_into(results, task, after_rows: int, every: int = 2) -> RunCheckpoint:
    """Train ``task`` in this process with its checkpoint in ``results/checkpoints`` and stop
    it after ``after_rows`` curve rows, as a killed worker would leave it."""
    checkpoint = RunCheckpoint(results / "checkpoints" / f"{task.run_id}.pt", task.run_id, every)
    seen = []

    def stop(row):
        seen.append(row)
        if len(seen) == after_rows:
            raise Interrupt
    with pytest.raises(Interrupt):
        train_run(task.config, synthetic_load("mnist", None, task.n_train, task.seed), "cpu",
                  on_epoch=stop, checkpoint=checkpoint)
    return checkpoint


@pytest.fixture
def reference(study_file, tmp_path):
    results = tmp_path / "reference"
    run(study_file, results, checkpoint_every=0)
    return stored(results)


def test_checkpointing_every_epoch_changes_no_stored_value_and_leaves_no_checkpoint(
        study_file, tmp_path, reference):
    results = tmp_path / "r"
    summary = run(study_file, results, checkpoint_every=1)
    assert summary.ok == 4
    runs, curves = stored(results)
    pd.testing.assert_frame_equal(runs, reference[0])
    pd.testing.assert_frame_equal(curves, reference[1])
    assert not list((results / "checkpoints").iterdir())   # deleted once each run was stored


@pytest.mark.parametrize("executor", ["serial", pytest.param("local", marks=pytest.mark.slow),
                                      pytest.param("dask", marks=pytest.mark.slow)])
def test_each_executor_resumes_an_interrupted_run_from_the_drivers_checkpoint_folder(
        study_file, tmp_path, reference, executor):
    results = tmp_path / "r"
    run(study_file, results, checkpoint_every=0)           # the store exists; redo one run
    task = next(t for t in expand(parse_study(STUDY)) if t.variant == "a-cff" and t.seed == 1)
    (results / "runs" / f"{task.run_id}.parquet").unlink()
    checkpoint = interrupt_into(results, task, after_rows=9)
    state = read_state(checkpoint.path)
    state["elapsed_s"] = 1.0e5     # marks the checkpoint: only a resumed run can report it
    assert state["started_at"] == checkpoint.started_at   # the first attempt's start, passed on
    state["started_at"] = FIRST_START
    write_state(checkpoint.path, state)
    inflight = in_flight_runs(results)
    assert inflight["run_id"].tolist() == [task.run_id]
    assert inflight[["layer", "epoch", "epochs_done"]].iloc[0].tolist() == [2, 2, 8]

    summary = run(study_file, results, executor=executor, workers=2, checkpoint_every=2)
    assert (summary.executed, summary.ok) == (1, 1)
    runs, curves = stored(results)
    pd.testing.assert_frame_equal(runs, reference[0])     # bit for bit, every stored column
    pd.testing.assert_frame_equal(curves, reference[1])
    resumed = read_runs(results).set_index("run_id").loc[task.run_id]
    assert resumed["duration_s"] >= 1.0e5
    # stored with the start of its first attempt, not of the attempt that resumed it
    assert resumed["started_at"] == pd.Timestamp(FIRST_START, unit="s", tz="UTC")
    assert not checkpoint.path.exists() and in_flight_runs(results).empty


def test_stale_checkpoints_are_removed_and_force_starts_runs_over(study_file, tmp_path):
    results = tmp_path / "r"
    run(study_file, results, checkpoint_every=0)
    task = expand(parse_study(STUDY))[0]
    folder = results / "checkpoints"
    folder.mkdir(exist_ok=True)
    (folder / "0123456789abcdef.pt").write_bytes(b"a run no longer in the study")
    (folder / f"{task.run_id}.pt").write_bytes(b"a run already stored")
    summary = run(study_file, results)
    assert "2 stale checkpoint(s) removed" in summary.notes
    assert not list(folder.glob("*.pt"))


def test_failed_run_keeps_its_checkpoint_for_the_retry(study_file, tmp_path):
    results = tmp_path / "r"
    task = next(t for t in expand(parse_study(STUDY)) if t.variant == "ff" and t.seed == 0)
    checkpoint = interrupt_into(results, task, after_rows=5)

    def failing_load(name, root, n_train=None, seed=0):
        raise RuntimeError("simulated crash")
    summary = run_study(study_file, results, executor="serial", load_fn=failing_load,
                        data_root=tmp_path / "uncached")   # a root no worker has cached
    assert summary.failed == 4
    assert checkpoint.path.is_file()


def test_checkpoint_settings_are_execution_settings_not_part_of_run_ids():
    ids = [t.run_id for t in expand(parse_study(STUDY))]
    for every in ("0", "25", '"auto"'):
        study = parse_study(STUDY + f"[execution]\ncheckpoint_every = {every}\n")
        assert [t.run_id for t in expand(study)] == ids
    assert parse_study(STUDY).execution.checkpoint_every == "auto"


@pytest.mark.parametrize("bad", ["-1", '"often"', '"5"', "1.5", "true"])
def test_invalid_checkpoint_every_is_one_line_study_error(bad):
    with pytest.raises(StudyError, match="checkpoint_every") as info:
        parse_study(STUDY + f"[execution]\ncheckpoint_every = {bad}\n")
    assert "\n" not in str(info.value)
    assert str(info.value).count("got") <= 1   # the value is named once, not twice


def test_invalid_checkpoint_every_option_is_refused_before_the_store_changes(study_file, tmp_path):
    with pytest.raises(StudyError, match="checkpoint-every"):
        run(study_file, tmp_path / "r", checkpoint_every="often")
    assert not (tmp_path / "r").exists()


def test_status_command_shows_in_flight_runs_with_their_checkpoint_epoch(study_file, tmp_path):
    from cffbench.cli import app
    from typer.testing import CliRunner

    results = tmp_path / "r"
    run(study_file, results, checkpoint_every=0)
    task = next(t for t in expand(parse_study(STUDY)) if t.variant == "a-cff" and t.seed == 0)
    (results / "runs" / f"{task.run_id}.parquet").unlink()
    interrupt_into(results, task, after_rows=9)
    out = CliRunner().invoke(app, ["status", str(results)]).output
    line = next(line for line in out.splitlines() if line.startswith("in flight"))
    assert f"{task.run_id} a-cff checkpointed at layer 2, epoch 2/6 (8 of 18 epochs)" in line
    info = json.loads((results / "checkpoints" / f"{task.run_id}.json").read_text())
    assert info["numerics_version"] == NUMERICS_VERSION and info["run_id"] == task.run_id


def test_verbose_progress_of_a_resumed_sequential_run_counts_the_finished_layers():
    import io

    from rich.console import Console

    from cffbench.study.progress import RichReporter

    study = parse_study(STUDY)
    task = next(t for t in expand(study) if t.variant == "a-cff")
    reporter = RichReporter(verbose=True, console=Console(file=io.StringIO(), width=200))
    reporter.start(study, [task], 1, 0)
    try:
        reporter.epoch(task.run_id, {"layer": 2, "epoch": 3, "loss": 0.5})   # first row seen
        bar = reporter.progress.tasks[reporter.run_bars[task.run_id]]
        assert (bar.completed, bar.total) == (6 + 3, 18)
    finally:
        reporter.stop()


def test_plan_counts_only_the_epochs_left_of_a_checkpointed_run(study_file, tmp_path):
    from cffbench.study import plan_study

    results = tmp_path / "r"
    run(study_file, results, checkpoint_every=0)
    task = next(t for t in expand(parse_study(STUDY)) if t.variant == "a-cff" and t.seed == 0)
    (results / "runs" / f"{task.run_id}.parquet").unlink()
    fresh = plan_study(study_file, results, load_fn=synthetic_load, workers=1)
    interrupt_into(results, task, after_rows=10, every=3)   # checkpoint after 9 of 18 epochs
    resumed = plan_study(study_file, results, load_fn=synthetic_load, workers=1)
    assert resumed.in_flight == {task.run_id: 0.5} and not fresh.in_flight
    assert "1 of the remaining runs resume from a checkpoint (50 % of their epochs done" \
        in resumed.to_text()
    # the run's calibrated time (6 epochs per layer: the 6-epoch timing itself, or the 2-epoch
    # one when a loaded machine made the longer run the faster, as the slope is never < 0), halved
    (row,) = resumed.calibration.to_dict("records")
    assert row["per_run_s"] == pytest.approx(0.5 * max(row["t6_s"], row["t2_s"]))
    (row,) = fresh.calibration.to_dict("records")
    assert row["per_run_s"] == pytest.approx(max(row["t6_s"], row["t2_s"]))
