"""One paired contrast, decided by one pre-specified test: arrays of paired differences in, numbers out.

Everything here takes ``d``, the vector of paired differences (variant − reference, one per seed,
shape ``(n,)``), and never looks at the data to choose a method. Three tests are available, each
with the interval that belongs to it:

- ``t``: one-sample t on ``d``; interval: the t CI of the mean.
- ``permutation``: sign-flip permutation test of the mean (under H0 the sign of each seed's
  difference is exchangeable). Exact, over all 2^n sign vectors, for n <= ``exact_max_n``;
  otherwise Monte Carlo with ``n_resamples`` sign vectors drawn from ``numpy.random.default_rng(seed)``
  and p = (1 + hits) / (1 + n_resamples) (Phipson & Smyth 2010). Interval: the test inverted, i.e.
  every shift mu0 whose two-sided p exceeds alpha (the same sign vectors for every mu0).
- ``wilcoxon``: Wilcoxon signed-rank test, with the Hodges–Lehmann estimate and interval, as R's
  ``wilcox.test(conf.int = TRUE)`` computes them (:mod:`cffbench.stats.signed_rank`): zeros
  dropped; exact without zeros or ties below 50 differences, otherwise the normal approximation
  with tie-corrected variance and continuity correction for the p and the interval alike; the
  result says which.

On top of the two-sided test, :func:`minimum_effect_p` (H0: Delta >= SESOI against Delta < SESOI)
and :func:`tost_p` (two one-sided tests against -margin and +margin) use the same test, and
:func:`verdict` turns the adjusted p values into one word per contrast from :data:`VERDICT_TABLE`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import special
from scipy import stats as sps

from cffbench.errors import StatsError
from cffbench.stats.assumptions import RELATIVE_ZERO, is_constant
from cffbench.stats.multiplicity import adjust
from cffbench.stats.signed_rank import (EXACT_BELOW_N, WilcoxonResult, hodges_lehmann, psignrank,
                                        qsignrank, wilcoxon_test)

__all__ = ["EXACT_BELOW_N", "PermutationSettings", "RELATIVE_ZERO", "TESTS", "TEST_LABEL",
           "TestResult", "VERDICT_TABLE", "WilcoxonResult", "adjust", "corrected_dz",
           "hedges_correction", "hodges_lehmann", "is_constant", "minimum_effect_p",
           "permutation_interval", "prob_improvement", "psignrank", "qsignrank", "run_test",
           "sd_interval", "t_interval", "t_test_p", "test_p", "tost_p", "verdict", "wilcoxon_test",
           "wilson_interval"]

TESTS = ("t", "permutation", "wilcoxon")
TEST_LABEL = {"t": "paired t", "permutation": "sign-flip permutation", "wilcoxon": "Wilcoxon signed-rank"}


@dataclass(frozen=True)
class PermutationSettings:
    """How the sign-flip test enumerates: exact up to ``exact_max_n`` seeds, else Monte Carlo."""

    exact_max_n: int = 15
    n_resamples: int = 10000
    seed: int = 0


def _clean(d) -> np.ndarray:
    d = np.asarray(d, dtype=float).ravel()
    if not np.all(np.isfinite(d)):
        raise StatsError("paired differences must be finite")
    return d


def _sign_matrix(n: int, settings: PermutationSettings) -> tuple[np.ndarray, bool]:
    """(signs of shape (m, n), exact?): all 2^n sign vectors, or ``n_resamples`` random ones."""
    if n <= settings.exact_max_n:
        return np.array(list(itertools.product((1.0, -1.0), repeat=n))), True
    rng = np.random.default_rng(settings.seed)
    return rng.choice((1.0, -1.0), size=(settings.n_resamples, n)), False


def _flip_p(x: np.ndarray, signs: np.ndarray, exact: bool, alternative: str) -> float:
    observed = float(np.mean(x))
    null = signs @ x / x.size
    tol = 1e-12 * max(float(np.max(np.abs(x))), 1e-300)  # equal means count as extreme, as in scipy
    if alternative == "two-sided":
        hits = np.sum(np.abs(null) >= abs(observed) - tol)
    elif alternative == "less":
        hits = np.sum(null <= observed + tol)
    else:
        hits = np.sum(null >= observed - tol)
    if exact:
        return float(hits / len(null))
    return float((hits + 1) / (len(null) + 1))


def t_test_p(d, mu0: float = 0.0, alternative: str = "two-sided") -> float:
    """One-sample t p of H0: mean(d) = mu0 (or the one-sided H0 the ``alternative`` rejects)."""
    d = _clean(d)
    n = d.size
    if n < 2 or is_constant(d):
        return math.nan
    t = (float(np.mean(d)) - mu0) / (float(np.std(d, ddof=1)) / math.sqrt(n))
    if alternative == "less":
        return float(sps.t.cdf(t, n - 1))
    if alternative == "greater":
        return float(sps.t.sf(t, n - 1))
    return float(2.0 * sps.t.sf(abs(t), n - 1))


def test_p(d, test: str, mu0: float = 0.0, alternative: str = "two-sided",
           permutation: PermutationSettings = PermutationSettings()) -> float:
    """p of ``test`` for H0 about the shift ``mu0`` of the differences (see the module docstring)."""
    d = _clean(d)
    if test == "t":
        return t_test_p(d, mu0, alternative)
    if d.size < 2:
        return math.nan
    if test == "permutation":
        signs, exact = _sign_matrix(d.size, permutation)
        return _flip_p(d - mu0, signs, exact, alternative)
    if test == "wilcoxon":
        return wilcoxon_test(d, mu0, alternative).p
    raise StatsError(f"unknown test {test!r}; allowed: {', '.join(TESTS)}")


def permutation_interval(d, alpha: float = 0.05,
                         permutation: PermutationSettings = PermutationSettings()) -> tuple[float, float]:
    """The sign-flip test inverted: the shifts mu0 whose two-sided p exceeds ``alpha``.

    Found by bisection between min(d) (where every sign agrees, p = 2/2^n exactly) and the mean
    (p = 1), on each side; NaN bounds when even 2/2^n exceeds alpha (too few seeds to exclude any
    shift) or the differences are constant.
    """
    d = _clean(d)
    n = d.size
    if n < 2 or is_constant(d):
        return math.nan, math.nan
    signs, exact = _sign_matrix(n, permutation)
    mean = float(np.mean(d))

    def accepted(mu0: float) -> bool:
        return _flip_p(d - mu0, signs, exact, "two-sided") > alpha

    bounds = []
    for far in (float(np.min(d)) - 1e-9 * (1 + abs(mean)), float(np.max(d)) + 1e-9 * (1 + abs(mean))):
        if accepted(far):
            return math.nan, math.nan
        inside, outside = mean, far
        for _ in range(60):
            mid = (inside + outside) / 2.0
            inside, outside = (mid, outside) if accepted(mid) else (inside, mid)
        bounds.append(inside)
    return bounds[0], bounds[1]


def t_interval(d, alpha: float = 0.05) -> tuple[float, float]:
    """The t CI of the mean difference (NaN below 2 seeds)."""
    d = _clean(d)
    n = d.size
    if n < 2:
        return math.nan, math.nan
    half = float(sps.t.isf(alpha / 2.0, n - 1)) * float(np.std(d, ddof=1)) / math.sqrt(n)
    return float(np.mean(d)) - half, float(np.mean(d)) + half


@dataclass(frozen=True)
class TestResult:
    """One test of one contrast: its estimate, interval, two-sided p, and what it is.

    ``estimate`` is the mean (t, permutation) or the Hodges–Lehmann estimate (Wilcoxon);
    ``low``/``high`` bound the interval that belongs to the test at confidence 1 - alpha (for
    Wilcoxon the achieved confidence is ``confidence``); ``method`` says exact / Monte Carlo /
    normal approximation.
    """

    test: str
    n: int
    estimate: float
    low: float
    high: float
    p: float
    method: str
    confidence: float


def run_test(d, test: str, alpha: float = 0.05,
             permutation: PermutationSettings = PermutationSettings()) -> TestResult:
    """The two-sided test of H0: Delta = 0 and its own (unadjusted) 1 - alpha interval."""
    d = _clean(d)
    n = d.size
    if test == "t":
        low, high = t_interval(d, alpha)
        return TestResult("t", n, float(np.mean(d)) if n else math.nan, low, high, t_test_p(d),
                          "t distribution", 1 - alpha)
    if test == "permutation":
        low, high = permutation_interval(d, alpha, permutation)
        exact = n <= permutation.exact_max_n
        method = (f"exact (all 2^{n} sign flips)" if exact else
                  f"Monte Carlo ({permutation.n_resamples} sign flips, seed {permutation.seed})")
        return TestResult("permutation", n, float(np.mean(d)) if n else math.nan, low, high,
                          test_p(d, "permutation", permutation=permutation), method, 1 - alpha)
    if test == "wilcoxon":
        est, low, high, conf = hodges_lehmann(d, alpha)
        res = wilcoxon_test(d)
        method = ("exact" if res.exact else "normal approximation (zero or tied differences)")
        if res.n_used < n:
            method += f"; {n - res.n_used} zero difference(s) dropped"
        return TestResult("wilcoxon", n, est, low, high, res.p, method, conf)
    raise StatsError(f"unknown test {test!r}; allowed: {', '.join(TESTS)}")


def minimum_effect_p(d, sesoi: float, test: str,
                     permutation: PermutationSettings = PermutationSettings()) -> float:
    """p of the minimum-effect test H0: Delta >= ``sesoi`` against H1: Delta < ``sesoi``.

    Rejecting says the gain is smaller than the smallest effect of interest (the claim's size).
    """
    return test_p(d, test, mu0=sesoi, alternative="less", permutation=permutation)


def tost_p(d, margin: float, test: str,
           permutation: PermutationSettings = PermutationSettings()) -> float:
    """Two one-sided tests of H0: |Delta| >= ``margin``: max(p(Delta > -margin), p(Delta < margin)).

    For ``t`` this is statsmodels' ``ttost_paired(variant, reference, -margin, margin)``.
    """
    lower = test_p(d, test, mu0=-margin, alternative="greater", permutation=permutation)
    upper = test_p(d, test, mu0=margin, alternative="less", permutation=permutation)
    return max(lower, upper) if np.isfinite(lower) and np.isfinite(upper) else math.nan


def wilson_interval(successes: float, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n`` (Wilson 1927; statsmodels
    ``proportion_confint(method="wilson")``). NaN for n = 0."""
    if n <= 0:
        return math.nan, math.nan
    z = float(sps.norm.isf(alpha / 2.0))
    phat = successes / n
    centre = (phat + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def prob_improvement(d) -> float:
    """Share of seeds on which the variant beats the reference (a tie counts one half)."""
    d = _clean(d)
    if d.size == 0:
        return math.nan
    scale = max(float(np.max(np.abs(d))), 1e-300)
    ties = np.abs(d) <= RELATIVE_ZERO * scale
    return float((np.sum((d > 0) & ~ties) + 0.5 * np.sum(ties)) / d.size)


def hedges_correction(df: int) -> float:
    """Hedges' exact small-sample factor J(df) = Gamma(df/2) / (sqrt(df/2) Gamma((df-1)/2))."""
    if df < 2:
        return math.nan
    return float(math.exp(special.gammaln(df / 2) - special.gammaln((df - 1) / 2)) / math.sqrt(df / 2))


def corrected_dz(d) -> float:
    """Bias-corrected standardised mean difference J(n-1) mean(d) / sd(d) (Hedges 1981)."""
    d = _clean(d)
    if d.size < 3 or is_constant(d):
        return math.nan
    return float(np.mean(d) / np.std(d, ddof=1)) * hedges_correction(d.size - 1)


def sd_interval(sd: float, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """The chi-square interval of a normal SD from ``n`` values: sd sqrt(df / chi2_{1-a/2, df}) ..
    sd sqrt(df / chi2_{a/2, df}), df = n - 1."""
    if n < 2 or not np.isfinite(sd):
        return math.nan, math.nan
    df = n - 1
    return (sd * math.sqrt(df / sps.chi2.isf(alpha / 2, df)),
            sd * math.sqrt(df / sps.chi2.ppf(alpha / 2, df)))


#: The verdict of a primary contrast, first matching row wins. p values are Holm-adjusted over
#: the primary family, separately for each of the three questions.
VERDICT_TABLE = (
    ("not yet run", "a planned contrast with no stored run of one of its two conditions yet; it "
                    "still counts in its family, as a p of 1 would"),
    ("undefined", "the test is undefined (fewer than 2 paired seeds, constant differences)"),
    ("confirmed", "two-sided p_adj < alpha and the estimate > 0: better than FF"),
    ("worse than FF", "two-sided p_adj < alpha and the estimate < 0"),
    ("equivalent to FF", "TOST p_adj < alpha: the difference lies within ±margin"),
    ("claimed size ruled out", "minimum-effect p_adj < alpha: the gain is smaller than the SESOI"),
    ("inconclusive", "none of the above; 'about N seeds would decide it' gives the seeds a paired t "
                     "at the plan's alpha / m needs to detect the SESOI with power .8"),
)


def verdict(p_adj: float, estimate: float, p_tost_adj: float, p_me_adj: float,
            alpha: float) -> str:
    """The first row of :data:`VERDICT_TABLE` that holds (without the 'N seeds' suffix)."""
    if not (np.isfinite(p_adj) and np.isfinite(estimate)):
        return "undefined"
    if p_adj < alpha and estimate > 0:
        return "confirmed"
    if p_adj < alpha and estimate < 0:
        return "worse than FF"
    if np.isfinite(p_tost_adj) and p_tost_adj < alpha:
        return "equivalent to FF"
    if np.isfinite(p_me_adj) and p_me_adj < alpha:
        return "claimed size ruled out"
    return "inconclusive"
