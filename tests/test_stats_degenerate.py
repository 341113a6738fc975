"""Degenerate inputs (one seed, constant groups, missing cells, one level) and user mistakes:
undefined tests come back as NaN with a reason, never as p = 0; mistakes raise StatsError."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.power import TTestPower

from cffbench.errors import StatsError
from cffbench.stats import anova, describe, friedman, pairwise, rm_anova, seeds_needed, tukey, welch_anova
from cffbench.stats.apa import f_sentence, fmt_p
from cffbench.stats.assumptions import levene_check, shapiro_check
from cffbench.stats.inputs import complete_blocks


def blocks(values: dict[str, list[float]]) -> pd.DataFrame:
    """Condition -> per-seed values, as long rows (seed = position)."""
    return pd.DataFrame([(s, c, v) for c, vs in values.items() for s, v in enumerate(vs)],
                        columns=["seed", "variant", "acc"])


def test_rm_anova_with_identical_effect_in_every_seed_is_undefined_not_infinite():
    data = blocks({"ff": [0.90, 0.91, 0.92], "a-cff": [0.91, 0.92, 0.93], "f-cff": [0.92, 0.93, 0.94]})
    row = rm_anova(data, "acc", "variant", "seed").iloc[0]
    assert np.isnan(row["F"]) and np.isnan(row["p_unc"]) and np.isnan(row["p_gg"])
    assert "zero error variance" in row["note"]


def test_rm_anova_refuses_incomplete_blocks_duplicates_and_single_levels():
    data = blocks({"ff": [0.90, 0.91, 0.92], "a-cff": [0.91, 0.93, 0.92]})
    with pytest.raises(StatsError, match="miss some cell"):
        rm_anova(data.iloc[:-1], "acc", "variant", "seed")
    with pytest.raises(StatsError, match="more than one row"):
        rm_anova(pd.concat([data, data.iloc[:1]]), "acc", "variant", "seed")
    with pytest.raises(StatsError, match="one level"):
        rm_anova(data[data["variant"] == "ff"], "acc", "variant", "seed")
    with pytest.raises(StatsError, match="one or two within factors"):
        rm_anova(data, "acc", [], "seed")


def test_complete_blocks_drops_seeds_missing_a_condition():
    data = blocks({"ff": [0.90, 0.91, 0.92], "a-cff": [0.91, 0.93, 0.92]})
    kept, dropped = complete_blocks(data.iloc[:-1], "acc", "variant", "seed")
    assert dropped == [2] and sorted(kept["seed"].unique()) == [0, 1]


def test_anova_zero_residual_variance_and_missing_cells():
    data = pd.DataFrame({"g": ["a", "a", "b", "b"], "y": [1.0, 1.0, 2.0, 2.0]})
    row = anova(data, "y", "g").iloc[0]
    assert np.isnan(row["F"]) and "zero residual variance" in row["note"]
    crossed = pd.DataFrame({"f": ["x", "x", "y", "y"], "h": ["p", "q", "p", "p"], "y": [1.0, 2, 3, 4]})
    with pytest.raises(StatsError, match="1 empty cell"):
        anova(crossed, "y", ["f", "h"])
    with pytest.raises(StatsError, match="typ must be"):
        anova(data, "y", "g", typ=4)


def test_welch_anova_with_a_constant_group_is_undefined():
    data = blocks({"ff": [0.9, 0.9, 0.9], "a-cff": [0.91, 0.93, 0.92]})
    row = welch_anova(data, "acc", "variant").iloc[0]
    assert np.isnan(row["F"]) and "zero variance" in row["note"]
    with pytest.raises(StatsError, match="at least 2 levels"):
        welch_anova(data[data["variant"] == "ff"], "acc", "variant")


def test_friedman_with_two_levels_or_constant_blocks_is_undefined():
    two = blocks({"ff": [0.90, 0.91, 0.92], "a-cff": [0.91, 0.93, 0.92]})
    assert "at least 3 levels" in friedman(two, "acc", "variant", "seed")["note"].iloc[0]
    flat = blocks({"ff": [0.9, 0.8, 0.7], "a-cff": [0.9, 0.8, 0.7], "f-cff": [0.9, 0.8, 0.7]})
    row = friedman(flat, "acc", "variant", "seed").iloc[0]
    assert np.isnan(row["Q"]) and "tied" in row["note"]
    with pytest.raises(StatsError, match="miss a level"):
        friedman(flat.iloc[:-1], "acc", "variant", "seed")


def test_paired_tests_on_constant_differences_are_undefined_where_scipy_says_p_zero():
    a, b = [0.90, 0.91, 0.92, 0.93], [0.91, 0.92, 0.93, 0.94]
    assert sps.ttest_rel(b, a).pvalue < 1e-10  # the misbehaviour we guard against
    data = blocks({"ff": a, "a-cff": b})
    for parametric in (True, False):
        row = pairwise(data, "acc", within="variant", subject="seed", parametric=parametric).iloc[0]
        assert np.isnan(row["p_unc"]) and np.isnan(row["p_adj"]) and np.isnan(row["cohen_dz"])
        assert "constant (sd = 0)" in row["note"]
        assert (row["A"], row["B"], row["diff"]) == ("a-cff", "ff", pytest.approx(-0.01))  # B - A


def test_all_zero_differences_are_undefined_not_p_one():
    a = [0.90, 0.91, 0.92, 0.93]
    row = pairwise(blocks({"ff": a, "a-cff": a}), "acc", within="variant", subject="seed",
                   parametric=False).iloc[0]
    assert np.isnan(row["p_unc"]) and "every paired difference is zero" in row["note"]
    assert row["prob_improvement"] == 0.5  # ties count one half


def test_pairwise_with_one_pair_or_constant_groups_is_undefined():
    one = blocks({"ff": [0.9], "a-cff": [0.91]})
    assert "1 complete pair" in pairwise(one, "acc", within="variant", subject="seed")["note"].iloc[0]
    flat = blocks({"ff": [0.9, 0.9], "a-cff": [0.91, 0.91]})
    row = pairwise(flat, "acc", between="variant").iloc[0]
    assert np.isnan(row["p_unc"]) and np.isnan(row["hedges_g"]) and "both groups are constant" in row["note"]


def test_pairwise_argument_mistakes_raise_stats_error():
    data = blocks({"ff": [0.90, 0.91, 0.92], "a-cff": [0.91, 0.93, 0.92]})
    with pytest.raises(StatsError, match="exactly one of"):
        pairwise(data, "acc", within="variant", between="variant", subject="seed")
    with pytest.raises(StatsError, match="needs subject="):
        pairwise(data, "acc", within="variant")
    with pytest.raises(StatsError, match="none, bonferroni, holm, fdr_bh"):
        pairwise(data, "acc", between="variant", padjust="sidak")
    with pytest.raises(StatsError, match="must be numeric"):
        pairwise(data.assign(acc="high"), "acc", between="variant")


def test_tukey_with_a_single_observation_group_is_undefined():
    data = pd.DataFrame({"g": ["a", "b", "b"], "y": [1.0, 2.0, 3.0]})
    row = tukey(data, "y", "g").iloc[0]
    assert np.isnan(row["p_adj"]) and "fewer than 2" in row["note"] and row["diff"] == pytest.approx(1.5)


def test_seeds_needed_degenerate_sd_and_huge_effects():
    assert np.isnan(seeds_needed(0.0, 0.012))
    assert np.isnan(seeds_needed(float("nan"), 0.012))
    # a huge standardised effect: the minimum of 2 paired seeds already has the power
    assert TTestPower().power(100.0, 2, 0.05) >= 0.8
    assert seeds_needed(0.0001, 0.01) == 2
    with pytest.raises(StatsError, match="delta must be"):
        seeds_needed(0.01, 0.0)
    with pytest.raises(StatsError, match="alpha and power"):
        seeds_needed(0.01, 0.01, power=1.5)


def test_seeds_needed_falls_monotonically_where_ttestpower_returns_nan():
    # statsmodels' TTestPower().power is NaN at e.g. d = 12, n = 2 (the far lower tail underflows)
    with np.errstate(all="ignore"):
        assert np.isnan(TTestPower().power(12.0, 2, 0.05))
    sds = np.linspace(0.0004, 0.012, 60)  # delta = 1.2 pp: effects from 1 to 30
    needed = [seeds_needed(sd, 0.012) for sd in sds]
    assert all(a <= b for a, b in zip(needed, needed[1:]))
    # independent truth for huge effects: the upper tail alone, P(T > t_crit | ncp = d sqrt(n))
    for d in (5.0, 12.0, 17.0):
        n = next(n for n in range(2, 50)
                 if sps.nct.sf(sps.t.isf(0.025, n - 1), n - 1, d * np.sqrt(n)) >= 0.8)
        assert seeds_needed(1.0, d) == n


def test_describe_single_run_and_constant_group():
    data = blocks({"ff": [0.9], "a-cff": [0.91, 0.91, 0.91]})
    table = describe(data, "acc", "variant").set_index("variant")
    assert table.loc["ff", "n"] == 1 and np.isnan(table.loc["ff", ["std", "sem", "ci_low", "boot_low"]]).all()
    assert table.loc["a-cff", "ci_low"] == table.loc["a-cff", "ci_high"] == pytest.approx(0.91)
    with pytest.raises(StatsError, match="confidence"):
        describe(data, "acc", "variant", confidence=95)


def test_shapiro_does_not_call_a_constant_sample_normal():
    with pytest.warns(UserWarning):  # scipy: W = 1, p = 1 for a constant sample, which we refuse
        assert sps.shapiro([1.0, 1.0, 1.0, 1.0]).pvalue == 1.0
    check = shapiro_check(np.ones(6), "paired differences")
    assert np.isnan(check["p"]) and "constant" in check["note"]
    assert "at least 3" in shapiro_check(np.array([1.0, 2.0]), "x")["note"]
    assert "every group is constant" in levene_check([np.ones(3), np.zeros(3)], "cells")["note"]


def test_apa_formats_match_the_style_guide_example():
    assert f_sentence("variant", 2, 8, 12.311, 0.0041, 0.7547) == "variant: F(2, 8) = 12.31, p = .004, ηp² = .75"
    assert fmt_p(0.0004) == "p < .001"
    # one rounding rule for every output (cffbench.fmt): Python's format of the binary value,
    # so an exact half rounds to even
    assert fmt_p(0.0625) == "p = .062"
    assert fmt_p(float("nan")) == "p undefined"
    assert f_sentence("variant", 2, 8, float("nan"), float("nan"), float("nan"), note="x") == "variant: F undefined (x)"
