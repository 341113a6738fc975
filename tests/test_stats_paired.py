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


# R 4.2.2 (Debian r-base-core 4.2.2.20221110-2), for each vector d below:
#   r <- wilcox.test(d, conf.int = TRUE, tol.root = 1e-12)
#   sprintf("%.17g", c(r$statistic, r$p.value, r$estimate, r$conf.int, attr(r$conf.int, "conf.level")))
# (tol.root only tightens uniroot's tolerance; the default 1e-4 gives the same values to 1e-4).
# Every case has zeros or ties, so R takes its normal-approximation branch for p and interval.
R_WILCOX = {
    # d: (V, p, estimate, ci_low, ci_high, conf.level)
    (0.5, -0.5, 1.0, 1.0, 2.0, 0.0, 1.5, 3.0):
        (26.5, 0.041785168403922129, 1.2499999999990039, 3.5568006882832467e-13, 2.4999999999996829, 0.95),
    (1.2, 0.4, -0.3, 1.2, 2.1, 0.4, 1.7, -0.8, 0.9, 1.2):
        (50, 0.024463932481596121, 0.80000000000039195, 0.050000000000491415, 1.4500000000001079, 0.95),
    # not achievable at .95: R doubles alpha ("requested conf.level not achievable")
    (0.5, 1, 1, 2, 3): (15, 0.0579072654172973, 1.4999999999997242, 0.5, 3, 0.9),
    (-1, 2, 2, 3): (9, 0.19746607335801866, 1.9999999999998828, 0.49999999999989908, 2.50000000000027, 0.8),
}


@pytest.mark.parametrize("d", list(R_WILCOX))
def test_wilcoxon_and_hodges_lehmann_with_zeros_and_ties_match_r_wilcox_test(d):
    v, p, estimate, low, high, level = R_WILCOX[d]
    test = P.wilcoxon_test(d)
    assert not test.exact and test.statistic == v and test.p == pytest.approx(p, rel=1e-12)
    ours = P.hodges_lehmann(d)
    assert ours == pytest.approx((estimate, low, high, level), abs=1e-9)   # R's roots to tol.root


def test_hodges_lehmann_drops_zero_differences_as_r_does():
    # R: wilcox.test(c(0, 1.1, -0.4, 2.3, 0.7, 0, 1.9, -1.3, 0.2), conf.int = TRUE, tol.root = 1e-12)
    # gives V = 21, p = 0.27189871081964845, CI (-0.84999999999979048, 2.0999999999996817) at .95
    # and estimate 0.67478922091695781: its uniroot stops somewhere on the flat stretch between the
    # two middle Walsh averages of the 7 non-zero differences, whose midpoint (the median) we report.
    d = [0, 1.1, -0.4, 2.3, 0.7, 0, 1.9, -1.3, 0.2]
    test = P.wilcoxon_test(d)
    assert (test.n_used, test.statistic) == (7, 21) and test.p == pytest.approx(0.27189871081964845, rel=1e-12)
    estimate, low, high, level = P.hodges_lehmann(d)
    assert (low, high, level) == pytest.approx((-0.84999999999979048, 2.0999999999996817, 0.95), abs=1e-9)
    nonzero = np.array([x for x in d if x != 0])
    walsh = np.sort([(nonzero[i] + nonzero[j]) / 2 for i in range(7) for j in range(i, 7)])
    assert walsh[13] < 0.67478922091695781 < walsh[14]                  # R's root, on that stretch
    assert estimate == pytest.approx(np.median(walsh), rel=1e-12)       # = (walsh[13] + walsh[14]) / 2
    with_zeros = [(d[i] + d[j]) / 2 for i in range(9) for j in range(i, 9)]
    assert estimate != pytest.approx(np.median(with_zeros))             # what keeping the zeros gives


def test_no_interval_where_r_reports_confidence_zero():
    # R: wilcox.test(c(1, 1, 2), conf.int = TRUE) warns "requested conf.level not achievable" and
    # returns the interval (1, 1) with conf.level 0; no interval is reported instead.
    estimate, low, high, level = P.hodges_lehmann([1, 1, 2])
    assert math.isnan(low) and math.isnan(high) and level == 0
    assert "normal approximation" in P.run_test([1, 1, 2], "wilcoxon").method


def test_ties_rule_treats_differences_equal_up_to_float_error_as_tied():
    # 0.9381 - 0.9262 and 0.9400 - 0.9281 are the same gain of 119 test images, but not the same double
    a, b = 0.9381 - 0.9262, 0.9400 - 0.9281
    assert a != b
    d = [a, b, 0.0031, -0.0042, 0.0157, 0.0088]
    exact_doubles = sps.wilcoxon(d, method="approx", correction=True)       # ranks a and b apart
    ours = P.wilcoxon_test(d)
    assert not ours.exact
    tied = [0.0119, 0.0119, 0.0031, -0.0042, 0.0157, 0.0088]
    assert ours.p == pytest.approx(sps.wilcoxon(tied, method="approx", correction=True).pvalue, rel=1e-12)
    assert ours.p != pytest.approx(exact_doubles.pvalue, rel=1e-9)


def _replication_diffs(variant: str, theta: str) -> np.ndarray:
    import pandas as pd

    runs = pd.read_parquet(REPO / "results" / "replication_cpu" / "runs")
    mnist = runs[runs["dataset"] == "mnist"]
    ff = mnist[mnist["variant"] == "ff"].set_index("seed")["test_acc"]
    cff = mnist[(mnist["variant"] == variant) & (mnist["theta_placement"] == theta)].set_index("seed")["test_acc"]
    return 100 * (cff - ff).sort_index().to_numpy()


def test_committed_store_contrast_with_ties_matches_r_on_test_image_counts():
    # MNIST A-CFF − F-CFF (theta single) of the committed replication store, in test images
    # (accuracy x 10 000, so R sees exact integers and their ties):
    #   d <- c(5, 10, -180, -13, 22, -7, -52, -106, -10, -30)
    #   wilcox.test(d, conf.int = TRUE, tol.root = 1e-12)
    # R 4.2.2: V = 10.5, p-value = 0.0923888566126834, (pseudo)median -21, 95 % CI -93.5 .. 5
    import pandas as pd

    runs = pd.read_parquet(REPO / "results" / "replication_cpu" / "runs")
    mnist = runs[(runs["dataset"] == "mnist") & (runs["theta_placement"] == "single")]
    f = mnist[mnist["variant"] == "f-cff"].set_index("seed")["test_acc"]
    a = mnist[mnist["variant"] == "a-cff"].set_index("seed")["test_acc"]
    d = (a - f).sort_index().to_numpy()
    assert np.round(d * 10000).tolist() == [5, 10, -180, -13, 22, -7, -52, -106, -10, -30]
    test = P.wilcoxon_test(d)
    assert (test.exact, test.statistic) == (False, 10.5) and test.p == pytest.approx(0.0923888566126834, rel=1e-9)
    estimate, low, high, level = P.hodges_lehmann(d)
    assert np.array([estimate, low, high]) * 10000 == pytest.approx([-21, -93.5, 5], abs=1e-6)
    assert level == 0.95


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


@pytest.mark.parametrize("method", ["holm", "bonferroni", "fdr_bh"])
def test_adjustment_matches_statsmodels_multipletests_also_with_a_declared_family_size(method):
    rng = np.random.default_rng(3)
    for _ in range(20):
        p = rng.uniform(0, 0.2, size=6)
        p[rng.integers(0, 6)] = np.nan
        finite = np.isfinite(p)
        ours = P.adjust(p, method)
        assert np.isnan(ours[~finite]).all()
        assert ours[finite] == pytest.approx(multipletests(p[finite], method=method)[1], rel=1e-12)
        # a declared family of 8: the two untested contrasts count as p values of 1 would
        padded = np.concatenate([p[finite], [1.0, 1.0, 1.0]])
        assert P.adjust(p, method, m=8)[finite] == pytest.approx(
            multipletests(padded, method=method)[1][:finite.sum()], rel=1e-12)


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
