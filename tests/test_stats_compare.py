"""compare(): every branch of the decision tree, and the renderings of its result."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from bs4 import BeautifulSoup

from cffbench.errors import StatsError
from cffbench.stats import compare
from test_stats_datasets import bushtucker, plant_growth, tooth_growth


def runs(n_seeds: int = 6, gains=None, noise: float = 0.002, seed: int = 0, alphas=None) -> pd.DataFrame:
    """Synthetic run rows: accuracy = seed baseline + variant gain (+ alpha gain) + noise.

    ``gains``: variant -> gain in accuracy; ``alphas``: alpha -> gain for the CFF variants (ff gets
    alpha = None, as in the run store).
    """
    gains = gains or {"ff": 0.0, "f-cff": 0.004, "a-cff": 0.012}
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_seeds):
        base = 0.92 + rng.normal(0, 0.004)
        for variant, gain in gains.items():
            for alpha, again in ((alphas or {None: 0.0}).items() if variant != "ff" else [(None, 0.0)]):
                rows.append({"seed": s, "variant": variant, "alpha": alpha,
                             "test_acc": base + gain + again + rng.normal(0, noise)})
    return pd.DataFrame(rows)


def steps(result) -> dict[str, str]:
    return {d.step: d.choice for d in result.decisions}


def test_balanced_paired_runs_take_the_rm_anova_path_with_holm_paired_posthoc():
    result = compare(runs(), "test_acc", "variant")
    assert result.design == "within" and result.path == "rm_anova"
    assert steps(result)["pairing"].startswith("within-subjects")
    assert steps(result)["post-hoc"] == "paired t-tests, Holm"
    assert set(result.tables) >= {"descriptives", "assumptions", "rm_anova", "posthoc", "power"}
    posthoc = result.tables["posthoc"]
    assert len(posthoc) == 3 and (posthoc["test"] == "paired t").all()
    assert (posthoc["p_adj"] >= posthoc["p_unc"]).all()
    ff_vs_acff = posthoc[(posthoc["A"] == "a-cff") & (posthoc["B"] == "ff")].iloc[0]
    assert ff_vs_acff["diff"] < 0 and ff_vs_acff["p_adj"] < 0.05  # a 1.2 pp gain over noise .2 pp
    assert result.apa[0].startswith("variant: F(")
    assert any("pp, 95% CI" in s for s in result.apa)


def test_low_epsilon_triggers_greenhouse_geisser_with_corrected_df():
    # Field's Bushtucker data: eps = .533 < .75, so the sentence carries the corrected df
    result = compare(bushtucker(), "retch", "food", subject="participant")
    assert result.path == "rm_anova"
    assert steps(result)["sphericity: food"] == "Greenhouse–Geisser correction"
    assert result.apa[0] == "food: F(1.60, 11.19) = 3.79, p = .063, Greenhouse–Geisser ε = .53, ηp² = .35"


def test_high_epsilon_takes_huynh_feldt_as_girden_recommends():
    result = compare(runs(noise=0.001, seed=2), "test_acc", "variant")
    row = result.tables["rm_anova"].iloc[0]
    assert row["eps"] >= 0.75
    assert steps(result)["sphericity: variant"] == "Huynh–Feldt correction"
    # R stats:::sphericity: HF = ((n + 1) d GG - 2) / (d (n - d GG)), n = residual df, capped at 1
    n, d = 5, 2
    hf = min(1.0, ((n + 1) * d * row["eps"] - 2) / (d * (n - d * row["eps"])))
    assert row["eps_hf"] == pytest.approx(hf)
    assert "Huynh–Feldt ε = " in result.apa[0] or hf == 1.0


def test_non_normal_paired_data_with_seven_seeds_take_friedman_and_wilcoxon():
    # 7 seeds: the Holm-adjusted Wilcoxon floor 3 x 2/2^7 = .047 < .05, so switching is worth it
    # (with 5 seeds the parametric path is kept: test_stats_review_fixes)
    data = runs(n_seeds=7, noise=0.0005, seed=1)
    outlier = (data["seed"] == 0) & (data["variant"] == "f-cff")
    data.loc[outlier, "test_acc"] += 0.08  # one wild run: residuals far from normal
    result = compare(data, "test_acc", "variant", pretest=True)
    assert steps(result)["normality"] == "violated"
    assert result.path == "friedman"
    assert "friedman" in result.tables and "rm_anova" not in result.tables
    assert (result.tables["posthoc"]["test"] == "Wilcoxon signed-rank").all()
    assert result.tables["posthoc"]["p_unc"].min() == pytest.approx(2 / 2**7)  # exact two-sided floor
    assert not any("too few seeds" in w for w in result.warnings)


def test_two_way_paired_crossing_runs_two_way_rm_anova_with_interaction():
    data = runs(alphas={"uniform": 0.0, "distance": 0.003})
    result = compare(data[data["variant"] != "ff"], "test_acc", ["variant", "alpha"])
    assert result.factors == ["variant", "alpha"]
    assert list(result.tables["rm_anova"]["source"]) == ["variant", "alpha", "variant:alpha"]
    assert steps(result)["post-hoc"].startswith("main-effect pairs")


def test_significant_interaction_leads_to_simple_effects():
    rng = np.random.default_rng(5)
    rows = [{"seed": s, "variant": v, "alpha": a,
             "test_acc": 0.9 + (0.02 if (v, a) == ("a-cff", "distance") else 0) + rng.normal(0, 0.001)}
            for s in range(6) for v in ("a-cff", "f-cff") for a in ("distance", "uniform")]
    result = compare(pd.DataFrame(rows), "test_acc", ["variant", "alpha"])
    assert result.tables["rm_anova"].set_index("source").loc["variant:alpha", "p_unc"] < 0.05
    assert steps(result)["post-hoc"].startswith("simple effects of variant within each level of alpha")
    assert set(result.tables["posthoc"]["contrast_at"]) == {"alpha = distance", "alpha = uniform"}


def test_ff_reference_outside_the_crossing_becomes_one_condition_factor():
    data = runs(alphas={"uniform": 0.0, "distance": 0.003})
    result = compare(data, "test_acc", ["variant", "alpha"])
    assert result.factors == ["condition"]
    reason = next(d.reason for d in result.decisions if d.step == "design")
    assert "misses 4 cell(s)" in reason and "ff, uniform" in reason
    assert result.tables["descriptives"]["condition"].nunique() == 5


def test_missing_seed_drops_to_complete_blocks_and_says_how_many():
    data = runs(n_seeds=6)
    data = data[~((data["seed"] == 4) & (data["variant"] == "ff"))]
    result = compare(data, "test_acc", "variant")
    assert result.design == "within" and result.n_blocks == 5
    assert "dropped 1 of 6 seeds" in next(d.reason for d in result.decisions if d.step == "pairing")
    assert "1 seed(s) miss a condition and were left out of the paired analysis: seed 4" in result.warnings


def test_too_few_complete_seeds_fall_back_to_between_subjects():
    data = runs(n_seeds=5)
    data = data[~((data["seed"] >= 2) & (data["variant"] == "ff"))]  # only seeds 0, 1 are complete
    result = compare(data, "test_acc", "variant")
    assert result.design == "between"
    assert steps(result)["pairing"] == "between-subjects (pairing abandoned)"
    assert result.path in {"welch_anova", "kruskal"}


def test_unpaired_one_way_takes_welch_anova_and_adds_tukey_when_variances_are_equal():
    # PlantGrowth: Levene (median) F = 1.119, p = .341 (R car::leveneTest) -> Tukey added
    result = compare(plant_growth(), "weight", "group", subject=None)
    assert result.design == "between" and result.path == "welch_anova"
    assert result.apa[0] == "group (Welch's ANOVA): F(2, 17.13) = 5.18, p = .017"
    levene = result.tables["assumptions"].set_index("check").loc["equal variances (Levene, median-centred)"]
    assert levene["stat"] == pytest.approx(1.1192, abs=1e-4)
    assert "tukey" in result.tables
    assert (result.tables["posthoc"]["test"] == "Welch t").all()
    assert "hedges_g" in result.tables["posthoc"]


def test_unpaired_two_way_with_interaction_reports_simple_effects():
    result = compare(tooth_growth(), "len", ["supp", "dose"], subject=None)
    assert result.path == "anova"
    assert result.apa[2] == "supp:dose: F(2, 54) = 4.11, p = .022, ηp² = .13"
    assert steps(result)["post-hoc"].startswith("simple effects of supp within each level of dose")
    assert len(result.tables["posthoc"]) == 3


def test_one_seed_gives_undefined_tests_not_errors():
    result = compare(runs(n_seeds=1), "test_acc", "variant")
    assert result.design == "within" and result.n_blocks == 1
    assert "undefined: one seed gives no error term" in result.tables["rm_anova"]["note"].iloc[0]
    assert result.tables["posthoc"]["p_unc"].isna().all()
    assert result.tables["descriptives"]["std"].isna().all()
    assert any(w.startswith("undefined test") for w in result.warnings)
    assert "undefined" in result.power.text
    assert "p = 0" not in result.to_text() and "p < .001" not in result.to_text()


def test_constant_nonzero_differences_are_undefined_never_p_zero():
    data = pd.DataFrame({"seed": list(range(5)) * 2, "variant": ["ff"] * 5 + ["a-cff"] * 5,
                         "test_acc": [0.90, 0.91, 0.92, 0.93, 0.94, 0.91, 0.92, 0.93, 0.94, 0.95]})
    result = compare(data, "test_acc", "variant", pretest=True)
    row = result.tables["posthoc"].iloc[0]
    assert np.isnan(row["p_unc"]) and np.isnan(row["stat"]) and "constant" in row["note"]
    assert np.isnan(result.tables["rm_anova"]["F"].iloc[0])
    assert steps(result)["normality"] == "assumed (not checkable)"
    text = result.to_text()
    assert "undefined" in text and "p < .001" not in text and "p = 0" not in text
    assert np.isnan(result.power.seeds_needed)


def test_one_variant_gives_descriptives_only_with_a_warning():
    data = runs(gains={"a-cff": 0.0})
    result = compare(data, "test_acc", ["variant"])
    assert result.path == "describe" and result.design == "none"
    assert list(result.tables) == ["descriptives"]
    assert "one condition only: nothing to compare" in result.warnings
    assert result.power is None


def test_non_finite_accuracies_are_left_out_and_counted():
    data = runs()
    data.loc[0, "test_acc"] = np.nan
    result = compare(data, "test_acc", "variant")
    assert "1 row(s) without a finite test_acc left out" in result.warnings
    assert result.n_blocks == 5  # seed 0 lost a cell


def test_power_line_uses_pairs_with_the_reference_and_counts_seeds():
    result = compare(runs(), "test_acc", "variant", reference="ff")
    power = result.power
    assert power.n_seeds == 6 and power.delta == 0.012
    table = result.tables["power"]
    assert set(map(frozenset, zip(table["A"], table["B"]))) == {frozenset({"a-cff", "ff"}), frozenset({"f-cff", "ff"})}
    assert power.diff_sd == pytest.approx(np.sqrt(np.mean(table["diff_sd"] ** 2)))
    assert f": {int(power.seeds_needed)}, from the observed SD of the paired differences" in power.text
    assert "this study has 6" in power.text and "1.20 pp" in power.text


def test_user_mistakes_raise_stats_error():
    with pytest.raises(StatsError, match="not in data"):
        compare(runs(), "test_acc", "varient")
    with pytest.raises(StatsError, match="at least one factor"):
        compare(runs(), "test_acc", [])
    with pytest.raises(StatsError, match="no rows with a finite"):
        compare(runs().assign(test_acc=np.nan), "test_acc", "variant")
    with pytest.raises(StatsError, match="share a seed x condition cell"):
        compare(runs(alphas={"uniform": 0.0, "distance": 0.003}), "test_acc", "variant")


def test_renderings_carry_decisions_sentences_and_tables():
    result = compare(runs(), "test_acc", "variant")
    text = result.to_text()
    assert "Decisions:" in text and "pairing: within-subjects" in text and "[posthoc]" in text
    soup = BeautifulSoup(result.to_html(), "html5lib")
    assert len(soup.find_all("table")) == len(result.tables)
    assert soup.find("li").get_text().startswith("pairing")
    latex = result.to_latex()
    assert latex.count("\\begin{tabular}") == len(result.tables)
    assert "p\\_unc" in latex and "$\\eta$p$^2$" in latex and "ηp²" not in latex
    frame = result.decisions_frame()
    assert list(frame.columns) == ["step", "choice", "reason"] and len(frame) == len(result.decisions)


def test_unpaired_non_normal_groups_take_kruskal_wallis_and_mann_whitney():
    data = plant_growth()
    data.loc[0, "weight"] = 40.0  # one absurd plant: residuals far from normal
    result = compare(data, "weight", "group", subject=None, pretest=True)
    assert steps(result)["normality"] == "violated"
    assert result.path == "kruskal" and "kruskal" in result.tables
    assert (result.tables["posthoc"]["test"] == "Mann-Whitney U").all()
    assert result.apa[0].startswith("group: H(2) = ")


def test_two_way_non_normal_paired_data_take_friedman_over_all_cells():
    data = runs(n_seeds=8, noise=0.0005, seed=3, alphas={"uniform": 0.0, "distance": 0.003})
    data = data[data["variant"] != "ff"].copy()
    data.loc[data.index[0], "test_acc"] += 0.08
    result = compare(data, "test_acc", ["variant", "alpha"], pretest=True)
    assert result.path == "friedman"
    assert steps(result)["omnibus"] == "Friedman test over all cells"
    assert result.tables["friedman"]["source"].iloc[0] == "variant:alpha"
    assert len(result.tables["posthoc"]) == 6  # all pairs of the 4 cells
    assert not any("too few seeds" in w for w in result.warnings)  # n = 8: min Wilcoxon p = .0078


def test_reference_level_comes_first_so_pairs_read_condition_minus_reference():
    result = compare(runs(), "test_acc", "variant", reference="ff")
    posthoc = result.tables["posthoc"]
    assert list(posthoc["A"][:2]) == ["ff", "ff"]
    assert (posthoc.loc[posthoc["A"] == "ff", "diff"] > 0).all()  # both CFF variants gain over ff
    assert result.tables["descriptives"]["variant"].iloc[0] == "ff"
    assert steps(result)["level order"] == "ff first"


def test_latex_escapes_level_names_with_underscores_and_percent_signs():
    data = runs().replace({"variant": {"ff": "per_term", "f-cff": "50%", "a-cff": "single"}})
    latex = compare(data, "test_acc", "variant", reference="per_term").to_latex()  # categorical levels
    assert "per\\_term" in latex and "50\\%" in latex
    assert "per_term" not in latex.replace("per\\_term", "")
