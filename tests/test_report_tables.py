"""Formatting, the paper-values file, the paper-table logic and the LaTeX writer, on
hand-checkable inputs."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from cffbench import fmt
from cffbench.report.latex import escape, to_latex
from cffbench.analysis.descriptives import condition_descriptives
from cffbench.report.tables import Table, load_paper_values, main_configuration, paper_comparison
from cffbench.stats.descriptives import mean_ci


def check_latex(text: str) -> list[str]:
    """Problems that stop a LaTeX file from compiling: unbalanced ``\\begin``/``\\end`` pairs,
    unbalanced braces (escaped ``\\{``/``\\}`` excluded), odd math shifts, non-ASCII characters."""
    problems, stack = [], []
    for kind, env in re.findall(r"\\(begin|end)\{([^}]*)\}", text):
        if kind == "begin":
            stack.append(env)
        elif not stack or stack.pop() != env:
            problems.append(f"\\end{{{env}}} does not close the open environment")
    problems += [f"\\begin{{{env}}} never closed" for env in stack]
    depth = 0
    for token in re.findall(r"\\[{}$]|[{}]", text):
        if token in ("{", "}"):
            depth += 1 if token == "{" else -1
            if depth < 0:
                problems.append("a closing brace has no opening brace")
                depth = 0
    if depth:
        problems.append(f"{depth} brace(s) left open")
    for number, line in enumerate(text.splitlines(), 1):
        if len(re.findall(r"(?<!\\)\$", line)) % 2:
            problems.append(f"line {number}: odd number of $")
    if any(ord(ch) > 127 for ch in text):
        problems.append("non-ASCII characters (a stock article without inputenc setup may fail)")
    return problems


@pytest.mark.parametrize("p, text", [(0.004, "p = .004"), (0.0004, "p < .001"),
                                      (0.05, "p = .050"), (0.2174, "p = .217"),
                                      (float("nan"), "p undefined"), (0.9996, "p > .999")])
def test_p_values_follow_apa_style(p, text):
    assert fmt.p_value(p) == text


def test_accuracies_print_in_percent_with_two_decimals():
    assert fmt.pct(0.93812) == "93.81"
    assert fmt.pp(0.012) == "+1.20"
    assert fmt.mean_sd_n(0.926, 0.0042, 10) == "92.60 ± 0.42 (10)"
    assert fmt.mean_sd_n(0.926, float("nan"), 1) == "92.60 (1)"


def test_negative_numbers_use_a_true_minus_and_never_print_minus_zero():
    assert fmt.pp(-0.0123) == "\u22121.23"
    assert fmt.pp(-0.00001) == "+0.00"
    assert fmt.apa_decimal(-0.0001) == ".000"
    assert fmt.apa_decimal(-0.5) == "\u2212.500"


def test_paper_values_file_holds_only_the_two_confirmed_networkff_numbers():
    values, source = load_paper_values()
    assert "2512.17531" in source["citation"]
    got = {(r.dataset, r.variant): round(100 * r.paper_acc, 1) for r in values.itertuples()}
    assert got == {("mnist", "a-cff"): 93.8, ("mnist", "ff"): 92.6}


def test_condition_descriptives_match_the_t_interval_of_scipy():
    rng = np.random.default_rng(3)
    values = rng.normal(0.9, 0.01, 7)
    frame = pd.DataFrame({"dataset": "mnist", "variant": "ff", "test_acc": values})
    row = condition_descriptives(frame, []).iloc[0]
    assert row.drop("gamma_final_mean").equals(mean_ci(frame, ["dataset", "variant"], "test_acc").iloc[0])
    low, high = sps.t.interval(0.95, 6, loc=values.mean(), scale=sps.sem(values))
    assert row["n"] == 7
    assert row["ci_low"] == pytest.approx(low) and row["ci_high"] == pytest.approx(high)


def test_one_seed_leaves_std_and_ci_undefined():
    frame = pd.DataFrame({"dataset": ["mnist"], "variant": ["ff"], "test_acc": [0.9]})
    row = condition_descriptives(frame, []).iloc[0]
    assert row["n"] == 1 and np.isnan(row["std"]) and np.isnan(row["ci_low"])


def _desc():
    return pd.DataFrame({"dataset": "mnist", "variant": ["ff", "a-cff", "bp"], "n": 5,
                         "mean": [0.925, 0.945, 0.930], "std": 0.002,
                         "ci_low": [0.923, 0.943, 0.928], "ci_high": [0.927, 0.947, 0.932]})


def _pairwise(p_acff_bp: float, diff_sign: float = 1.0):
    # ``diff`` = mean_b − mean_a, with a before b in the report's variant order
    return pd.DataFrame({"dataset": "mnist", "a": ["ff", "ff", "a-cff"],
                         "b": ["a-cff", "bp", "bp"], "diff": [0.02, 0.005, -0.015 * diff_sign],
                         "p_adj": [0.001, 0.01, p_acff_bp]})


def test_paper_value_inside_and_outside_our_prediction_interval():
    values, _ = load_paper_values()
    table = paper_comparison(_desc(), values, None).set_index("variant")
    # PI half-width t(.975, 4) · 0.002 · √1.2 = 0.0061: ff's 92.6 is inside [91.89, 93.11];
    # a-cff's 93.8 is below [93.89, 95.11]; bp: no paper value
    assert table.loc["ff", "paper_in_pi"] == True  # noqa: E712
    assert table.loc["a-cff", "paper_in_pi"] == False  # noqa: E712
    assert pd.isna(table.loc["bp", "paper_in_pi"]) and pd.isna(table.loc["bp", "paper_acc"])
    assert table.loc["a-cff", "diff"] == pytest.approx(0.945 - 0.938)


def test_prediction_interval_of_one_run_matches_the_t_table_and_statsmodels():
    # y = .90, .92, .91, .93, .94: mean .92, s = √(.001 / 4) = .0158114, t(.975, 4) = 2.7764
    # (printed t tables), so PI = .92 ± 2.7764 · .0158114 · √(1 + 1/5) = [.87191, .96809], the
    # formula of R's predict(lm(y ~ 1), data.frame(k = 1), interval = "prediction") and of
    # statsmodels' obs_ci (an independent implementation, checked here).
    import statsmodels.api as sm

    y = np.array([0.90, 0.92, 0.91, 0.93, 0.94])
    desc = condition_descriptives(pd.DataFrame({"dataset": "mnist", "variant": "ff", "test_acc": y}), [])
    paper = pd.DataFrame({"dataset": ["mnist"], "variant": ["ff"], "paper_acc": [0.962]})
    row = paper_comparison(desc, paper, None).iloc[0]
    half = 2.7764 * np.sqrt(0.001 / 4) * np.sqrt(1 + 1 / 5)
    assert (row["pi_low"], row["pi_high"]) == (pytest.approx(0.92 - half, abs=2e-6),
                                               pytest.approx(0.92 + half, abs=2e-6))
    assert (round(row["pi_low"], 5), round(row["pi_high"], 5)) == (0.87191, 0.96809)
    ols = sm.OLS(y, np.ones(len(y))).fit().get_prediction(np.ones((1, 1))).summary_frame(alpha=0.05)
    assert row["pi_low"] == pytest.approx(ols["obs_ci_lower"].iloc[0])
    assert row["pi_high"] == pytest.approx(ols["obs_ci_upper"].iloc[0])
    # 96.2 % lies outside the CI of our mean, [90.04, 93.96], but inside the PI of one run
    assert row["ci_high"] < 0.962 and row["paper_in_pi"] == True  # noqa: E712


def test_prediction_interval_needs_two_runs():
    desc = condition_descriptives(pd.DataFrame({"dataset": ["mnist"], "variant": ["ff"],
                                                "test_acc": [0.926]}), [])
    paper = pd.DataFrame({"dataset": ["mnist"], "variant": ["ff"], "paper_acc": [0.926]})
    row = paper_comparison(desc, paper, None).iloc[0]
    assert np.isnan(row["pi_low"]) and pd.isna(row["paper_in_pi"])


def test_paper_table_names_the_configuration_and_the_prediction_interval():
    from cffbench.report.tables import paper_table

    desc = pd.DataFrame({"dataset": "mnist", "variant": ["ff", "a-cff"],
                         "theta_placement": [None, "per_term"], "n": 5, "mean": [0.927, 0.911], "std": 0.002, "ci_low": [0.925, 0.909],
                         "ci_high": [0.929, 0.913]})
    values, source = load_paper_values()
    table = paper_table(paper_comparison(desc, values, None), source["citation"])
    assert table.caption == "Test accuracy per dataset and variant at θ placement = per_term"
    assert table.columns[-1] == "Paper in our 95 % PI"
    assert "prediction interval of one new run" in table.note and "√(1 + 1/n)" in table.note
    assert [r[-1] for r in table.rows] == ["yes", "no"]
    plain = paper_table(paper_comparison(desc.drop(columns="theta_placement"), values, None), "")
    assert plain.caption == "Test accuracy per dataset and variant, beside the published values"


def test_best_variant_is_bold_only_when_it_beats_every_other_significantly():
    values, _ = load_paper_values()
    bold = paper_comparison(_desc(), values, _pairwise(0.001)).set_index("variant")["best"]
    assert bold.to_dict() == {"ff": False, "a-cff": True, "bp": False}
    not_sig = paper_comparison(_desc(), values, _pairwise(0.20)).set_index("variant")["best"]
    assert not not_sig.any()
    wrong_direction = paper_comparison(_desc(), values, _pairwise(0.001, -1.0))
    assert not wrong_direction["best"].any()
    assert not paper_comparison(_desc(), values, None)["best"].any()


def test_main_configuration_prefers_the_trainconfig_default_then_the_mode():
    runs = pd.DataFrame({"alpha": ["distance", "uniform", "learned", None],
                         "schedule": ["alternating"] * 3 + [None],
                         "hidden": ["100-100", "100-100", "100-100-100", "100-100"]})
    assert main_configuration(runs) == {"alpha": "uniform", "hidden": "100-100"}


def test_latex_escape_maps_specials_and_symbols_to_ascii():
    assert escape("93.80 ± 0.42 % a_b & p < .001") == \
        r"93.80 $\pm$ 0.42 \% a\_b \& p $<$ .001"
    assert escape("α − γ") == r"$\alpha$ $-$ $\gamma$"


@pytest.mark.parametrize("text, latex", [
    ("γ", r"$\gamma$"), ("θ", r"$\theta$"), ("−0.35", r"$-$0.35"), ("Δ ≥ SESOI", r"$\Delta$ $\geq$ SESOI"),
    ("5 × 10", r"5 $\times$ 10"), ("ω²", r"$\omega^2$"), ("χ² interval", r"$\chi^2$ interval"),
    ("ηp²", r"$\eta$p$^2$"), ("γ₀ = 1", r"$\gamma_0$ = 1"), ("²³", r"$^2{}^3$"), ("αο", r"$\alpha o$"),
    ("ties ½", r"ties $\frac{1}{2}$"), ("Hodges–Lehmann", r"Hodges--Lehmann"), ("a — b", "a --- b"),
    ("café naïve", r"caf\'{e} na\"{\i}ve"), ("Müller, Straße", r"M\"{u}ller, Stra\ss{}e"),
    ("≤ .05 ≠ 1", r"$\leq$ .05 $\neq$ 1"), ("25°", r"25$^\circ$"), ("…", r"\ldots{}"),
    ("☃", r"\texttt{[U+2603]}"), ("$α", r"\$$\alpha$"),
])
def test_latex_escape_writes_every_symbol_as_latex_never_a_question_mark(text, latex):
    out = escape(text)
    assert out == latex
    assert out.isascii() and "?" not in out and check_latex(out) == []


def test_every_mapped_character_compiles_in_a_stock_article(tmp_path):
    # Checked with pdflatex (TeX Live 2022, Debian texlive-latex-base) on every character the
    # escaper maps and on the 24 tables of the committed reports regenerated; where pdflatex is
    # installed this test compiles them again, elsewhere it checks the source's structure.
    import shutil
    import subprocess

    from cffbench import fmt

    text = " ".join(["".join(fmt._LATEX_MATH), "".join(fmt._LATEX_TEXT), "".join(fmt._LATEX_SPECIAL),
                     "éèêëàâäçñõüöïîôûÿÉÈÀÇÑÖÜ ☃"])
    body = escape(text)
    assert body.isascii() and "?" not in body.replace("?`", "") and check_latex(body) == []
    if shutil.which("pdflatex") is None:
        return
    (tmp_path / "all.tex").write_text("\\documentclass{article}\n\\begin{document}\n" + body
                                      + "\n\\end{document}\n", encoding="ascii")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "all.tex"],
                          cwd=tmp_path, capture_output=True, text=True, errors="replace", timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]


def test_latex_table_uses_booktabs_and_is_balanced():
    table = Table("t", "Accuracy {curly} 50%", ["Dataset", "Mean ± std"],
                  [["mnist", "92.60 ± 0.42 (5)"], ["fashion_mnist", "84.00 ± 0.50 (5)"]],
                  bold={(0, 1)}, note="θ placement; p < .05")
    text = to_latex(table)
    assert [r"\toprule", r"\midrule", r"\bottomrule"] == \
        [rule for rule in re.findall(r"\\(?:top|mid|bottom)rule", text)]
    assert r"\textbf{92.60 $\pm$ 0.42 (5)}" in text
    assert check_latex(text) == []


def test_latex_checker_catches_broken_files():
    assert check_latex(r"\begin{table}\begin{tabular}{l}\end{table}")
    assert check_latex(r"\caption{open")
    assert check_latex("x ± y")
    assert check_latex(r"a $\pm b")


def test_depth_ablation_table_holds_one_column_per_depth_and_fixes_the_other_axes():
    from cffbench.report.tables import ablation_table

    runs = pd.DataFrame({
        "dataset": "mnist", "variant": ["ff"] * 4 + ["a-cff"] * 4, "seed": [0, 1] * 4,
        "hidden": ["500-500", "500-500", "500-500-500", "500-500-500"] * 2,
        "alpha": [None] * 4 + ["uniform", "uniform", "distance", "distance"],
        "test_acc": [0.90, 0.92, 0.91, 0.93, 0.94, 0.96, 0.99, 0.99]})
    table = ablation_table(condition_descriptives(runs, ["hidden", "alpha"]), "hidden",
                           {"hidden": "500-500", "alpha": "uniform"})
    assert table.columns[2:] == ["depth (hidden units per layer) = 500-500",
                                 "depth (hidden units per layer) = 500-500-500"]
    rows = {r[1]: r[2:] for r in table.rows}
    assert rows["FF"] == ["91.00 ± 1.41 (2)", "92.00 ± 1.41 (2)"]
    # a-cff at depth 3 only exists with alpha = distance, which the main configuration excludes
    assert rows["A-CFF"] == ["95.00 ± 1.41 (2)", ""]
    assert "alpha = uniform" in table.note


def test_protocol_differences_warn_only_when_the_runs_differ_from_the_paper_protocol():
    from cffbench.report.context import protocol_differences
    from cffbench.report.tables import load_paper_values

    values, source = load_paper_values()
    protocol = source["protocol"]
    assert protocol == {"hidden": "500-500", "epochs_per_layer": 1000, "n_train": 50000,
                        "batch_size": 0}
    paper_like = pd.DataFrame({"dataset": ["mnist"] * 2, "variant": ["ff", "a-cff"],
                               "hidden": ["500-500"] * 2, "epochs_per_layer": [1000] * 2,
                               "n_train": [50000] * 2, "batch_size": [0] * 2})
    assert protocol_differences(paper_like, values, protocol) == []
    scaled = paper_like.assign(n_train=1000, epochs_per_layer=300)
    [warning] = protocol_differences(scaled, values, protocol)
    assert "n train 1000 vs 50000" in warning and "epochs per layer 300 vs 1000" in warning
    assert "hidden" not in warning
    # datasets the paper does not report never trigger it
    assert protocol_differences(scaled.assign(dataset="svhn"), values, protocol) == []


def test_contrasts_read_later_variant_minus_baseline(tmp_path):
    # Tables read "later variant − baseline" (A-CFF − FF, A-CFF − F-CFF)
    from cffbench.analysis import analyze_store
    from cffbench.report.tables import VARIANT_ORDER
    from test_report_store import write_synthetic_store

    write_synthetic_store(tmp_path, datasets=("mnist",), variants=("ff", "f-cff", "a-cff"))
    contrasts = analyze_store(tmp_path).contrasts
    assert len(contrasts) == 3
    for later, earlier in zip(contrasts["variant"], contrasts["minus"]):
        assert VARIANT_ORDER.index(earlier) < VARIANT_ORDER.index(later), (later, earlier)


def test_repeated_table_keys_are_made_unique_in_order():
    from cffbench.report.context import unique_keys

    tables = [Table(k, "c", ["a"], [["1"]]) for k in ("pairwise_mnist_hidden_500_500",) * 3 + ("x",)]
    unique_keys(tables)
    assert [t.key for t in tables] == ["pairwise_mnist_hidden_500_500", "pairwise_mnist_hidden_500_500_2",
                                       "pairwise_mnist_hidden_500_500_3", "x"]


def test_a_condition_at_chance_is_flagged_did_not_learn():
    from cffbench.report.context import did_not_learn

    rows = [{"dataset": "mnist", "variant": v, "seed": s, "status": "ok", "theta_placement": t,
             "test_acc": acc} for s in range(3)
            for v, t, acc in (("ff", None, 0.9), ("f-cff", "single", 0.101), ("f-cff", "per_term", 0.8))]
    flagged = did_not_learn(condition_descriptives(pd.DataFrame(rows), ["theta_placement"]))
    assert len(flagged) == 1 and flagged[0].startswith("mnist, F-CFF (θ placement single): did not learn")


def test_degrees_of_freedom_and_significant_digits_come_from_the_one_formatter():
    from cffbench.report.statistics import _cell
    from cffbench.stats.apa import fmt_df

    assert (fmt.df(8.0), fmt.df(5.3217), fmt.df(float("nan"))) == ("8", "5.32", "")
    assert fmt_df(8.0) == _cell("ddof2", 8.0) == "8" and fmt_df(float("nan")) == "undefined"
    assert fmt_df(4.2581) == _cell("ddof1", 4.2581) == "4.26"
    assert (fmt.sig(-1.234567e-5), fmt.sig(0.0012345, 3)) == ("-1.235e-05", "0.00123")
    assert _cell("SS_error", 0.0012345) == fmt.sig(0.0012345, 3)


def test_a_condition_at_chance_is_named_by_every_axis_it_varies_goodness_too():
    # a plugin goodness axis: "FF did not learn" would wrongly accuse FF with mean_squares
    from cffbench.report.context import did_not_learn

    rows = [{"dataset": "mnist", "variant": "ff", "seed": s, "status": "ok", "goodness": g,
             "test_acc": acc} for s in range(3)
            for g, acc in (("mean_squares", 0.75), ("sum_squares", 0.1009))]
    flagged = did_not_learn(condition_descriptives(pd.DataFrame(rows), ["goodness"]))
    assert flagged == [flagged[0]] and flagged[0].startswith(
        "mnist, FF (goodness function sum_squares): did not learn")


def test_an_omnibus_table_with_sums_of_squares_says_their_unit():
    from cffbench.report.statistics import omnibus_table
    anova = pd.DataFrame({"source": ["condition"], "ddof1": [4.0], "ddof2": [24.0], "F": [51.0],
                          "p_unc": [2e-11], "SS": [0.002], "SS_error": [0.0002]})
    table = omnibus_table("mnist", "rm_anova", anova)
    assert "SS" in table.columns and "squared units of the accuracy as a fraction" in table.note
    assert "(0.001 = 10 pp²)" in table.note        # 0.001 of accuracy² = (3.16 pp)² = 10 pp²
    friedman = pd.DataFrame({"source": ["condition"], "ddof": [4.0], "Q": [20.1], "p_unc": [5e-4]})
    assert omnibus_table("mnist", "friedman", friedman).note == ""
