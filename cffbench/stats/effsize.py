"""Standardised effect sizes and their confidence intervals (noncentral-t inversion).

CI method (Steiger & Fouladi 1997; as in R's MBESS / effectsize): the observed t statistic that
corresponds to the effect size follows a noncentral t with ncp proportional to the true effect.
The limits of the ncp are the values for which the observed t sits at the (1 +/- c)/2 quantiles;
they are rescaled to the effect-size metric. Exact under normality, unlike the usual normal
approximation, which is poor at the n = 5..10 seeds we have.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize
from scipy import stats as sps
from scipy.special import gammaln

from cffbench.stats.assumptions import RELATIVE_ZERO, is_constant


def hedges_correction(dof: float) -> float:
    """Exact small-sample bias correction J(df) = Gamma(df/2) / (sqrt(df/2) Gamma((df-1)/2))."""
    if dof < 2:
        return np.nan
    return float(np.exp(gammaln(dof / 2) - gammaln((dof - 1) / 2)) / np.sqrt(dof / 2))


def ncp_interval(t_value: float, dof: float, confidence: float = 0.95) -> tuple[float, float]:
    """Confidence limits (low, high) of the noncentrality parameter of a t(dof) given observed t."""
    if not (np.isfinite(t_value) and dof >= 1):
        return (np.nan, np.nan)
    tail = (1 - confidence) / 2

    spread = np.sqrt(1.0 + t_value**2 / (2.0 * dof))  # approximate sd of the ncp estimate

    def gap(ncp: float, target: float) -> float:
        value = float(sps.nct.cdf(t_value, dof, ncp))
        if not np.isfinite(value):  # far tails: nct.cdf underflows to NaN; the limit is 0 or 1
            value = 0.0 if ncp > t_value else 1.0
        return value - target  # decreasing in ncp

    def limit(target: float) -> float:
        width = 10.0 * spread
        for _ in range(40):
            low, high = t_value - width, t_value + width
            if gap(low, target) > 0 > gap(high, target):
                return float(optimize.brentq(gap, low, high, args=(target,), xtol=1e-10))
            width *= 2
        return np.nan  # pragma: no cover - no sign change found

    return (limit(1 - tail), limit(tail))


def cohen_dz(diffs: np.ndarray, confidence: float = 0.95,
             scale: float | None = None) -> tuple[float, float, float]:
    """Paired effect size d_z = mean(d) / sd(d) of differences ``diffs`` (shape (n,)), with CI.

    CI: t = d_z sqrt(n) on n - 1 df; ncp limits / sqrt(n). NaN when n < 2 or sd is zero, i.e.
    below 1e-12 of ``scale`` (the magnitude of the raw values; default max |d|), which also
    catches the rounding noise left by subtracting equal floats.
    """
    diffs = np.asarray(diffs, dtype=float)
    n = diffs.size
    if n < 2:
        return (np.nan, np.nan, np.nan)
    sd = float(np.std(diffs, ddof=1))
    if is_constant(diffs, scale) or not np.isfinite(sd):
        return (np.nan, np.nan, np.nan)
    dz = float(np.mean(diffs)) / sd
    low, high = ncp_interval(dz * np.sqrt(n), n - 1, confidence)
    return (dz, low / np.sqrt(n), high / np.sqrt(n))


def hedges_g(a: np.ndarray, b: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """Unpaired effect size g = J(df) (mean(b) - mean(a)) / s_pooled, with CI.

    s_pooled^2 = ((n_a - 1) s_a^2 + (n_b - 1) s_b^2) / df, df = n_a + n_b - 2. CI: the pooled-
    variance t = d / sqrt(1/n_a + 1/n_b); ncp limits * sqrt(1/n_a + 1/n_b) * J. NaN when df < 2 or
    the pooled sd is zero.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    dof = a.size + b.size - 2
    if a.size < 1 or b.size < 1 or dof < 2:
        return (np.nan, np.nan, np.nan)
    pooled = np.sqrt(((a.size - 1) * np.var(a, ddof=1 if a.size > 1 else 0)
                      + (b.size - 1) * np.var(b, ddof=1 if b.size > 1 else 0)) / dof)
    if pooled <= RELATIVE_ZERO * max(float(np.max(np.abs(np.concatenate([a, b])))), 1e-300):
        return (np.nan, np.nan, np.nan)
    d = (float(np.mean(b)) - float(np.mean(a))) / pooled
    scale = np.sqrt(1 / a.size + 1 / b.size)
    j = hedges_correction(dof)
    low, high = ncp_interval(d / scale, dof, confidence)
    return (d * j, low * scale * j, high * scale * j)


def probability_of_improvement(a: np.ndarray, b: np.ndarray, paired: bool) -> float:
    """Share of comparisons where b beats a (ties count one half).

    Paired: over seeds, mean(1[b_i > a_i] + 0.5 * 1[b_i = a_i]). Unpaired: over all (a_i, b_j)
    pairs, i.e. the common-language effect size U / (n_a n_b) (rliable's probability of improvement).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size == 0 or b.size == 0:
        return np.nan
    if paired:
        return float(np.mean((b > a) + 0.5 * (b == a)))
    return float(np.mean((b[None, :] > a[:, None]) + 0.5 * (b[None, :] == a[:, None])))
