"""cffbench.stats against published values (R, textbooks, G*Power), source named in each test."""

from __future__ import annotations

import math
import numpy as np
import pandas as pd
import pytest

from cffbench.stats import anova, describe, friedman, pairwise, rm_anova, seeds_needed, tukey, welch_anova
from test_stats_datasets import bushtucker, plant_growth, rounding_times, sleep, tooth_growth


def test_one_way_anova_matches_r_plantgrowth():
    # R: summary(aov(weight ~ group, PlantGrowth)): SS 3.766 / 10.492, F(2, 27) = 4.846, p = 0.0159
    table = anova(plant_growth(), "weight", "group").set_index("source")
    assert table.loc["group", "DF"] == 2 and table.loc["Residual", "DF"] == 27
    assert table.loc["group", "SS"] == pytest.approx(3.76634, abs=1e-4)
    assert table.loc["Residual", "SS"] == pytest.approx(10.49209, abs=1e-4)
    assert table.loc["group", "F"] == pytest.approx(4.846, abs=5e-4)
    assert table.loc["group", "p_unc"] == pytest.approx(0.01591, abs=5e-5)
    # eta^2 = SS_group / SS_total (one factor: partial = total) = 3.766 / 14.258
    assert table.loc["group", "np2"] == pytest.approx(3.76634 / 14.25843, abs=1e-5)


def test_welch_anova_matches_r_oneway_test():
    # R: oneway.test(weight ~ group, PlantGrowth): F = 5.181, num df = 2, denom df = 17.128, p = 0.01739
    row = welch_anova(plant_growth(), "weight", "group").iloc[0]
    assert row["F"] == pytest.approx(5.181, abs=5e-4)
    assert row["ddof1"] == 2
    assert row["ddof2"] == pytest.approx(17.128, abs=5e-4)
    assert row["p_unc"] == pytest.approx(0.01739, abs=5e-5)


def test_tukey_matches_r_tukeyhsd_plantgrowth():
    # R: TukeyHSD(aov(weight ~ group, PlantGrowth)):
    #   trt1-ctrl -0.371 [-1.0622161, 0.3202161] p 0.3908711
    #   trt2-trt1  0.865 [ 0.1737839, 1.5562161] p 0.0120064
    table = tukey(plant_growth(), "weight", "group").set_index(["A", "B"])
    row = table.loc[("trt1", "trt2")]
    assert row["diff"] == pytest.approx(0.865)
    assert row["ci_low"] == pytest.approx(0.1737839, abs=1e-5)
    assert row["ci_high"] == pytest.approx(1.5562161, abs=1e-5)
    assert row["p_adj"] == pytest.approx(0.0120064, abs=1e-5)
    assert table.loc[("ctrl", "trt1"), "diff"] == pytest.approx(-0.371)
    assert table.loc[("ctrl", "trt1"), "p_adj"] == pytest.approx(0.3908711, abs=1e-4)


def test_two_way_anova_matches_r_toothgrowth():
    # R: summary(aov(len ~ supp * factor(dose), ToothGrowth)):
    #   supp F = 15.572 (p = .000231), dose F = 92.000, supp:dose F = 4.107 (p = .02186), resid df 54
    for typ in (1, 2, 3):  # balanced design: all three types agree
        table = anova(tooth_growth(), "len", ["supp", "dose"], typ=typ).set_index("source")
        assert list(table.index) == ["supp", "dose", "supp:dose", "Residual"]
        assert table.loc["supp", "F"] == pytest.approx(15.572, abs=5e-4)
        assert table.loc["dose", "F"] == pytest.approx(92.000, abs=5e-4)
        assert table.loc["supp:dose", "F"] == pytest.approx(4.107, abs=5e-4)
        assert table.loc["supp:dose", "p_unc"] == pytest.approx(0.02186, abs=5e-5)
        assert table.loc["Residual", "DF"] == 54
        assert table.loc["supp", "p_unc"] == pytest.approx(0.000231, abs=5e-6)


def test_paired_t_matches_r_sleep():
    # R: t.test(extra ~ group, data = sleep, paired = TRUE): t = -4.0621, df = 9, p = 0.002833,
    # 95% CI of mean(1 - 2) = [-2.4598858, -0.7001142]. Our diff is B - A = 2 - 1: signs flip.
    row = pairwise(sleep(), "extra", within="group", subject="ID").iloc[0]
    assert (row["A"], row["B"]) == ("1", "2")
    assert row["stat"] == pytest.approx(4.0621, abs=5e-5)
    assert row["dof"] == 9
    assert row["p_unc"] == pytest.approx(0.002833, abs=5e-7)
    assert row["diff"] == pytest.approx(1.58)
    assert row["ci_low"] == pytest.approx(0.7001142, abs=1e-6)
    assert row["ci_high"] == pytest.approx(2.4598858, abs=1e-6)
    # d_z = mean(d) / sd(d) = 1.58 / 1.229995 (R: sd(sleep1) = 1.229995)
    assert row["cohen_dz"] == pytest.approx(1.58 / 1.229995, abs=1e-5)
    assert row["prob_improvement"] == pytest.approx(0.95)  # 9 of 10 patients improve, 1 tie


def test_welch_t_matches_r_sleep_unpaired():
    # R: t.test(extra ~ group, data = sleep): t = -1.8608, df = 17.776, p-value = 0.07939
    row = pairwise(sleep(), "extra", between="group").iloc[0]
    assert row["stat"] == pytest.approx(1.8608, abs=5e-5)
    assert row["dof"] == pytest.approx(17.776, abs=5e-4)
    assert row["p_unc"] == pytest.approx(0.07939, abs=5e-6)


def test_friedman_matches_r_rounding_times():
    # R: friedman.test(RoundingTimes): Friedman chi-squared = 11.143, df = 2, p-value = 0.003805
    row = friedman(rounding_times(), "time", "method", "player").iloc[0]
    assert row["Q"] == pytest.approx(11.143, abs=5e-4)
    assert row["ddof"] == 2
    assert row["p_unc"] == pytest.approx(0.003805, abs=5e-7)
    assert row["kendall_w"] == pytest.approx(11.143 / (22 * 2), abs=1e-4)


def test_rm_anova_matches_field_bushtucker():
    # Field (2013) ch. 13: F(3, 21) = 3.79, p = .026; Mauchly W = .136, chi2(5) = 11.41;
    # Greenhouse-Geisser eps = .533, GG-corrected p = .063.
    row = rm_anova(bushtucker(), "retch", "food", "participant").iloc[0]
    assert (row["ddof1"], row["ddof2"]) == (3, 21)
    assert row["F"] == pytest.approx(3.794, abs=5e-4)
    assert row["p_unc"] == pytest.approx(0.026, abs=5e-4)
    assert row["W_mauchly"] == pytest.approx(0.136, abs=5e-4)
    assert row["eps"] == pytest.approx(0.533, abs=5e-4)
    assert row["p_gg"] == pytest.approx(0.063, abs=5e-4)
    # Field (2013) / SPSS and R's mauchly.test (with Anderson's second-order term): Mauchly
    # p = .047 (the first-order chi-square alone gives .044); Huynh-Feldt eps = .666, p = .048
    assert row["p_mauchly"] == pytest.approx(0.047, abs=5e-4)
    assert row["eps_hf"] == pytest.approx(0.666, abs=5e-4)
    assert row["p_hf"] == pytest.approx(0.048, abs=5e-4)
    # partial eta^2 from F: F df1 / (F df1 + df2)
    assert row["np2"] == pytest.approx(3.794 * 3 / (3.794 * 3 + 21), abs=1e-3)


def test_seeds_needed_matches_cohen_gpower():
    # Cohen (1988) / G*Power, paired t, two-sided, alpha .05, power .8: d = .5 -> 34, d = .8 -> 15
    assert seeds_needed(1.0, 0.5) == 34
    assert seeds_needed(1.0, 0.8) == 15
    assert seeds_needed(0.02, 0.01) == 34  # only the ratio delta / sd matters


def test_describe_matches_r_on_plantgrowth_ctrl():
    # R: x <- PlantGrowth$weight[1:10]; mean 5.032, sd 0.5830914, t.test(x)$conf.int 4.614882 5.449118
    table = describe(plant_growth(), "weight", "group").set_index("group")
    row = table.loc["ctrl"]
    assert row["n"] == 10
    assert row["mean"] == pytest.approx(5.032)
    assert row["std"] == pytest.approx(0.5830914, abs=1e-7)
    assert row["ci_low"] == pytest.approx(4.614882, abs=1e-6)
    assert row["ci_high"] == pytest.approx(5.449118, abs=1e-6)
    assert row["median"] == pytest.approx(5.155)
    assert row["boot_low"] < row["mean"] < row["boot_high"]
    assert np.isfinite(table["iqm"]).all()


def test_detectable_difference_inverts_cohens_table_and_statsmodels():
    from statsmodels.stats.power import TTestIndPower, TTestPower

    from cffbench.stats.power import detectable_difference

    # Cohen (1988) / G*Power, paired, two-sided .05, power .8: d = .5 needs 34 seeds and d = .8
    # needs 15, so .5 is detectable with 34 seeds but not with 33 (and .8 with 15, not 14)
    assert detectable_difference(1.0, 34) <= 0.5 < detectable_difference(1.0, 33)
    assert detectable_difference(1.0, 15) <= 0.8 < detectable_difference(1.0, 14)
    # statsmodels' own root finder is a second route: n = 10 pairs -> d_z = 0.996
    d_z = TTestPower().solve_power(nobs=10, alpha=0.05, power=0.8, alternative="two-sided")
    assert detectable_difference(2.0, 10) == pytest.approx(2.0 * d_z, rel=1e-6)
    # unpaired: Cohen's d with 10 runs per condition; the SD of a difference is sqrt(2) per-run SDs
    d = TTestIndPower().solve_power(nobs1=10, alpha=0.05, power=0.8, ratio=1.0)
    assert detectable_difference(math.sqrt(2.0), 10, paired=False) == pytest.approx(d, rel=1e-6)
    assert math.isnan(detectable_difference(1.0, 1))


def test_mauchly_p_matches_pingouin_on_the_committed_replication_store():
    # statistics audit (pingouin 0.7.0 sphericity, which like R adds the second-order term):
    # MNIST {FF, F-CFF, A-CFF, BP} at per-term θ, Mauchly p = .0492 (first-order chi-square .0475)
    from pathlib import Path

    runs = pd.read_parquet(Path(__file__).resolve().parents[1] / "results" / "replication_cpu" / "runs")
    mnist = runs[(runs["dataset"] == "mnist")
                 & (runs["theta_placement"].isna() | (runs["theta_placement"] == "per_term"))]
    row = rm_anova(mnist, "test_acc", "variant", "seed").iloc[0]
    assert row["p_mauchly"] == pytest.approx(0.0492, abs=5e-5)
    assert row["eps"] == pytest.approx(0.566, abs=5e-4)
