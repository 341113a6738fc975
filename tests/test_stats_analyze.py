"""analyze_results / `cffbench analyze` end to end on a run store written here with pandas."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cffbench.cli import main
from cffbench.errors import StatsError
from cffbench.analysis import analyze_results

STUDY_TOML = 'name = "toy"\nseeds = [0, 1, 2, 3, 4]\n\n[data]\ndatasets = ["mnist"]\n'


def write_store(root: Path, rows: list[dict]) -> Path:
    """``root/runs/<run_id>.parquet`` (one row each) + ``root/study.toml``, as the store lays it out."""
    (root / "runs").mkdir(parents=True)
    (root / "study.toml").write_text(STUDY_TOML, encoding="utf-8")
    for i, row in enumerate(rows):
        run = {"run_id": f"r{i:03d}", "study": "toy", "dataset": "mnist", "n_train": 1000, "hidden": "500-500",
               "n_layers": 2, "epochs_per_layer": 50, "lr": 0.03, "threshold": 2.0, "batch_size": 0,
               "schedule": "sequential", "negatives": "fixed", "precision": "fp32", "val_acc": np.nan,
               "train_acc": np.nan, "error": None, **row}
        collab = run["variant"] in ("f-cff", "a-cff")
        for key, value in (("alpha", run.get("alpha", "uniform")), ("gamma", 1.0), ("gamma_lr", 0.01),
                           ("gamma_optimizer", "sgd"), ("alpha_decay", 0.5), ("theta_placement", "per_term")):
            run[key] = value if collab else None
        frame = pd.DataFrame([run])
        for key in ("gamma", "gamma_lr", "alpha_decay"):
            frame[key] = frame[key].astype("float64")
        for key in ("alpha", "gamma_optimizer", "theta_placement", "error"):
            frame[key] = frame[key].astype("object")
        frame.to_parquet(root / "runs" / f"{run['run_id']}.parquet", index=False)
    return root


def toy_rows(n_seeds: int = 5, alphas=("uniform", "distance")) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(n_seeds):
        base = 0.92 + rng.normal(0, 0.003)
        rows.append({"variant": "ff", "seed": seed, "status": "ok", "test_acc": base + rng.normal(0, 0.001)})
        for variant, gain in (("f-cff", 0.004), ("a-cff", 0.012)):
            for alpha in alphas:
                rows.append({"variant": variant, "alpha": alpha, "seed": seed, "status": "ok",
                             "test_acc": base + gain + (0.002 if alpha == "distance" else 0) + rng.normal(0, 0.001)})
    return rows


def test_ff_outside_the_alpha_crossing_gives_a_conditions_and_a_crossing_analysis(tmp_path):
    rows = toy_rows() + [
        {"variant": "a-cff", "alpha": "uniform", "seed": 9, "status": "diverged", "test_acc": np.nan},
        {"variant": "ff", "seed": 9, "status": "failed", "test_acc": np.nan, "error": "boom"}]
    store = write_store(tmp_path / "results", rows)
    analysis = analyze_results(store)
    assert set(analysis.comparisons) == {"mnist/conditions", "mnist/crossing"}
    assert analysis.n_runs == 27 and analysis.n_used == 25
    assert analysis.excluded == {"status diverged": 1, "status failed": 1}
    assert analysis.excluded_text() == "Analysed 25 of 27 runs; left out 2 (status diverged: 1, status failed: 1)."
    conditions = analysis.comparisons["mnist/conditions"]
    assert conditions.decisions[0].step == "analysis plan"
    assert "sit outside the variant x alpha crossing" in conditions.decisions[0].reason
    assert set(conditions.tables["descriptives"]["condition"]) == {
        "ff", "a-cff / alpha=uniform", "a-cff / alpha=distance", "f-cff / alpha=uniform", "f-cff / alpha=distance"}
    # the pairs are the analysis plan's, decided once: none in the omnibus comparison
    assert conditions.power is None and "posthoc" not in conditions.tables
    primary = analysis.plan.primary
    assert sorted(zip(primary["label"], primary["scope"])) == [
        ("A-CFF − FF", "alpha = distance"), ("A-CFF − FF", "alpha = uniform"),
        ("F-CFF − FF", "alpha = distance"), ("F-CFF − FF", "alpha = uniform")]
    assert (primary["n"] == 5).all() and (primary["family_size"] == 4).all()
    crossing = analysis.comparisons["mnist/crossing"]
    assert crossing.factors == ["variant", "alpha"]
    assert list(crossing.tables["rm_anova"]["source"]) == ["variant", "alpha", "variant:alpha"]


def test_analysis_files_are_written_and_readable(tmp_path):
    store = write_store(tmp_path / "results", toy_rows())
    analysis = analyze_results(store, out=tmp_path / "out")
    out = tmp_path / "out"
    assert analysis.out_dir == out and all(p.is_file() for p in analysis.files)
    rm = pd.read_parquet(out / "mnist" / "conditions" / "rm_anova.parquet")
    pd.testing.assert_frame_equal(rm, analysis.comparisons["mnist/conditions"].tables["rm_anova"],
                                  check_dtype=False)
    assert not list(out.glob("**/posthoc.csv"))  # pairs live in contrasts.csv only
    contrasts = pd.read_csv(out / "contrasts.csv")
    assert {"label", "estimate", "ci_low", "p_adj", "verdict", "prob_improvement", "pi_low"} <= set(contrasts.columns)
    assert json.loads((out / "plan.json").read_text(encoding="utf-8"))["plan_hash"] == analysis.plan.plan.hash
    decisions = pd.read_parquet(out / "decisions.parquet")
    assert list(decisions.columns) == ["dataset", "analysis", "step", "choice", "reason"]
    assert (decisions.groupby("analysis")["step"].first() == "analysis plan").all()
    sentences = json.loads((out / "apa.json").read_text(encoding="utf-8"))
    assert sentences[0]["dataset"] == "mnist" and sentences[0]["sentence"].startswith("condition: F(")
    assert (out / "apa.txt").read_text(encoding="utf-8").count("\n") == len(sentences)
    assert "Analysed 25 of 25 runs." in (out / "summary.txt").read_text(encoding="utf-8")


def test_default_output_folder_is_results_analysis_and_only_variant_varying_gives_one_analysis(tmp_path):
    store = write_store(tmp_path / "results", toy_rows(alphas=("uniform",)))
    analysis = analyze_results(store)
    assert analysis.out_dir == store / "analysis" and (store / "analysis" / "summary.txt").is_file()
    # alpha is null for ff and 'uniform' for the rest: it does not vary, variant alone does
    assert set(analysis.comparisons) == {"mnist/main"}
    assert analysis.comparisons["mnist/main"].factors == ["variant"]


def test_empty_or_missing_result_sets_raise_one_line_stats_errors(tmp_path):
    rows = [{"variant": "ff", "seed": s, "status": "diverged", "test_acc": np.nan} for s in range(3)]
    store = write_store(tmp_path / "results", rows)
    with pytest.raises(StatsError, match=r"no usable runs .*left out 3 \(status diverged: 3\)") as info:
        analyze_results(store)
    assert "\n" not in str(info.value)
    with pytest.raises(StatsError, match="nothing to analyse"):
        analyze_results(tmp_path / "nowhere")
    with pytest.raises(StatsError, match="--dv .test_accuracy. is not a numeric run column"):
        analyze_results(write_store(tmp_path / "other", toy_rows(n_seeds=2)), dv="test_accuracy")


def test_cli_analyze_prints_the_trail_and_reports_errors_on_one_line(tmp_path, capsys):
    store = write_store(tmp_path / "results", toy_rows())
    main(["analyze", str(store), "--out", str(tmp_path / "cli-out")])
    printed = capsys.readouterr().out
    assert "=== mnist/conditions ===" in printed and "analysis plan:" in printed and " pp" in printed
    assert (tmp_path / "cli-out" / "apa.json").is_file()
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("cffbench: error: nothing to analyse") and err.count("\n") == 1
