"""The run store and the runner: ids, Parquet layout, resume, failures, corruption, ownership.

These tests run the real engine (``cffbench.ff.train_run``) on small synthetic data injected
through ``load_fn``; the tests on real MNIST live in test_cli_run_process.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from conftest import make_synthetic_splits
from cffbench.errors import DataError, StudyError
from cffbench.study import (RUN_SCHEMA, expand, load_study, read_curves, read_runs, read_study,
                            run_id, run_study)
from cffbench.study.runner import SilentReporter, study_status

torch.set_num_threads(1)

STUDY = '''\
name = "synthetic"
seeds = [0, 1]
[data]
datasets = ["mnist"]
n_train = 200
[train]
hidden = [16, 16, 16]   # three layers, so the two alpha structures differ
epochs_per_layer = 3
train_eval_size = 100
[grid]
variant = ["ff", "f-cff", "a-cff"]
alpha = ["uniform", "distance"]
'''
N_RUNS = 2 * (1 + 2 + 2)   # seeds x (ff + f-cff x 2 alpha + a-cff x 2 alpha)


def synthetic_load(name, root, n_train=None, seed=0):
    """Stands in for load_splits: small learnable data. While a flag file exists in ``root``,
    seed 1 fails (``fail-seed-1``) or kills its worker process outright (``crash-seed-1``)."""
    if root is not None and (Path(root) / "fail-seed-1").exists() and seed == 1:
        raise DataError("simulated unreadable dataset for seed 1")
    if root is not None and (Path(root) / "crash-seed-1").exists() and seed == 1:
        os._exit(3)
    return make_synthetic_splits(n_train=n_train or 200, n_eval=100, n_features=32, seed=seed)


@pytest.fixture
def study_file(tmp_path):
    path = tmp_path / "synthetic.toml"
    path.write_text(STUDY)
    return path


def run(study_file, results, **kwargs):
    kwargs.setdefault("executor", "serial")
    kwargs.setdefault("data_root", results.parent / "dataroot")
    (results.parent / "dataroot").mkdir(parents=True, exist_ok=True)
    return run_study(study_file, results, load_fn=synthetic_load, **kwargs)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


# ----------------------------------------------------------------------------- run ids
def test_run_id_is_sha256_of_canonical_json_pinned():
    effective = {"variant": "ff", "hidden": [500, 500], "epochs_per_layer": 200, "lr": 0.03,
                 "seed": 0}
    canonical = ('{"config":{"epochs_per_layer":200,"hidden":[500,500],"lr":0.03,"seed":0,'
                 '"variant":"ff"},"dataset":"mnist","n_train":2000,"seed":0}')
    assert run_id("mnist", 2000, 0, effective) == hashlib.sha256(canonical.encode()).hexdigest()[:16]
    assert run_id("mnist", 2000, 0, effective) == "adf3a658cc003281"


def test_run_ids_of_a_study_are_stable_across_processes(study_file):
    ids = [t.run_id for t in expand(load_study(study_file))]
    code = ("import sys; from cffbench.study import expand, load_study; "
            "print(' '.join(t.run_id for t in expand(load_study(sys.argv[1]))))")
    out = subprocess.run([sys.executable, "-c", code, str(study_file)], capture_output=True,
                         text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert out.stdout.split() == ids
    # pinned: the ff run of seed 0 (changes only if TrainConfig.effective() changes)
    assert ids[0] == "56c0fa223ab4e29a"


# ----------------------------------------------------------------------------- store layout
def test_store_holds_one_readable_row_per_run_with_the_documented_columns(study_file, tmp_path):
    results = tmp_path / "results" / "synthetic"
    summary = run(study_file, results)
    assert (summary.planned, summary.executed, summary.ok) == (N_RUNS, N_RUNS, N_RUNS)
    plain = pd.read_parquet(results / "runs")           # any Parquet client reads the folder
    runs = read_runs(results)
    assert len(plain) == len(runs) == N_RUNS
    assert list(runs.columns) == RUN_SCHEMA.names
    assert runs["run_id"].is_unique
    assert runs["test_acc"].between(0, 1).all() and runs["val_acc"].between(0, 1).all()
    assert set(runs["hidden"]) == {"16-16-16"} and set(runs["n_layers"]) == {3}
    ff = runs[runs["variant"] == "ff"]
    assert ff["alpha"].isna().all() and ff["gamma"].isna().all()     # ff ignores them
    assert set(runs.loc[runs["variant"] == "a-cff", "alpha"]) == {"uniform", "distance"}
    acff = runs[runs["variant"] == "a-cff"].iloc[0]
    layers = json.loads(acff["gamma_final_layers"])
    assert len(layers) == 3 and acff["gamma_final"] == pytest.approx(sum(layers) / 3)
    curves = read_curves(results)
    assert set(curves["run_id"]) == set(runs["run_id"])
    assert list(curves.columns) == ["run_id", "layer", "epoch", "loss", "g_pos", "g_neg",
                                    "gamma", "alpha_row"]
    assert read_study(results).name == "synthetic"
    assert (results / "study.toml").read_text() == STUDY


def test_rerun_does_nothing_and_force_reruns_everything(study_file, tmp_path):
    results = tmp_path / "r"
    run(study_file, results)
    before = read_runs(results).set_index("run_id")["started_at"]
    again = run(study_file, results)
    assert (again.already_done, again.executed) == (N_RUNS, 0)
    assert read_runs(results).set_index("run_id")["started_at"].equals(before)
    forced = run(study_file, results, force=True)
    assert forced.executed == N_RUNS
    after = read_runs(results).set_index("run_id")["started_at"]
    assert (after > before.reindex(after.index)).all()


def test_failed_runs_are_recorded_and_retried_on_the_next_invocation(study_file, tmp_path):
    results = tmp_path / "r"
    (tmp_path / "dataroot").mkdir()
    (tmp_path / "dataroot" / "fail-seed-1").touch()
    first = run(study_file, results)
    assert (first.executed, first.failed, first.ok) == (N_RUNS, N_RUNS // 2, N_RUNS // 2)
    runs = pd.read_parquet(results / "runs")   # failed rows share the schema
    failed = runs[runs["status"] == "failed"]
    assert len(failed) == N_RUNS // 2 and set(failed["seed"]) == {1}
    assert failed["test_acc"].isna().all()
    assert failed["error"].str.contains("DataError: simulated unreadable dataset").all()
    (tmp_path / "dataroot" / "fail-seed-1").unlink()
    second = run(study_file, results)
    assert (second.already_done, second.executed, second.ok) == (N_RUNS // 2, N_RUNS // 2, N_RUNS // 2)
    assert set(read_runs(results)["status"]) == {"ok"}


def test_diverged_runs_are_a_result_and_kept(tmp_path):
    path = tmp_path / "div.toml"
    path.write_text(STUDY.replace('alpha = ["uniform", "distance"]', "lr = [0.03, 1e30]"))
    results = tmp_path / "r"
    first = run(path, results)
    assert first.diverged == 2 * 3 and first.ok == 2 * 3
    runs = read_runs(results)
    diverged = runs[runs["status"] == "diverged"]
    assert (diverged["lr"] == 1e30).all() and diverged["test_acc"].isna().all()
    assert diverged["diverged_epoch"].notna().all()
    assert run(path, results).executed == 0


def test_corrupt_or_truncated_part_file_is_detected_and_that_run_redone(study_file, tmp_path):
    results = tmp_path / "r"
    run(study_file, results)
    files = sorted((results / "runs").glob("*.parquet"))
    files[0].write_bytes(files[0].read_bytes()[:40])          # truncated
    files[1].write_bytes(b"not parquet at all")              # garbage
    (results / "curves" / files[2].name).unlink()            # row without its curves
    summary = run(study_file, results)
    assert summary.executed == 3 and summary.already_done == N_RUNS - 3
    assert any("unreadable" in note for note in summary.notes)
    for f in files[:3]:
        assert pq.read_table(f).num_rows == 1
    assert len(pd.read_parquet(results / "runs")) == N_RUNS


def test_stale_temp_files_are_ignored_by_readers_and_cleaned_up(study_file, tmp_path):
    results = tmp_path / "r"
    run(study_file, results)
    dead_pid = 4194305 + 7    # above Linux's largest pid_max: no such process
    stale = results / "runs" / f".0123456789abcdef.parquet.{dead_pid}.deadbeef.tmp"
    stale.write_bytes(b"half a parquet file")
    assert len(pd.read_parquet(results / "runs")) == N_RUNS
    run(study_file, results)
    assert not stale.exists()


def test_interrupted_study_keeps_finished_runs_and_resumes(study_file, tmp_path):
    class InterruptAfterTwo(SilentReporter):
        def __init__(self):
            self.n = 0

        def finished(self, task, outcome):
            self.n += 1
            if self.n == 2:
                raise KeyboardInterrupt

    results = tmp_path / "r"
    with pytest.raises(KeyboardInterrupt):
        run(study_file, results, reporter=InterruptAfterTwo())
    assert len(pd.read_parquet(results / "runs")) == 2
    resumed = run(study_file, results)
    assert (resumed.already_done, resumed.executed) == (2, N_RUNS - 2)


@pytest.mark.slow
def test_local_process_pool_survives_a_dying_worker_and_matches_serial(study_file, tmp_path):
    run(study_file, tmp_path / "serial")
    (tmp_path / "dataroot" / "crash-seed-1").touch()
    crashed = run(study_file, tmp_path / "local", executor="local", workers=2)
    # every seed-1 run kills its worker; runs in flight with it are lost too, and retried
    assert crashed.executed == N_RUNS and crashed.failed >= N_RUNS // 2
    failed = read_runs(tmp_path / "local").query("status == 'failed'")
    assert failed["error"].str.contains("worker process died").all()
    assert failed["cpu_capability"].isna().all()    # recorded by the driver: no worker's figures
    (tmp_path / "dataroot" / "crash-seed-1").unlink()
    summary = run(study_file, tmp_path / "local", executor="local", workers=2)
    assert summary.executed == crashed.failed and summary.ok == crashed.failed
    serial = read_runs(tmp_path / "serial").set_index("run_id")
    local = read_runs(tmp_path / "local").set_index("run_id")
    pd.testing.assert_series_equal(serial["test_acc"], local["test_acc"].reindex(serial.index))


# ----------------------------------------------------------------------------- ownership + errors
def test_other_study_into_existing_results_is_refused_and_store_unchanged(study_file, tmp_path):
    results = tmp_path / "r"
    run(study_file, results)
    before = snapshot(results)
    other = tmp_path / "other.toml"
    other.write_text(STUDY.replace('name = "synthetic"', 'name = "other"'))
    with pytest.raises(StudyError, match="holds results of study 'synthetic', not 'other'"):
        run(other, results)
    assert snapshot(results) == before


def test_non_results_folder_is_refused(study_file, tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "thesis.tex").write_text("keep me")
    with pytest.raises(StudyError, match="not a cffbench results directory"):
        run(study_file, tmp_path / "r")


def test_empty_or_missing_store_reads_as_study_error(tmp_path):
    for reader in (read_runs, read_curves, read_study):
        with pytest.raises(StudyError, match=r"no (runs|curves) in .*; run `cffbench run STUDY` first"):
            reader(tmp_path / "missing")


def test_status_counts_planned_done_failed_per_dataset_and_variant(study_file, tmp_path):
    results = tmp_path / "r"
    (tmp_path / "dataroot").mkdir()
    (tmp_path / "dataroot" / "fail-seed-1").touch()
    run(study_file, results)
    table = study_status(results).set_index("variant")
    assert table.loc["ff", ["planned", "done", "failed", "missing"]].tolist() == [2, 1, 1, 0]
    assert table.loc["a-cff", ["planned", "done", "failed", "missing"]].tolist() == [4, 2, 2, 0]
    assert table["planned"].sum() == N_RUNS


# ----------------------------------------------------------------------------- store edge cases
def test_study_without_a_name_key_can_be_rerun_into_its_results(tmp_path):
    # The name comes from the file's stem; the stored copy (always study.toml) must keep it.
    path = tmp_path / "nameless.toml"
    path.write_text(STUDY.replace('name = "synthetic"\n', ""))
    results = tmp_path / "r"
    first = run(path, results)
    again = run(path, results)
    assert first.executed == N_RUNS and (again.already_done, again.executed) == (N_RUNS, 0)
    assert read_study(results).name == "nameless"


def test_part_file_with_another_schema_is_redone(study_file, tmp_path):
    results = tmp_path / "r"
    run(study_file, results)
    victim = sorted((results / "runs").glob("*.parquet"))[0]
    old = pq.read_table(victim).drop(["precision"])      # as written by an older version
    pq.write_table(old, victim)
    again = run(study_file, results)
    assert again.executed == 1
    assert pq.read_schema(victim).remove_metadata().equals(RUN_SCHEMA)
    assert len(pd.read_parquet(results / "runs").columns) == len(RUN_SCHEMA.names)


def test_failed_run_whose_error_looks_like_rich_markup_is_printed_verbatim():
    import io

    from rich.console import Console

    from cffbench.ff import TrainConfig
    from cffbench.study.executors import RunOutcome
    from cffbench.study.grid import RunTask
    from cffbench.study.progress import RichReporter

    out = io.StringIO()
    reporter = RichReporter(console=Console(file=out, width=200))
    config = TrainConfig(epochs_per_layer=1)
    task = RunTask("abc", "s", "mnist", 200, 0, config, config.effective())
    reporter.finished(task, RunOutcome("abc", None, "cannot write [/scratch/run] [type=x]"))
    assert "cannot write [/scratch/run] [type=x]" in out.getvalue()


def test_editing_a_study_sets_old_runs_aside_and_reverting_restores_them(study_file, tmp_path):
    results = tmp_path / "r"
    run(study_file, results)
    original = set(read_runs(results)["run_id"])
    study_file.write_text(STUDY.replace("epochs_per_layer = 3", "epochs_per_layer = 2"))
    edited = run(study_file, results)
    assert edited.executed == N_RUNS
    current = read_runs(results)
    assert len(current) == N_RUNS and set(current["epochs_per_layer"]) == {2}
    assert not original & set(current["run_id"])
    aside = {p.stem for p in (results / "superseded" / "runs").glob("*.parquet")}
    assert aside == original                       # kept, not deleted
    assert {p.stem for p in (results / "superseded" / "curves").glob("*.parquet")} == original
    study_file.write_text(STUDY)                   # revert the edit
    reverted = run(study_file, results)
    assert reverted.executed == 0 and reverted.already_done == N_RUNS
    assert set(read_runs(results)["run_id"]) == original
    assert set(read_curves(results)["run_id"]) == original


def test_each_stored_run_records_the_numerics_version_that_produced_it(study_file, tmp_path):
    from cffbench.ff import NUMERICS_VERSION

    results = tmp_path / "r"
    run(study_file, results)
    assert set(read_runs(results)["numerics_version"]) == {NUMERICS_VERSION}


@pytest.mark.parametrize("workers", [1, 2])
def test_each_stored_run_records_where_it_ran_and_the_kernel_level_and_threads(study_file,
                                                                               tmp_path, workers):
    # What besides the code decides a CPU result's last bits, as the worker that trained the run
    # saw it: the serial executor trains in this process (its thread count), a local pool's
    # processes run one torch thread each.
    import socket

    import torch

    results = tmp_path / "r"
    run(study_file, results, **({"executor": "local", "workers": 2} if workers == 2 else {}))
    runs = read_runs(results)
    assert set(runs["cpu_capability"]) == {torch.backends.cpu.get_cpu_capability()}
    assert set(runs["torch_threads"]) == {torch.get_num_threads() if workers == 1 else 1}
    assert str(runs["torch_threads"].dtype) == "Int64"
    assert set(runs["hostname"]) == {socket.gethostname()}


@pytest.mark.parametrize("legacy_index", [0, 1, 2])
def test_runs_stored_before_the_numerics_version_column_still_count_as_done(study_file, tmp_path,
                                                                            legacy_index):
    # Stores written by earlier cffbench (e.g. the committed evidence) lack the columns added
    # since (the environment columns; goodness and the extension columns; numerics_version):
    # they must read, and count as finished (no rerun), with the version and the environment
    # missing and the goodness the default they ran with.
    import pyarrow as pa

    from cffbench.study.store import ENVIRONMENT_COLUMNS, EXTENSION_COLUMNS, LEGACY_RUN_SCHEMAS

    results = tmp_path / "r"
    run(study_file, results)
    legacy = sorted((results / "runs").glob("*.parquet"))[:3]
    dropped = [*ENVIRONMENT_COLUMNS, *(EXTENSION_COLUMNS if legacy_index >= 1 else ()),
               *(["numerics_version"] if legacy_index == 2 else [])]
    for path in legacy:
        table = pq.read_table(path)
        old = table.drop_columns(dropped)
        assert old.schema.remove_metadata().equals(LEGACY_RUN_SCHEMAS[legacy_index])
        pq.write_table(old, path)
    again = run(study_file, results)
    assert (again.already_done, again.executed) == (N_RUNS, 0)
    runs = read_runs(results)
    assert list(runs.columns) == RUN_SCHEMA.names
    assert int(runs["numerics_version"].isna().sum()) == (3 if legacy_index == 2 else 0)
    assert int(runs["cpu_capability"].isna().sum()) == int(runs["torch_threads"].isna().sum()) == 3
    ff_family = runs["variant"] != "bp"
    assert set(runs.loc[ff_family, "goodness"]) == {"mean_squares"}
    assert runs.loc[~ff_family, "goodness"].isna().all()
    assert str(runs["numerics_version"].dtype) == "Int64"   # not float with NaN
    assert set(pa.Table.from_pandas(runs)["run_id"].to_pylist()) == {t.run_id for t in
                                                                     expand(load_study(study_file))}


def test_adding_runs_to_a_store_of_another_numerics_version_is_refused(study_file, tmp_path):
    # A study half run on one engine and finished on another would compare two engines in its
    # contrasts; the runner refuses before it touches the store, unless told otherwise.
    import pyarrow as pa

    from cffbench.ff import NUMERICS_VERSION

    results = tmp_path / "r"
    run(study_file, results)
    parts = sorted((results / "runs").glob("*.parquet"))
    for part in parts:   # as if an earlier engine had stored them
        table = pq.read_table(part)
        column = table.schema.get_field_index("numerics_version")
        table = table.set_column(column, table.schema.field(column),
                                 pa.array([NUMERICS_VERSION - 1], pa.int64()))
        pq.write_table(table, part)
    parts[0].unlink()
    (results / "curves" / parts[0].name).unlink()
    before = snapshot(results)
    with pytest.raises(StudyError, match=rf"holds 9 runs of numerics version {NUMERICS_VERSION - 1} "
                                         rf"and this engine is version {NUMERICS_VERSION}: .*"
                                         r"--allow-mixed-numerics"):
        run(study_file, results)
    assert snapshot(results) == before
    summary = run(study_file, results, allow_mixed_numerics=True)
    assert summary.executed == 1
    counts = read_runs(results)["numerics_version"].value_counts().to_dict()
    assert counts == {NUMERICS_VERSION - 1: 9, NUMERICS_VERSION: 1}
    run(study_file, results)   # complete again: nothing to add, nothing to refuse
