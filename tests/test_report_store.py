"""A synthetic results directory in the run store's documented layout, and the report's reading
of it (missing / empty folders give one-line ReportErrors)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cffbench.errors import CffbenchError, ReportError
from cffbench.report.store import load_inputs

#: Mean test accuracy per dataset x variant used to draw the synthetic runs (fractions).
TRUE_MEANS = {
    ("mnist", "ff"): 0.926, ("mnist", "f-cff"): 0.930, ("mnist", "a-cff"): 0.938,
    ("mnist", "bp"): 0.980, ("fashion-mnist", "ff"): 0.840, ("fashion-mnist", "f-cff"): 0.842,
    ("fashion-mnist", "a-cff"): 0.846, ("fashion-mnist", "bp"): 0.885,
}
COLLAB = ("f-cff", "a-cff")


def _curves(run_id: str, variant: str, n_layers: int, epochs: int, rng) -> pd.DataFrame:
    rows = []
    for layer in range(n_layers):
        for epoch in range(epochs):
            t = epoch / max(epochs - 1, 1)
            gamma = 1.0 + 0.3 * t * (layer + 1) + rng.normal(0, 0.01) if variant == "a-cff" else \
                (1.0 if variant == "f-cff" else np.nan)
            rows.append({"run_id": run_id, "layer": layer, "epoch": epoch,
                         "loss": 0.7 * np.exp(-3 * t) + 0.1 + rng.normal(0, 0.005),
                         "g_pos": 2 + 3 * t + rng.normal(0, 0.05),
                         "g_neg": 2 - 1.5 * t + rng.normal(0, 0.05), "gamma": gamma,
                         "alpha_row": ""})
    return pd.DataFrame(rows)


def write_synthetic_store(root: Path, *, datasets=("mnist", "fashion-mnist"),
                          variants=("ff", "f-cff", "a-cff", "bp"), seeds=range(5),
                          alphas=("uniform",), hidden=(500, 500), epochs=30,
                          failed=0, diverged=0, sd=0.003, rng_seed=0,
                          name="synthetic-study", thetas=("per_term",),
                          single_theta_gain=0.02) -> Path:
    """Write ``runs/*.parquet``, ``curves/*.parquet`` and ``study.toml`` under ``root``.

    Runs of one seed share a seed effect (paired design). The first ``failed`` / ``diverged``
    a-cff runs get that status instead of ``ok``. Collaborative runs are written once per
    θ placement in ``thetas``; ``single`` ones gain ``single_theta_gain`` in accuracy.
    """
    rng = np.random.default_rng(rng_seed)
    (root / "runs").mkdir(parents=True, exist_ok=True)
    (root / "curves").mkdir(parents=True, exist_ok=True)
    hidden_text = "-".join(map(str, hidden))
    budget = {"failed": failed, "diverged": diverged}
    for dataset in datasets:
        for seed in seeds:
            seed_effect = rng.normal(0, sd)
            for variant in variants:
                cells = ([(a, t) for a in alphas for t in thetas] if variant in COLLAB
                         else [(None, None)])
                for alpha, theta in cells:
                    run_id = f"{dataset}-{variant}-{alpha}-{seed}"
                    if len(thetas) > 1 and theta is not None:
                        run_id += f"-{theta}"
                    acc = TRUE_MEANS[(dataset, variant)] + seed_effect + rng.normal(0, sd)
                    if theta == "single":
                        acc += single_theta_gain
                    if alpha == "distance":
                        acc += 0.002
                    status, error = "ok", None
                    for kind in ("failed", "diverged"):
                        if status == "ok" and variant == "a-cff" and budget[kind] > 0:
                            budget[kind] -= 1
                            status = kind
                    if status == "failed":
                        error = "RuntimeError: CUDA out of memory (synthetic)"
                    n_layers = len(hidden)
                    learned = alpha == "learned"
                    alpha_final = (np.full((n_layers, n_layers), 1 / max(n_layers - 1, 1))
                                   + rng.normal(0, 0.02, (n_layers, n_layers))) if learned else []
                    row = {
                        "run_id": run_id, "study": name, "dataset": dataset, "variant": variant,
                        "alpha": alpha, "seed": seed, "n_train": 2000, "hidden": hidden_text,
                        "n_layers": n_layers, "epochs_per_layer": epochs, "lr": 0.03,
                        "threshold": 2.0, "batch_size": 0, "schedule": "sequential",
                        "negatives": "fixed",
                        "gamma": 1.0 if variant in COLLAB else None,
                        "gamma_lr": 0.01 if variant in COLLAB else None,
                        "gamma_optimizer": "sgd" if variant in COLLAB else None,
                        "alpha_decay": 0.5 if variant in COLLAB else None,
                        "theta_placement": theta,
                        "precision": "fp32", "train_eval_size": 10000, "status": status,
                        "test_acc": acc if status == "ok" else np.nan,
                        "val_acc": acc + 0.001 if status == "ok" else np.nan,
                        "train_acc": acc + 0.01 if status == "ok" else np.nan,
                        "gamma_final": 1.2 if variant == "a-cff" else np.nan,
                        "gamma_final_layers": json.dumps([1.2] * n_layers if variant == "a-cff" else []),
                        "alpha_final": json.dumps(np.asarray(alpha_final).tolist()),
                        "diverged_epoch": 7 if status == "diverged" else None,
                        "duration_s": 1.5, "device": "cpu",
                        "started_at": pd.Timestamp("2026-11-27T12:00:00Z"),
                        "cffbench_version": "0.1.0", "torch_version": "2.14.1",
                        "git_commit": "0123abcd", "hostname": "test", "error": error,
                        "notes": json.dumps([]),
                    }
                    frame = pd.DataFrame([row]).astype({"diverged_epoch": "Int64"})
                    frame.to_parquet(root / "runs" / f"{run_id}.parquet")
                    if status != "failed":
                        _curves(run_id, variant, n_layers, epochs, rng).to_parquet(
                            root / "curves" / f"{run_id}.parquet")
    grid = {"variant": list(variants)}
    if len(alphas) > 1:
        grid["alpha"] = list(alphas)
    if len(thetas) > 1:
        grid["theta_placement"] = list(thetas)
    grid_lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in grid.items())
    (root / "study.toml").write_text(
        f'name = "{name}"\ndescription = "Synthetic study written by the report tests"\n'
        f"seeds = {json.dumps(list(seeds))}\n\n[data]\ndatasets = {json.dumps(list(datasets))}\n"
        f"n_train = 2000\n\n[train]\nhidden = {json.dumps(list(hidden))}\n"
        f"epochs_per_layer = {epochs}\n\n[grid]\n{grid_lines}\n")
    return root


def test_load_inputs_reads_every_run_of_the_synthetic_store(tmp_path):
    write_synthetic_store(tmp_path, seeds=range(3), failed=1)
    inputs = load_inputs(tmp_path)
    assert len(inputs.runs) == 2 * 4 * 3
    assert (inputs.runs["status"] == "failed").sum() == 1
    assert set(inputs.curves["run_id"]) <= set(inputs.runs["run_id"])
    assert inputs.study_name == "synthetic-study"


def test_missing_results_dir_is_a_one_line_report_error(tmp_path):
    with pytest.raises(ReportError, match="does not exist") as info:
        load_inputs(tmp_path / "nope")
    assert "\n" not in str(info.value)


def test_results_dir_without_runs_is_a_one_line_user_error(tmp_path):
    (tmp_path / "runs").mkdir()
    with pytest.raises(CffbenchError, match="no runs") as info:
        load_inputs(tmp_path)
    assert "\n" not in str(info.value)


def test_planned_runs_come_from_the_expanded_study_grid(tmp_path):
    # 2 datasets x 3 seeds x (ff + bp + f-cff x 2 alphas + a-cff x 2 alphas) = 36 runs
    # (three hidden layers: with two, every alpha structure is the same run)
    write_synthetic_store(tmp_path, seeds=range(3), alphas=("uniform", "learned"), epochs=3,
                          hidden=(50, 50, 50))
    inputs = load_inputs(tmp_path)
    assert inputs.planned == 36
    assert inputs.study_description == "Synthetic study written by the report tests"


def test_missing_curves_and_study_file_become_notes_not_errors(tmp_path):
    import shutil

    write_synthetic_store(tmp_path, datasets=("mnist",), seeds=range(2), epochs=3)
    shutil.rmtree(tmp_path / "curves")
    (tmp_path / "study.toml").unlink()
    inputs = load_inputs(tmp_path)
    assert inputs.planned is None and inputs.curves.empty
    assert any(n.startswith("training curves unavailable") for n in inputs.notes)
    assert any("planned run count unknown" in n for n in inputs.notes)
