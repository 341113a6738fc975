"""Assumption checks: normality (Shapiro-Wilk), equal variances (Levene), sphericity (Mauchly, GG).

Each check returns a dict ``{check, stat, p, ...,  note}``; ``note`` is empty when the check is
defined and otherwise says why it is not (then ``stat`` and ``p`` are NaN). A constant sample is
*not* reported as normal: Shapiro-Wilk returns W = 1, p = 1 for it, which means nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

RELATIVE_ZERO = 1e-12  # a spread below this fraction of the data's scale counts as zero


def is_constant(values: np.ndarray, scale: float | None = None) -> bool:
    """True when ``values`` have (numerically) zero spread relative to ``scale`` (default: max |x|)."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return True
    ref = max(float(np.max(np.abs(values))) if scale is None else float(scale), 1.0e-300)
    return float(np.ptp(values)) <= RELATIVE_ZERO * ref


def shapiro_check(values: np.ndarray, what: str, scale: float | None = None) -> dict:
    """Shapiro-Wilk test of normality on ``values`` (shape (n,)); ``what`` names the sample.

    ``scale`` is the size of the raw data the values were derived from (max |y|). Residuals or
    differences are judged constant relative to it: when every seed shows the same gain, the
    residuals are float noise (~1e-17) whose *own* spread is not small, and Shapiro-Wilk on that
    noise would "reject" normality. Default: the values' own max |x|.
    """
    values = np.asarray(values, dtype=float)
    out = {"check": "normality (Shapiro-Wilk)", "on": what, "stat": np.nan, "p": np.nan, "note": ""}
    if values.size < 3:
        out["note"] = f"undefined: needs at least 3 values, got {values.size}"
    elif is_constant(values, scale):
        out["note"] = ("undefined: the sample is constant (Shapiro-Wilk would call it normal)" if scale is None
                       else "undefined: the sample is constant relative to the data's scale "
                            "(zero variance up to rounding; Shapiro-Wilk would test float noise)")
    else:
        res = sps.shapiro(values)
        out.update(stat=float(res.statistic), p=float(res.pvalue))
    return out


def levene_check(groups: Sequence[np.ndarray], what: str) -> dict:
    """Brown-Forsythe variant of Levene's test (``center="median"``) on the groups' values."""
    groups = [np.asarray(g, dtype=float) for g in groups]
    out = {"check": "equal variances (Levene, median-centred)", "on": what, "stat": np.nan,
           "p": np.nan, "note": ""}
    if len(groups) < 2:
        out["note"] = "undefined: needs at least 2 groups"
    elif min(g.size for g in groups) < 2:
        out["note"] = "undefined: a group has fewer than 2 values"
    elif all(is_constant(g) for g in groups):
        out["note"] = "undefined: every group is constant"
    else:
        res = sps.levene(*groups, center="median")
        if np.isfinite(res.statistic):
            out.update(stat=float(res.statistic), p=float(res.pvalue))
        else:
            out["note"] = "undefined: zero spread around the group medians"
    return out


def sphericity(scores: np.ndarray) -> dict:
    """Mauchly's test and the Greenhouse-Geisser epsilon from orthonormal contrast scores.

    Parameters
    ----------
    scores : array (n_subjects, p) = Y @ C, where Y (n, cells) holds each subject's cell values and
        C (cells, p) the orthonormal contrasts of one within effect (p = its numerator df).

    Returns
    -------
    dict with ``W`` (Mauchly), ``chi2``, ``ddof``, ``p`` (Mauchly p-value) and ``eps`` (GG), where,
    with S the (p, p) sample covariance of the scores,

    - eps = tr(S)^2 / (p tr(S^2))      (Greenhouse & Geisser 1959; 1/p <= eps <= 1),
    - W = det(S) / (tr(S)/p)^p,  chi2 = -(n - 1 - (2p^2 + p + 2) / (6p)) ln W,
      ddof = p(p + 1)/2 - 1 (Mauchly 1940); the p adds Anderson's second-order term,
      p = P1 + w2 (P2 - P1) with P1, P2 the chi2 tails at ddof and ddof + 4 and
      w2 = (p+2)(p-1)(p-2)(2p^3+6p^2+3p+2) / (288 (n-1)^2 p^2 rho^2), rho = (n-1-(2p^2+p+2)/(6p))/(n-1)
      (R ``mauchly.test``).

    For p = 1 sphericity holds trivially: eps = 1 and the Mauchly columns are NaN. When S is zero
    (no error variance) eps is NaN; when n - 1 < p, Mauchly's W is undefined (NaN).
    """
    n, p = scores.shape
    out = {"W": np.nan, "chi2": np.nan, "ddof": np.nan, "p": np.nan, "eps": np.nan, "note": ""}
    if p == 1:
        out.update(eps=1.0, note="two levels: sphericity holds trivially")
        return out
    if n < 2:
        out["note"] = "undefined: needs at least 2 subjects"
        return out
    cov = np.cov(scores, rowvar=False)
    trace = float(np.trace(cov))
    if trace <= RELATIVE_ZERO * max(float(np.mean(scores**2)), 1e-300):
        out["note"] = "undefined: no error variance"
        return out
    out["eps"] = trace**2 / (p * float(np.trace(cov @ cov)))
    if n - 1 < p:
        out["note"] = f"Mauchly undefined: {n} subjects for {p} contrasts"
        return out
    w = float(np.linalg.det(cov)) / (trace / p) ** p
    ddof = p * (p + 1) / 2 - 1
    out.update(W=w, ddof=ddof)
    if w > 0:
        # Anderson's (1958) second-order term, as R's mauchly.test and pingouin.sphericity
        df_err = n - 1
        rho = 1 - (2 * p**2 + p + 2) / (6 * p * df_err)
        w2 = ((p + 2) * (p - 1) * (p - 2) * (2 * p**3 + 6 * p**2 + 3 * p + 2)
              / (288 * (df_err * p * rho) ** 2))
        chi2 = -df_err * rho * np.log(w)
        pr1, pr2 = sps.chi2.sf(chi2, ddof), sps.chi2.sf(chi2, ddof + 4)
        out.update(chi2=chi2, p=float(min(1.0, max(0.0, pr1 + w2 * (pr2 - pr1)))))
    else:
        out["note"] = "Mauchly undefined: singular covariance of the contrasts"
    return out
