"""``cffbench run / plan / status``: every user mistake is one stderr line, exit 2, store unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cffbench.cli import main
from test_study_store import STUDY, N_RUNS, run, snapshot

torch.set_num_threads(1)


def cli(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
        raise SystemExit(0)
    out, err = capsys.readouterr()
    return info.value.code, out, err


@pytest.fixture
def store(tmp_path):
    """A finished store of the synthetic study (real engine, synthetic data)."""
    study = tmp_path / "synthetic.toml"
    study.write_text(STUDY)
    results = tmp_path / "results" / "synthetic"
    run(study, results)
    return study, results


BAD_STUDIES = {
    "bad_toml": ('name = "synthetic"\nseeds = [0, 1\n', "invalid TOML"),
    "unknown_variant": (STUDY.replace('"a-cff"]', '"c-ff"]'), "[grid] variant.2"),
    "unknown_dataset": (STUDY.replace('["mnist"]', '["mnist", "imagenet"]'), "unknown dataset 'imagenet'"),
    "unknown_alpha": (STUDY.replace('"distance"]', '"random"]'), "[grid] alpha.1"),
    "negative_epochs": (STUDY.replace("epochs_per_layer = 3", "epochs_per_layer = -3"),
                        "[train] epochs_per_layer"),
    "zero_workers_in_file": (STUDY + "[execution]\nworkers = 0\n", "[execution] workers"),
    "unknown_key": (STUDY + "[train2]\nlr = 1\n", "unknown key 'train2'"),
}


@pytest.mark.parametrize("case", sorted(BAD_STUDIES))
def test_bad_study_file_is_one_stderr_line_exit_2_store_unchanged(case, store, capsys):
    _, results = store
    text, fragment = BAD_STUDIES[case]
    bad = results.parent / "bad.toml"
    bad.write_text(text)
    before = snapshot(results)
    code, out, err = cli(["run", str(bad), "--results", str(results)], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("cffbench: error: ")
    assert str(bad) in err and fragment in err
    assert "Traceback" not in err + out
    assert snapshot(results) == before


@pytest.mark.parametrize("options, fragment", [
    (["--workers", "0"], "workers must be >= 1"),
    (["--executor", "slurm"], "unknown executor 'slurm'; allowed: serial, local, dask"),
    (["--device", "tpu"], "unknown device 'tpu'"),
])
def test_bad_option_is_one_stderr_line_exit_2_store_unchanged(options, fragment, store, capsys):
    study, results = store
    before = snapshot(results)
    code, _, err = cli(["run", str(study), "--results", str(results), *options], capsys)
    assert code == 2 and err.count("\n") == 1 and fragment in err
    assert snapshot(results) == before


def test_missing_study_file_is_one_line_exit_2(tmp_path, capsys):
    code, _, err = cli(["run", str(tmp_path / "nope.toml")], capsys)
    assert code == 2 and err.count("\n") == 1 and "nope.toml: no such study file" in err
    assert not (tmp_path / "results").exists()


def test_results_of_another_study_are_refused_and_unchanged(store, capsys):
    _, results = store
    other = results.parent / "other.toml"
    other.write_text(STUDY.replace('name = "synthetic"', 'name = "other"'))
    before = snapshot(results)
    for command in (["run", str(other), "--results", str(results)],
                    ["plan", str(other), "--results", str(results), "--no-calibrate"]):
        code, _, err = cli(command, capsys)
        assert code == 2 and err.count("\n") == 1
        assert "holds results of study 'synthetic', not 'other'" in err
    assert snapshot(results) == before


def test_status_prints_counts_per_dataset_and_variant(store, capsys):
    _, results = store
    code, out, err = cli(["status", str(results)], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["dataset", "variant", "planned", "done", "ok", "diverged",
                                "failed", "missing"]
    assert ["mnist", "ff", "2", "2", "2", "0", "0", "0"] in [line.split() for line in lines]
    assert lines[-1] == f"total: planned {N_RUNS}, done {N_RUNS}, ok {N_RUNS}, diverged 0, failed 0, missing 0"


def test_status_of_missing_folder_is_one_line_exit_2(tmp_path, capsys):
    code, _, err = cli(["status", str(tmp_path / "nothing")], capsys)
    assert code == 2 and "no runs in" in err and err.count("\n") == 1


def test_plan_counts_done_and_remaining_without_writing(store, capsys):
    study, results = store
    (results / "runs" / sorted(p.name for p in (results / "runs").iterdir())[0]).unlink()
    before = snapshot(results)
    code, out, err = cli(["plan", str(study), "--results", str(results), "--no-calibrate"], capsys)
    assert code == 0, err
    assert f"{N_RUNS} runs planned, {N_RUNS - 1} done, 1 remaining" in out
    assert snapshot(results) == before
