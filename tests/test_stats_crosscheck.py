"""cffbench.stats cross-checked against statsmodels' own classes and independent formulas on
random data (seeded numpy Generators), plus invariants that must hold for any data."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.anova import AnovaRM
from statsmodels.stats.multicomp import pairwise_tukeyhsd
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from cffbench.stats import anova, describe, friedman, pairwise, rm_anova, seeds_needed, tukey, welch_anova
from cffbench.stats.anova import _effect_contrasts
from cffbench.stats.assumptions import sphericity
from cffbench.stats.effsize import cohen_dz, hedges_g
from cffbench.stats.multiplicity import adjust as adjust_pvalues


def random_blocks(seed: int, n: int = 6, a: int = 3, b: int = 2) -> pd.DataFrame:
    """Long data: n subjects x a x b cells, subject effects, unequal cell variances."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n):
        subject_effect = rng.normal(0, 1)
        for i, j in itertools.product(range(a), range(b)):
            rows.append((s, f"a{i}", f"b{j}", subject_effect + 0.4 * i - 0.3 * j * i + rng.normal(0, 1 + i)))
    return pd.DataFrame(rows, columns=["s", "fa", "fb", "y"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rm_anova_contrast_sums_of_squares_reproduce_anovarm(seed):
    data = random_blocks(seed)
    table = rm_anova(data, "y", ["fa", "fb"], "s").set_index("source")
    reference = AnovaRM(data, "y", "s", within=["fa", "fb"]).fit().anova_table
    for source in ["fa", "fb", "fa:fb"]:
        row = table.loc[source]
        # F rebuilt from our own contrast SS (which also give eps) equals statsmodels' F
        f_from_ss = (row["SS"] / row["ddof1"]) / (row["SS_error"] / row["ddof2"])
        assert f_from_ss == pytest.approx(reference.loc[source, "F Value"], rel=1e-9)
        assert row["ddof2"] == reference.loc[source, "Den DF"]
        assert row["np2"] == pytest.approx(row["F"] * row["ddof1"] / (row["F"] * row["ddof1"] + row["ddof2"]))
        # Greenhouse-Geisser bounds: 1 / ddof1 <= eps <= 1
        assert 1 / row["ddof1"] - 1e-12 <= row["eps"] <= 1 + 1e-12
        if row["ddof1"] == 1:
            assert row["eps"] == 1 and row["p_gg"] == pytest.approx(row["p_unc"])


def test_gg_epsilon_is_one_and_mauchly_w_near_one_under_compound_symmetry():
    # Cells with equal variances and equal covariances: sphericity holds exactly in the population;
    # with many subjects the estimates approach eps = 1, W = 1 (contrast scores fed directly: fast).
    rng = np.random.default_rng(3)
    n, k = 4000, 4
    y = rng.normal(size=(n, 1)) + rng.normal(size=(n, k))
    result = sphericity(y @ _effect_contrasts([k], (0,)))
    assert result["eps"] == pytest.approx(1.0, abs=0.01)
    assert result["W"] == pytest.approx(1.0, abs=0.02)
    assert result["p"] > 0.001


def test_gg_epsilon_reaches_its_lower_bound_when_one_contrast_carries_all_variance():
    # Greenhouse-Geisser lower bound 1 / (k - 1): the error covariance has rank one
    rng = np.random.default_rng(11)
    y = np.outer(rng.normal(size=12), [1.0, -1.0, 0.0]) + np.array([1.0, 2.0, 3.0])
    result = sphericity(y @ _effect_contrasts([3], (0,)))
    assert result["eps"] == pytest.approx(0.5)


def test_one_way_anova_equals_scipy_f_oneway_on_unbalanced_groups():
    rng = np.random.default_rng(4)
    groups = [rng.normal(m, s, size=n) for m, s, n in [(0, 1, 5), (0.5, 2, 9), (1, 0.5, 7)]]
    data = pd.DataFrame([(f"g{i}", v) for i, g in enumerate(groups) for v in g], columns=["g", "y"])
    row = anova(data, "y", "g").iloc[0]
    ref = sps.f_oneway(*groups)
    assert row["F"] == pytest.approx(ref.statistic)
    assert row["p_unc"] == pytest.approx(ref.pvalue)


def test_welch_anova_equals_welch_1951_formula():
    rng = np.random.default_rng(5)
    groups = [rng.normal(m, s, size=n) for m, s, n in [(0, 1, 6), (0.8, 3, 11), (0.2, 0.4, 8), (1, 1, 5)]]
    data = pd.DataFrame([(f"g{i}", v) for i, g in enumerate(groups) for v in g], columns=["g", "y"])
    row = welch_anova(data, "y", "g").iloc[0]
    k = len(groups)
    n = np.array([g.size for g in groups])
    m = np.array([g.mean() for g in groups])
    w = n / np.array([g.var(ddof=1) for g in groups])
    mw = np.sum(w * m) / w.sum()
    lam = np.sum((1 - w / w.sum()) ** 2 / (n - 1))
    f = (np.sum(w * (m - mw) ** 2) / (k - 1)) / (1 + 2 * (k - 2) * lam / (k**2 - 1))
    df2 = (k**2 - 1) / (3 * lam)
    assert row["F"] == pytest.approx(f)
    assert row["ddof2"] == pytest.approx(df2)
    assert row["p_unc"] == pytest.approx(sps.f.sf(f, k - 1, df2))


def test_pairwise_paired_and_welch_equal_statsmodels_weightstats():
    data = random_blocks(6, n=8)
    data = data[data["fb"] == "b0"]
    paired = pairwise(data, "y", within="fa", subject="s", padjust="none").set_index(["A", "B"])
    unpaired = pairwise(data, "y", between="fa", padjust="none").set_index(["A", "B"])
    wide = data.pivot(index="s", columns="fa", values="y")
    for a, b in itertools.combinations(["a0", "a1", "a2"], 2):
        d = DescrStatsW(wide[b] - wide[a])
        t, p, _ = d.ttest_mean()
        assert paired.loc[(a, b), "stat"] == pytest.approx(t)
        assert paired.loc[(a, b), "p_unc"] == pytest.approx(p)
        assert (paired.loc[(a, b), "ci_low"], paired.loc[(a, b), "ci_high"]) == pytest.approx(d.tconfint_mean())
        cm = CompareMeans.from_data(wide[b].to_numpy(), wide[a].to_numpy())
        t, p, dof = cm.ttest_ind(usevar="unequal")
        assert unpaired.loc[(a, b), "stat"] == pytest.approx(t)
        assert unpaired.loc[(a, b), "dof"] == pytest.approx(dof)
        assert (unpaired.loc[(a, b), "ci_low"], unpaired.loc[(a, b), "ci_high"]) == pytest.approx(
            cm.tconfint_diff(usevar="unequal"))


def test_holm_bonferroni_and_bh_adjustments_match_hand_computation():
    p = np.array([0.01, 0.04, 0.03, np.nan])
    # Holm: sorted .01*3 = .03, .03*2 = .06, .04*1 -> max(.06, .04) = .06; NaN stays out of the family
    assert adjust_pvalues(p, "holm")[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert adjust_pvalues(p, "bonferroni")[:3] == pytest.approx([0.03, 0.12, 0.09])
    # Benjamini-Hochberg: .01*3/1 = .03, .03*3/2 = .045, .04*3/3 = .04 -> step-up min: .03, .04, .04
    assert adjust_pvalues(p, "fdr_bh")[:3] == pytest.approx([0.03, 0.04, 0.04])
    assert np.isnan(adjust_pvalues(p, "holm")[3])


def test_tukey_equals_statsmodels_pairwise_tukeyhsd():
    rng = np.random.default_rng(7)
    data = pd.DataFrame({"g": np.repeat(["x", "y", "z"], [6, 8, 7])})
    data["v"] = rng.normal(size=len(data)) + data["g"].map({"x": 0, "y": 1, "z": 0.3})
    ours = tukey(data, "v", "g").set_index(["A", "B"])
    ref = pairwise_tukeyhsd(data["v"], data["g"]).summary().data[1:]
    for group1, group2, meandiff, p_adj, lower, upper, _ in ref:
        row = ours.loc[(group1, group2)]
        assert row["diff"] == pytest.approx(meandiff, abs=1e-4)
        assert row["p_adj"] == pytest.approx(p_adj, abs=1e-3)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((lower, upper), abs=1e-4)


def test_kendall_w_is_one_when_every_block_ranks_the_same():
    data = pd.DataFrame([(s, c, s + 10 * c + 0.1 * s * c) for s in range(6) for c in range(3)],
                        columns=["s", "c", "y"])
    row = friedman(data, "y", "c", "s").iloc[0]
    assert row["kendall_w"] == pytest.approx(1.0)
    assert row["Q"] == pytest.approx(6 * 2)  # Q = n (k - 1) when W = 1


@pytest.mark.parametrize("d", [0.3, 0.5, 1.0, 1.7])
def test_seeds_needed_is_the_smallest_n_with_enough_power(d):
    n = seeds_needed(1.0, d)
    power = TTestPower()
    assert power.power(d, n, 0.05) >= 0.8
    assert n == 2 or power.power(d, n - 1, 0.05) < 0.8
    assert n == np.ceil(power.solve_power(d, alpha=0.05, power=0.8))


def test_dz_confidence_interval_excludes_zero_exactly_when_the_t_test_rejects():
    rng = np.random.default_rng(8)
    for _ in range(40):
        diffs = rng.normal(0.7, 1, size=rng.integers(3, 12))
        dz, low, high = cohen_dz(diffs)
        assert low < dz < high
        p = sps.ttest_1samp(diffs, 0).pvalue
        assert (low > 0 or high < 0) == (p < 0.05)


def test_effect_size_intervals_approach_the_large_sample_normal_interval():
    # Large n: se(d_z) ~ sqrt(1/n + d^2 / (2n)) (Hedges & Olkin 1985); g's se ~ sqrt(2/n + d^2/(4n))
    rng = np.random.default_rng(9)
    n = 3000
    dz, low, high = cohen_dz(rng.normal(0.5, 1, size=n))
    se = np.sqrt(1 / n + dz**2 / (2 * n))
    assert (low, high) == pytest.approx((dz - 1.96 * se, dz + 1.96 * se), abs=2e-3)
    a, b = rng.normal(0, 1, size=n), rng.normal(0.5, 1, size=n)
    g, low, high = hedges_g(a, b)
    se = np.sqrt(2 / n + g**2 / (4 * n))
    assert (low, high) == pytest.approx((g - 1.96 * se, g + 1.96 * se), abs=2e-3)


def test_describe_t_interval_equals_statsmodels_and_bootstrap_is_reproducible():
    rng = np.random.default_rng(10)
    data = pd.DataFrame({"g": np.repeat(["p", "q"], 7), "y": rng.normal(size=14)})
    first = describe(data, "y", "g", seed=3)
    again = describe(data, "y", "g", seed=3)
    other = describe(data, "y", "g", seed=4)
    pd.testing.assert_frame_equal(first, again)
    assert not np.allclose(first["boot_low"], other["boot_low"])
    for row in first.itertuples():
        ref = DescrStatsW(data.loc[data["g"] == row.g, "y"].to_numpy()).tconfint_mean()
        assert (row.ci_low, row.ci_high) == pytest.approx(ref)


def test_describe_iqm_is_the_mean_of_the_middle_half():
    data = pd.DataFrame({"y": [8.0, 1, 7, 2, 6, 3, 5, 4]})
    row = describe(data, "y").iloc[0]
    assert row["iqm"] == pytest.approx(4.5)  # mean of 3, 4, 5, 6
    assert row["median"] == pytest.approx(4.5)
