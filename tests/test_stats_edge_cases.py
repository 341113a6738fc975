"""Edge cases of the statistics engine: degenerate designs, the sphericity rule, Holm families,
unpaired power. Independent truth: exact arithmetic (an additive model has zero
residuals), the exact Wilcoxon floor 2 / 2^n, Mauchly's W of a covariance built by hand,
statsmodels' Holm and TTestIndPower, and Cohen's (1988) power table.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from scipy.linalg import null_space
from statsmodels.stats.multitest import multipletests

from cffbench.analysis import analyze_results
from cffbench.stats import anova, compare, seeds_needed
from cffbench.stats.assumptions import shapiro_check
from test_stats_analyze import toy_rows, write_store
from test_stats_compare import runs, steps

GAINS = {"ff": 0.0, "f-cff": 0.012, "a-cff": 0.020}


def identical_gain_runs(n_seeds: int, round_to: int | None = None) -> pd.DataFrame:
    """Every seed shows exactly the same gain over ff: the subject + condition model fits exactly."""
    rows = [{"seed": s, "variant": v, "test_acc": 0.9731 + 0.0007 * s + gain}
            for s in range(n_seeds) for v, gain in GAINS.items()]
    frame = pd.DataFrame(rows)
    if round_to is not None:  # accuracies on a 10k test set are multiples of 1e-4
        frame["test_acc"] = frame["test_acc"].round(round_to)
    return frame


def outlier_runs(n_seeds: int) -> pd.DataFrame:
    """Paired runs with one wild f-cff run: Shapiro-Wilk rejects normality of the residuals."""
    data = runs(n_seeds=n_seeds, noise=0.0005, seed=1)
    data.loc[(data["seed"] == 0) & (data["variant"] == "f-cff"), "test_acc"] += 0.08
    return data


# 1. zero-variance differences are undefined, not "non-normal"

def test_shapiro_on_float_noise_residuals_is_not_checkable_relative_to_the_data_scale():
    noise = np.array([1e-17, -2e-17, 0.0, 3e-17, -1e-17, 2e-17])
    assert np.isfinite(shapiro_check(noise, "residuals")["p"])  # on its own scale, noise is "data"
    check = shapiro_check(noise, "residuals", scale=0.97)
    assert math.isnan(check["p"]) and check["note"].startswith("undefined")


@pytest.mark.parametrize("round_to", [None, 4])
def test_identical_gain_in_every_seed_reports_undefined_rm_anova_not_friedman(round_to):
    result = compare(identical_gain_runs(5, round_to), "test_acc", "variant", reference="ff", pretest=True)
    assert steps(result)["normality"] == "assumed (not checkable)"
    assert result.path == "rm_anova" and "friedman" not in result.tables
    row = result.tables["rm_anova"].iloc[0]
    assert math.isnan(row["p_unc"]) and row["note"].startswith("undefined: zero error variance")
    assert any(w.startswith("undefined test: rm_anova variant") for w in result.warnings)
    assert not any("p = .007" in s or "χ²" in s for s in result.apa)


# 2. the non-parametric path keeps "condition − ff"

def test_nonparametric_pairs_with_ff_read_condition_minus_ff():
    data = outlier_runs(7)  # 7 seeds: 3 pairs x 2/2^7 = .047 < .05, so the Wilcoxon path is taken
    result = compare(data, "test_acc", "variant", reference="ff", pretest=True)
    assert result.path == "friedman"
    posthoc = result.tables["posthoc"]
    with_ff = posthoc[(posthoc["A"] == "ff") | (posthoc["B"] == "ff")]
    assert len(with_ff) == 2 and (with_ff["A"] == "ff").all()
    means = data.groupby("variant")["test_acc"].mean()
    for row in with_ff.to_dict("records"):
        assert row["diff"] == pytest.approx(means[row["B"]] - means["ff"], abs=1e-12)
        assert row["diff"] > 0  # the CFF gains are positive in these runs
    assert posthoc["p_adj"].min() == pytest.approx(3 * 2 / 2**7)  # exact Wilcoxon floor x Holm


# 3. no residual degrees of freedom

def test_anova_with_one_run_per_condition_is_undefined_not_an_exception():
    data = pd.DataFrame({"variant": ["ff", "f-cff", "a-cff"], "test_acc": [0.90, 0.91, 0.93]})
    table = anova(data, "test_acc", "variant")
    effect = table.iloc[0]
    assert list(table["DF"]) == [2.0, 0.0]
    assert math.isnan(effect["F"]) and effect["note"] == "undefined: no residual degrees of freedom (one run per cell)"
    assert effect["SS"] == pytest.approx(np.var(data["test_acc"]) * 3)  # every run is its own cell mean


def test_analyze_results_survives_one_ok_run_per_condition_on_different_seeds(tmp_path):
    # most runs diverged, each condition has one ok run
    ok_seed = {("ff", None): 0, ("f-cff", "uniform"): 1, ("f-cff", "distance"): 2,
               ("a-cff", "uniform"): 0, ("a-cff", "distance"): 1}
    rows = [{"variant": v, "alpha": a, "seed": s, "status": "ok" if s == ok else "diverged",
             "test_acc": 0.9 + 0.01 * s + 0.001 * len(v) if s == ok else np.nan}
            for (v, a), ok in ok_seed.items() for s in range(3)]
    analysis = analyze_results(write_store(tmp_path / "results", rows))
    assert analysis.n_used == 5
    assert set(analysis.comparisons) == {"mnist/conditions", "mnist/crossing"}
    for result in analysis.comparisons.values():
        assert result.design == "between"
        notes = result.tables["anova"]["note"].iloc[:-1]
        assert (notes == "undefined: no residual degrees of freedom (one run per cell)").all()
    assert (tmp_path / "results" / "analysis" / "summary.txt").exists()


# 4 + 5. unattainable non-parametric significance keeps the parametric path

def test_five_seeds_keep_the_parametric_path_when_wilcoxon_cannot_reach_significance():
    result = compare(outlier_runs(5), "test_acc", "variant", pretest=True)
    assert steps(result)["normality"] == "violated"
    assert result.tables["assumptions"].iloc[0]["p"] < 0.05  # the Shapiro result is recorded
    assert steps(result)["non-parametric fallback"] == "not taken: parametric path kept"
    assert result.path == "rm_anova" and "friedman" not in result.tables
    assert (result.tables["posthoc"]["test"] == "paired t").all()
    floor = 3 * 2 / 2**5
    assert any("cannot reach significance with 5 seeds" in w and f"{floor:.4f}" in w
               and "interpret with care" in w for w in result.warnings)


@pytest.mark.parametrize("pairs, family", [("all", 3), ("reference", 2)])
def test_holm_family_size_enters_the_attainable_wilcoxon_floor(pairs, family):
    # n = 6: one test can reach 2/64 = .031 < .05, but not after Holm over 2 or 3 pairs
    result = compare(outlier_runs(6), "test_acc", "variant", reference="ff", posthoc_pairs=pairs, pretest=True)
    assert result.path == "rm_anova"
    floor = family * 2 / 2**6
    assert any(f"over {family} pair(s)" in w and f"{floor:.4f}" in w for w in result.warnings)


# 6. Mauchly's test affects the decision

def test_high_epsilon_applies_huynh_feldt_even_when_mauchly_rejects():
    n = 30
    rng = np.random.default_rng(0)
    contrasts = null_space(np.ones((1, 3)))  # (3, 2) orthonormal
    scores = rng.normal(size=(n, 2))
    scores -= scores.mean(axis=0)
    scores = scores @ np.linalg.inv(np.linalg.cholesky(np.cov(scores, rowvar=False))).T
    scores *= np.sqrt([1.0, 0.35]) * 0.003  # contrast covariance: eigenvalues 1 and .35 (x 9e-6)
    y = 0.9 + rng.normal(0, 0.004, size=(n, 1)) + np.array([0.0, 0.001, 0.002]) + scores @ contrasts.T
    data = pd.DataFrame([(s, v, y[s, c]) for s in range(n) for c, v in enumerate(["ff", "f-cff", "a-cff"])],
                        columns=["seed", "variant", "test_acc"])
    result = compare(data, "test_acc", "variant", reference="ff")
    row = result.tables["rm_anova"].iloc[0]
    ratio = 0.35  # by hand: W = 4 r / (1 + r)^2, eps = (1 + r)^2 / (2 (1 + r^2))
    assert row["W_mauchly"] == pytest.approx(4 * ratio / (1 + ratio) ** 2)
    assert row["eps"] == pytest.approx((1 + ratio) ** 2 / (2 * (1 + ratio**2)))
    assert row["eps"] >= 0.75 and row["p_mauchly"] < 0.05
    # Girden (1992) as cited: GG epsilon >= .75 takes Huynh-Feldt; Mauchly is a diagnostic only
    decision = next(d for d in result.decisions if d.step == "sphericity: variant")
    assert decision.choice == "Huynh–Feldt correction" and "a diagnostic" in decision.reason
    df_res = n - 1   # R stats:::sphericity's n
    hf = min(1.0, ((df_res + 1) * 2 * row["eps"] - 2) / (2 * (df_res - 2 * row["eps"])))
    p_hf = sps.f.sf(row["F"], hf * 2, hf * 2 * (n - 1))
    assert row["p_hf"] == pytest.approx(p_hf, rel=1e-10)
    assert f"Huynh–Feldt ε = {hf:.2f}".replace("0.", ".") in result.apa[0]


# 7. Holm families of the conditions and crossing analyses

def test_analyze_holms_over_the_primary_contrasts_of_one_dataset_only(tmp_path):
    analysis = analyze_results(write_store(tmp_path / "results", toy_rows()))
    assert "posthoc" not in analysis.comparisons["mnist/conditions"].tables
    primary = analysis.plan.primary
    assert len(primary) == 4 and (primary["minus"] == "ff").all()
    # oracle: statsmodels multipletests(method="holm") over the same four p values
    assert np.allclose(primary["p_adj"], multipletests(primary["p"], method="holm")[1], rtol=1e-12)


def test_simple_effects_of_both_factors_form_one_holm_family_per_factor():
    rng = np.random.default_rng(5)
    rows = [{"seed": s, "variant": v, "alpha": a,
             "test_acc": 0.9 + (0.02 if (v, a) == ("a-cff", "distance") else 0) + rng.normal(0, 0.001)}
            for s in range(6) for v in ("a-cff", "f-cff") for a in ("distance", "uniform")]
    result = compare(pd.DataFrame(rows), "test_acc", ["variant", "alpha"], simple_effects="both")
    posthoc = result.tables["posthoc"]
    assert set(posthoc["contrast_at"]) == {"alpha = distance", "alpha = uniform",
                                           "variant = a-cff", "variant = f-cff"}
    for factor in ("variant", "alpha"):
        family = posthoc[posthoc["contrast"] == factor]
        assert len(family) == 2
        assert np.allclose(family["p_adj"], multipletests(family["p_unc"], method="holm")[1])
    assert "one Holm family per factor" in next(d.reason for d in result.decisions if d.step == "post-hoc")


# 8. ±inf accuracies and the unpaired power line

def test_infinite_accuracy_is_left_out_not_counted_as_used(tmp_path):
    rows = toy_rows() + [{"variant": "ff", "seed": 7, "status": "ok", "test_acc": np.inf}]
    analysis = analyze_results(write_store(tmp_path / "results", rows))
    assert analysis.n_runs == len(rows) and analysis.n_used == len(rows) - 1
    assert analysis.excluded == {"ok but no test_acc": 1}


def test_unpaired_seeds_needed_matches_cohens_two_sample_table():
    # Cohen (1988), two-sample t, two-sided alpha .05, power .8: d = .5 -> 64 per group, d = .8 -> 26
    assert seeds_needed(math.sqrt(2), 0.5, paired=False) == 64
    assert seeds_needed(math.sqrt(2), 0.8, paired=False) == 26
    assert seeds_needed(1.0, 0.5) == 34  # paired default unchanged


def test_unpaired_power_line_says_two_sample_t_and_counts_seeds_per_condition():
    rng = np.random.default_rng(1)
    data = pd.DataFrame([{"variant": v, "test_acc": 0.92 + g + rng.normal(0, 0.015)}
                         for v, g in GAINS.items() for _ in range(6)])
    result = compare(data, "test_acc", "variant", subject=None, reference="ff")
    assert result.design == "between"
    assert "two-sample t" in result.power.text and "paired t" not in result.power.text
    from statsmodels.stats.power import TTestIndPower

    d = 0.012 / (result.power.diff_sd / math.sqrt(2))
    expected = math.ceil(TTestIndPower().solve_power(effect_size=d, alpha=0.05, power=0.8, ratio=1.0))
    assert 4 < expected < 100  # a moderate effect, where solve_power converges
    assert result.power.seeds_needed == expected
