"""cffbench.stats.paired pinned to independent values: scipy, statsmodels, R's documented examples,
brute-force enumeration, and the independent recomputation of the committed replication store
(pandas + scipy + statsmodels + pingouin, outside cffbench) that the statistics audit published."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint
from statsmodels.stats.weightstats import ttost_paired

from cffbench.stats import paired as P
from cffbench.stats.power import seeds_needed

REPO = Path(__file__).resolve().parents[1]
# R's wilcox.test example data (Hollander & Wolfe 1973, p. 29f: Hamilton depression scale, first
# and second visit); R prints "V = 40, p-value = 0.01953" for alternative = "greater".
X = np.array([1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30])
Y = np.array([0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29])
D = X - Y


def test_wilcoxon_exact_p_matches_r_wilcox_test_documented_example():
    greater = P.wilcoxon_test(D, alternative="greater")
    assert greater.exact and greater.statistic == 40 and greater.p == pytest.approx(0.01953, abs=5e-6)
    assert P.wilcoxon_test(D).p == pytest.approx(2 * 0.01953125, rel=1e-12)
    # and scipy's exact method
    assert greater.p == pytest.approx(sps.wilcoxon(X, Y, alternative="greater", method="exact").pvalue, rel=1e-12)


def test_wilcoxon_with_ties_says_it_is_approximate_and_equals_scipy_normal_approximation():
    d = np.array([0.5, -0.5, 1.0, 1.0, 2.0, 0.0, 1.5, 3.0])
    res = P.wilcoxon_test(d)
    assert not res.exact and res.n_used == 7   # the zero difference is dropped (Wilcoxon's rule)
    ref = sps.wilcoxon(d, zero_method="wilcox", correction=True, method="approx")
    assert res.p == pytest.approx(ref.pvalue, rel=1e-12)
    assert "normal approximation" in P.run_test(d, "wilcoxon").method
    assert "1 zero difference(s) dropped" in P.run_test(d, "wilcoxon").method


def test_signed_rank_distribution_equals_brute_force_enumeration():
    # P(V <= 8) for n = 10 is 25/1024 (every subset of ranks 1..10 enumerated here)
    sums = [sum(s) for k in range(11) for s in itertools.combinations(range(1, 11), k)]
    assert sum(v <= 8 for v in sums) == 25
    assert P.psignrank(8, 10) * 1024 == pytest.approx(25)
    assert P.qsignrank(0.025, 10) == 9   # so the HL interval at n = 10 has 1 - 2*25/1024 = 95.1 %


def test_hodges_lehmann_estimate_is_the_median_of_walsh_averages():
    walsh = [(D[i] + D[j]) / 2 for i in range(D.size) for j in range(i, D.size)]
    est, low, high, conf = P.hodges_lehmann(D)
    assert est == pytest.approx(np.median(walsh), rel=1e-12)
    ordered = np.sort(walsh)
    q = P.qsignrank(0.025, D.size)
    assert (low, high) == (ordered[q - 1], ordered[len(ordered) - q])
    assert conf == pytest.approx(1 - 2 * P.psignrank(q - 1, D.size))


def _replication_diffs(variant: str, theta: str) -> np.ndarray:
    import pandas as pd

    runs = pd.read_parquet(REPO / "results" / "replication_cpu" / "runs")
    mnist = runs[runs["dataset"] == "mnist"]
    ff = mnist[mnist["variant"] == "ff"].set_index("seed")["test_acc"]
    cff = mnist[(mnist["variant"] == variant) & (mnist["theta_placement"] == theta)].set_index("seed")["test_acc"]
    return 100 * (cff - ff).sort_index().to_numpy()


@pytest.mark.parametrize("variant, expected", [("f-cff", (1.90, -1.23, 3.32)), ("a-cff", (1.53, -1.07, 3.11))])
def test_hodges_lehmann_interval_matches_the_independent_recomputation(variant, expected):
    # statistics audit of the committed store: "MNIST F-CFF single: +1.90 [−1.23, +3.32];
    # A-CFF single: +1.53 [−1.07, +3.11]" (exact interval, 95.1 % coverage at n = 10), and the
    # exact Wilcoxon p .0645 / .084
    d = _replication_diffs(variant, "single")
    est, low, high, conf = P.hodges_lehmann(d)
    assert (round(est, 2), round(low, 2), round(high, 2)) == expected
    assert conf == pytest.approx(0.951, abs=5e-4)
    assert P.wilcoxon_test(d).p == pytest.approx({"f-cff": 0.0645, "a-cff": 0.084}[variant], abs=5e-4)


@pytest.mark.parametrize("alternative", ["two-sided", "less", "greater"])
@pytest.mark.parametrize("shift", [0.0, 0.3, -0.2])
def test_exact_sign_flip_p_matches_scipy_permutation_test(alternative, shift):
    ref = sps.permutation_test((D - shift,), np.mean, permutation_type="samples", n_resamples=np.inf,
                               alternative=alternative)
    assert P.test_p(D, "permutation", mu0=shift, alternative=alternative) == pytest.approx(ref.pvalue, rel=1e-12)


def test_monte_carlo_sign_flip_is_seeded_and_close_to_the_exact_p():
    rng = np.random.default_rng(3)
    d = rng.normal(0.4, 1.0, 16)                       # n = 16 > 15: Monte Carlo by default
    exact = sps.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf).pvalue
    mc = P.PermutationSettings(exact_max_n=15, n_resamples=20000, seed=7)
    p1, p2 = P.test_p(d, "permutation", permutation=mc), P.test_p(d, "permutation", permutation=mc)
    assert p1 == p2                                     # same seed, same p
    assert abs(p1 - exact) < 4 * math.sqrt(exact * (1 - exact) / 20000) + 1e-4
    assert "Monte Carlo (20000 sign flips, seed 7)" in P.run_test(d, "permutation", permutation=mc).method


def test_permutation_interval_is_the_inverted_test():
    low, high = P.permutation_interval(D)
    for bound, outward in ((low, -1), (high, 1)):
        # oracle: scipy's exact sign-flip test at shifts just inside and just outside each bound
        inside = sps.permutation_test((D - (bound - outward * 1e-6),), np.mean, permutation_type="samples",
                                      n_resamples=np.inf).pvalue
        outside = sps.permutation_test((D - (bound + outward * 1e-6),), np.mean, permutation_type="samples",
                                       n_resamples=np.inf).pvalue
        assert inside > 0.05 >= outside
    assert low < D.mean() < high


def test_permutation_interval_is_unbounded_when_no_shift_can_be_rejected():
    # n = 5: the smallest two-sided p is 2/32 = .0625 > .05
    assert all(math.isnan(b) for b in P.permutation_interval([1.0, 2.0, 0.5, 1.5, 3.0]))


def test_t_test_p_and_interval_match_scipy():
    ref = sps.ttest_rel(X, Y)
    assert P.test_p(D, "t") == pytest.approx(ref.pvalue, rel=1e-12)
    ci = ref.confidence_interval(0.95)
    assert P.t_interval(D) == pytest.approx((ci.low, ci.high), rel=1e-12)


def test_tost_matches_statsmodels_ttost_paired():
    for margin in (0.2, 0.5, 1.0):
        expected = ttost_paired(X, Y, -margin, margin)[0]
        assert P.tost_p(D, margin, "t") == pytest.approx(expected, rel=1e-10)


def test_minimum_effect_test_matches_scipy_one_sided_t():
    expected = sps.ttest_1samp(D, popmean=1.2, alternative="less").pvalue
    assert P.minimum_effect_p(D, 1.2, "t") == pytest.approx(expected, rel=1e-12)
    # the same question with the sign-flip test: scipy's exact one-sided permutation p at the shift
    perm = sps.permutation_test((D - 0.6,), np.mean, permutation_type="samples", n_resamples=np.inf,
                                alternative="less").pvalue
    assert P.minimum_effect_p(D, 0.6, "permutation") == pytest.approx(perm, rel=1e-12)


def test_wilson_interval_matches_statsmodels_and_the_audit():
    for k, n in ((8, 10), (9, 10), (3, 5), (0, 10), (10, 10)):
        assert P.wilson_interval(k, n) == pytest.approx(proportion_confint(k, n, method="wilson"), abs=1e-12)
    # the audit: ".80 of 10 has a Wilson CI of [.49, .94]"
    assert tuple(round(x, 2) for x in P.wilson_interval(8, 10)) == (0.49, 0.94)


def test_holm_and_bonferroni_match_statsmodels_multipletests():
    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan, 0.2])
    finite = np.isfinite(p)
    for method in ("holm", "bonferroni"):
        ours = P.adjust(p, method)
        assert np.isnan(ours[~finite]).all()
        assert ours[finite] == pytest.approx(multipletests(p[finite], method=method)[1], rel=1e-12)


def test_hedges_j_is_the_exact_gamma_ratio():
    for df in (4, 9, 20):
        exact = math.gamma(df / 2) / (math.sqrt(df / 2) * math.gamma((df - 1) / 2))
        assert P.hedges_correction(df) == pytest.approx(exact, rel=1e-12)
        assert P.hedges_correction(df) == pytest.approx(1 - 3 / (4 * df - 1), abs=3e-3)  # Hedges' approximation
    d = _replication_diffs("a-cff", "per_term")
    # the audit's uncorrected d_z for MNIST A-CFF per term is −0.733; corrected = J(9) × that
    assert P.corrected_dz(d) == pytest.approx(-0.7328 * 0.91387, abs=5e-4)


def test_seeds_needed_interval_from_the_sd_chi_square_interval_matches_the_audit():
    # audit: with 9 df the 95 % CI for sigma is [0.69 s, 1.83 s], so "54 seeds" (SD 3.070 pp,
    # 1.2 pp, power .8, alpha .05) has a 95 % range of 27-174
    low, high = P.sd_interval(3.070, 10)
    assert (round(low / 3.070, 2), round(high / 3.070, 2)) == (0.69, 1.83)
    assert [seeds_needed(s, 1.2) for s in (3.070, low, high)] == [54, 27, 174]
    # oracle for the interval itself: scipy's chi-square quantiles
    assert low == pytest.approx(3.070 * math.sqrt(9 / sps.chi2.ppf(0.975, 9)), rel=1e-12)


def test_prob_improvement_counts_ties_half():
    assert P.prob_improvement([1.0, -1.0, 0.0, 2.0]) == pytest.approx(0.625)


@pytest.mark.parametrize("row, expected", [
    ((0.01, 0.5, 0.5, 0.5), "confirmed"), ((0.01, -0.5, 0.5, 0.01), "worse than FF"),
    ((0.3, 0.1, 0.01, 0.01), "equivalent to FF"), ((0.3, -0.1, 0.2, 0.01), "claimed size ruled out"),
    ((0.3, 0.5, 0.2, 0.2), "inconclusive"), ((math.nan, math.nan, math.nan, math.nan), "undefined")])
def test_verdict_takes_the_first_matching_row_of_the_table(row, expected):
    p_adj, estimate, p_tost, p_me = row
    assert P.verdict(p_adj, estimate, p_tost, p_me, 0.05) == expected
    assert expected in {name for name, _ in P.VERDICT_TABLE}


def test_degenerate_differences_give_undefined_never_zero():
    assert math.isnan(P.test_p([0.01], "t")) and math.isnan(P.test_p([0.01], "permutation"))
    assert math.isnan(P.test_p([0.02] * 6, "t"))                  # constant: t undefined
    assert math.isnan(P.wilcoxon_test([0.0] * 6).p)                # every difference zero
    assert math.isnan(P.corrected_dz([0.02] * 6))
    assert all(math.isnan(x) for x in P.t_interval([0.5]))
