"""Wilcoxon's signed-rank test and the Hodges–Lehmann estimate with its interval, as R's
``wilcox.test(x, mu = mu0, conf.int = TRUE)`` computes them (R 4.2, ``stats:::wilcox.test.default``).

Input: ``d``, shape ``(n,)``, the paired differences (variant − reference, one per seed).

Ties rule (stated once, used by the test and the interval alike): the values ``x = d − mu0`` are
put on the grid ``RELATIVE_ZERO · max|x|`` before anything is ranked, so two differences equal up
to float error tie (accuracies are counts over a test set, so equal gains are common) and a value
within half a grid step of zero is a zero. R ranks the exact doubles instead (its
``digits.rank = Inf``); on data without float noise the two agree. Then, as in R:

- zeros are dropped (Wilcoxon's rule, R's default), leaving ``n`` non-zero differences;
- *exact* branch, when no zero was dropped, no |x| is tied and ``n < 50``: p from the null
  distribution of V (the sum of the positive ranks); interval ``[w_(q), w_(M − q + 1)]`` of the
  ``M = n(n+1)/2`` sorted Walsh averages ``w = (x_i + x_j)/2, i <= j``, with
  ``q = max(1, qsignrank(alpha/2, n))`` (Bauer 1972), achieved confidence
  ``1 − 2 psignrank(q − 1, n)``; estimate: the median of the Walsh averages;
- *normal approximation* otherwise: ``z = (V − n(n+1)/4 − c) / sigma`` with the tie-corrected
  ``sigma² = n(n+1)(2n+1)/24 − sum(t³ − t)/48`` and the continuity correction ``c`` (±1/2 towards
  zero, two-sided); interval: the shifts ``mu`` at which the same corrected z of ``x − mu``
  crosses ``±z_(1−alpha/2)`` (R solves this with ``uniroot`` to ``tol.root``; z is a step function
  of ``mu`` that jumps only at Walsh averages, so the roots here are those Walsh averages,
  exactly); when even the extremes cannot reach the quantile, alpha is doubled until they can and
  the achieved confidence says so (R's "requested conf.level not achievable"); estimate: the root
  of the uncorrected z, which is the median of the Walsh averages of the non-zero differences (R's
  ``uniroot`` returns some point of the flat stretch when that median falls between two Walsh
  averages; the median is its midpoint).

Where R reports an interval at ``conf.level`` 0 (fewer than 2 usable differences, or nothing
achievable below alpha = 1) this module reports no interval (NaN bounds, confidence 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from cffbench.errors import StatsError
from cffbench.stats.assumptions import RELATIVE_ZERO

#: Wilcoxon's exact null distribution is used below this many non-zero differences (R: n < 50).
EXACT_BELOW_N = 50


def _clean(d) -> np.ndarray:
    d = np.asarray(d, dtype=float).ravel()
    if not np.all(np.isfinite(d)):
        raise StatsError("paired differences must be finite")
    return d


def _tolerance(x: np.ndarray) -> float:
    return RELATIVE_ZERO * (float(np.max(np.abs(x))) if x.size else 0.0)


def tie_groups(values: np.ndarray, tol: float) -> np.ndarray:
    """Group number of each value (0, 1, ... in increasing order), neighbours in sorted order at
    most ``tol`` apart sharing a group: the ties rule."""
    order = np.argsort(values, kind="stable")
    groups = np.empty(values.size, dtype=int)
    groups[order] = np.concatenate([[0], np.cumsum(np.diff(values[order]) > tol)]) if values.size else []
    return groups


def abs_ranks(x: np.ndarray, tol: float) -> np.ndarray:
    """Ranks of |x| (ties by :func:`tie_groups` share their mean rank)."""
    return sps.rankdata(tie_groups(np.abs(x), tol))


def _signrank_counts(n: int) -> np.ndarray:
    """Number of subsets of {1..n} with each sum 0..n(n+1)/2 (the null distribution of V x 2^n)."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for k in range(1, n + 1):
        counts[k:] = counts[k:] + counts[:-k].copy()
    return counts


def psignrank(v: int, n: int) -> float:
    """P(V <= v) for the signed-rank statistic with n untied, non-zero differences (R ``psignrank``)."""
    if v < 0:
        return 0.0
    counts = _signrank_counts(n)
    return float(counts[: v + 1].sum() / counts.sum())


def qsignrank(prob: float, n: int) -> int:
    """Smallest v with P(V <= v) >= ``prob`` (R ``qsignrank``)."""
    cdf = np.cumsum(_signrank_counts(n))
    cdf /= cdf[-1]
    return int(np.searchsorted(cdf, prob - 1e-12))


def _nonzero(d, mu0: float = 0.0) -> tuple[np.ndarray, int, float]:
    """(the non-zero values of d − mu0, how many zeros were dropped, the ties tolerance)."""
    x = _clean(d) - mu0
    tol = _tolerance(x)
    keep = np.abs(x) > tol
    return x[keep], int(np.sum(~keep)), tol


def _is_tied(x: np.ndarray, tol: float) -> bool:
    return int(tie_groups(np.abs(x), tol).max(initial=-1)) + 1 < x.size


def _sigma(ranks: np.ndarray) -> float:
    """The tie-corrected SD of V under H0: sqrt(n(n+1)(2n+1)/24 − sum(t³ − t)/48)."""
    n = ranks.size
    _, ties = np.unique(ranks, return_counts=True)
    var = n * (n + 1) * (2 * n + 1) / 24.0 - float(np.sum(ties.astype(float) ** 3 - ties)) / 48.0
    return math.sqrt(var) if var > 0 else 0.0


def _z(x: np.ndarray, tol: float, correct: bool) -> float:
    """R's W(d): the normal-approximation z of the signed-rank statistic of ``x`` (zeros dropped,
    tie-corrected sigma, two-sided continuity correction when ``correct``); NaN when sigma is 0."""
    x = x[np.abs(x) > tol]
    n = x.size
    if n == 0:
        return math.nan
    ranks = abs_ranks(x, tol)
    sigma = _sigma(ranks)
    if sigma == 0:
        return math.nan
    zd = float(ranks[x > 0].sum()) - n * (n + 1) / 4.0
    correction = 0.5 * float(np.sign(zd)) if correct else 0.0
    return (zd - correction) / sigma


@dataclass(frozen=True)
class WilcoxonResult:
    """Signed-rank test of one shift: ``p``, ``exact``, non-zero ``n_used``, ``statistic`` V."""

    p: float
    exact: bool
    n_used: int
    statistic: float


def wilcoxon_test(d, mu0: float = 0.0, alternative: str = "two-sided") -> WilcoxonResult:
    """Wilcoxon signed-rank test of H0: the differences are symmetric about ``mu0``
    (R ``wilcox.test(d, mu = mu0, alternative = ...)``; see the module docstring)."""
    x, zeros, tol = _nonzero(d, mu0)
    n = x.size
    if n == 0:
        return WilcoxonResult(math.nan, False, 0, math.nan)
    ranks = abs_ranks(x, tol)
    v = float(ranks[x > 0].sum())
    if zeros == 0 and not _is_tied(x, tol) and n < EXACT_BELOW_N:
        cdf = np.cumsum(_signrank_counts(n)) / 2.0**n
        vi = int(round(v))
        lower = cdf[vi]                                   # P(V <= v)
        upper = 1.0 - (cdf[vi - 1] if vi >= 1 else 0.0)  # P(V >= v)
        p = {"less": lower, "greater": upper}.get(alternative, min(1.0, 2.0 * min(lower, upper)))
        return WilcoxonResult(float(p), True, n, v)
    sigma = _sigma(ranks)
    if sigma == 0:
        return WilcoxonResult(math.nan, False, n, v)
    zd = v - n * (n + 1) / 4.0
    correction = {"greater": 0.5, "less": -0.5}.get(alternative, 0.5 * float(np.sign(zd)))
    z = (zd - correction) / sigma
    if alternative == "less":
        p = sps.norm.cdf(z)
    elif alternative == "greater":
        p = sps.norm.sf(z)
    else:
        p = 2.0 * min(sps.norm.cdf(z), sps.norm.sf(z))
    return WilcoxonResult(float(p), False, n, v)


def _walsh(x: np.ndarray) -> np.ndarray:
    """The n(n+1)/2 Walsh averages (x_i + x_j) / 2, i <= j, sorted."""
    i, j = np.triu_indices(x.size)
    return np.sort((x[i] + x[j]) / 2.0)


def _root(x: np.ndarray, tol: float, jumps: np.ndarray, zq: float) -> float:
    """The shift mu in [min x, max x] at which the continuity-corrected z of ``x − mu`` crosses
    ``zq`` (R's ``uniroot(W(d) − zq)``, solved exactly: z is constant between the sorted distinct
    Walsh averages ``jumps`` and non-increasing from one stretch to the next)."""
    def f(mu: float) -> float:
        return _z(x - mu, tol, correct=True) - zq

    if f(jumps[0]) == 0:
        return float(jumps[0])
    if f(jumps[-1]) == 0:
        return float(jumps[-1])
    mids = (jumps[:-1] + jumps[1:]) / 2.0             # one point inside each stretch
    values: dict[int, float] = {}

    def at(k: int) -> float:
        if k not in values:
            values[k] = f(float(mids[k]))
        return values[k]

    left, right = 0, mids.size                         # bisection for the first stretch with f < 0
    while left < right:
        middle = (left + right) // 2
        if at(middle) < 0:
            right = middle
        else:
            left = middle + 1
    first_negative = left                              # mids.size: f < 0 only at max x itself
    if first_negative == 0 or at(first_negative - 1) > 0:
        return float(jumps[first_negative])
    start = first_negative - 1                         # f == 0 on a flat stretch: its midpoint
    while start > 0 and at(start - 1) == 0:
        start -= 1
    return float((jumps[start] + jumps[first_negative]) / 2.0)


def hodges_lehmann(d, alpha: float = 0.05) -> tuple[float, float, float, float]:
    """(estimate, low, high, confidence) of the Hodges–Lehmann one-sample estimator and the
    interval of the signed-rank test, as R's ``wilcox.test(d, conf.int = TRUE,
    conf.level = 1 - alpha)`` (module docstring). ``confidence`` is the achieved level of the
    exact interval, or 1 − alpha (doubled until achievable) of the approximate one."""
    x, zeros, tol = _nonzero(d)
    n = x.size
    if n == 0:
        return math.nan, math.nan, math.nan, 0.0
    walsh = _walsh(x)
    estimate = float(np.median(walsh))
    if n < 2:
        return estimate, math.nan, math.nan, 0.0
    if zeros == 0 and not _is_tied(x, tol) and n < EXACT_BELOW_N:
        q = max(qsignrank(alpha / 2.0, n), 1)
        return (estimate, float(walsh[q - 1]), float(walsh[walsh.size - q]),
                1.0 - 2.0 * psignrank(q - 1, n))
    jumps = walsh[np.concatenate([[True], np.diff(walsh) > tol])]   # distinct Walsh averages
    at_min, at_max = _z(x - jumps[0], tol, correct=True), _z(x - jumps[-1], tol, correct=True)
    if not (np.isfinite(at_min) and np.isfinite(at_max)):
        return estimate, math.nan, math.nan, 0.0
    level = alpha
    while at_min < sps.norm.isf(level / 2.0) or at_max > sps.norm.ppf(level / 2.0):
        level *= 2.0                                   # R: "requested conf.level not achievable"
        if level >= 1.0:
            return estimate, math.nan, math.nan, 0.0
    z = float(sps.norm.isf(level / 2.0))
    return estimate, _root(x, tol, jumps, z), _root(x, tol, jumps, -z), 1.0 - level
