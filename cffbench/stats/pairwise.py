"""Pairwise comparisons: paired / Welch t-tests, Wilcoxon / Mann-Whitney, Tukey HSD.

Direction convention: for a pair (A, B), with A the earlier level, ``diff`` = mean_B - mean_A, so a
positive ``diff``, effect size and a ``prob_improvement`` above .5 all mean that B scores higher.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
from scipy import stats as sps

from cffbench.errors import StatsError
from cffbench.stats.assumptions import is_constant
from cffbench.stats.effsize import cohen_dz, hedges_g, probability_of_improvement
from cffbench.stats.inputs import check_frame, level_labels, ordered_levels, subject_matrix
from cffbench.stats.multiplicity import ADJUST_METHODS, adjust


def _paired_row(a: np.ndarray, b: np.ndarray, parametric: bool, confidence: float) -> dict:
    diffs = b - a
    n = diffs.size
    scale = max(float(np.max(np.abs(np.concatenate([a, b])))), 1e-300) if n else 1.0
    dz, es_low, es_high = cohen_dz(diffs, confidence, scale)
    row = dict(n_A=n, n_B=n, mean_A=float(np.mean(a)) if n else np.nan,
               mean_B=float(np.mean(b)) if n else np.nan,
               diff=float(np.mean(diffs)) if n else np.nan, ci_low=np.nan, ci_high=np.nan,
               stat=np.nan, dof=np.nan, p_unc=np.nan, cohen_dz=dz, es_ci_low=es_low,
               es_ci_high=es_high, prob_improvement=probability_of_improvement(a, b, paired=True),
               test="paired t" if parametric else "Wilcoxon signed-rank", note="")
    if n < 2:
        row["note"] = f"undefined: {n} complete pair(s)"
        return row
    if is_constant(diffs, scale):
        row["note"] = ("undefined: every paired difference is zero" if np.allclose(diffs, 0, atol=1e-12 * scale)
                       else "undefined: the paired differences are constant (sd = 0); the test statistic would be infinite")
        return row
    ttest = sps.ttest_rel(b, a)
    ci = ttest.confidence_interval(confidence)
    row.update(ci_low=float(ci.low), ci_high=float(ci.high))
    if parametric:
        row.update(stat=float(ttest.statistic), dof=float(ttest.df), p_unc=float(ttest.pvalue))
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # scipy: "sample size too small for normal approximation"
            res = sps.wilcoxon(b, a)
        row.update(stat=float(res.statistic), p_unc=float(res.pvalue))
    return row


def _unpaired_row(a: np.ndarray, b: np.ndarray, parametric: bool, confidence: float) -> dict:
    g, es_low, es_high = hedges_g(a, b, confidence)
    row = dict(n_A=a.size, n_B=b.size, mean_A=float(np.mean(a)), mean_B=float(np.mean(b)),
               diff=float(np.mean(b) - np.mean(a)), ci_low=np.nan, ci_high=np.nan, stat=np.nan,
               dof=np.nan, p_unc=np.nan, hedges_g=g, es_ci_low=es_low, es_ci_high=es_high,
               prob_improvement=probability_of_improvement(a, b, paired=False),
               test="Welch t" if parametric else "Mann-Whitney U", note="")
    if min(a.size, b.size) < 2:
        row["note"] = "undefined: a group has fewer than 2 values"
        return row
    if is_constant(a) and is_constant(b):
        row["note"] = "undefined: both groups are constant (zero variance)"
        return row
    welch = sps.ttest_ind(b, a, equal_var=False)
    ci = welch.confidence_interval(confidence)
    row.update(ci_low=float(ci.low), ci_high=float(ci.high))
    if parametric:
        row.update(stat=float(welch.statistic), dof=float(welch.df), p_unc=float(welch.pvalue))
    else:
        res = sps.mannwhitneyu(b, a, alternative="two-sided")
        row.update(stat=float(res.statistic), p_unc=float(res.pvalue))
    return row


def pairwise(data: pd.DataFrame, dv: str, within: str | None = None, between: str | None = None,
             subject: str | None = None, parametric: bool = True, padjust: str = "holm",
             confidence: float = 0.95) -> pd.DataFrame:
    """All pairwise comparisons between the levels of one factor.

    Paired (``within`` + ``subject``): paired t-test (``ttest_rel``) or Wilcoxon signed-rank
    (``wilcoxon``, exact for small n) on the subjects observed at both levels. Unpaired
    (``between``): Welch t-test (``ttest_ind(equal_var=False)``) or Mann-Whitney U.

    Returns
    -------
    DataFrame, one row per pair (A before B in level order):

    - ``contrast`` (the factor), ``A``, ``B``, ``test``, ``n_A``, ``n_B`` (pairs when paired);
    - ``mean_A``, ``mean_B``, ``diff`` = mean_B - mean_A (paired: mean of B - A over pairs);
    - ``ci_low``, ``ci_high``: t-based CI of ``diff`` (paired t / Welch), for both test families;
    - ``stat`` (t, Wilcoxon's W = smaller signed-rank sum, or U of B), ``dof`` (t tests only),
      ``p_unc``, ``p_adj`` (``padjust`` over the defined tests of this table);
    - ``cohen_dz`` = mean(B - A) / sd(B - A) (paired) or ``hedges_g`` (unpaired), with
      ``es_ci_low``, ``es_ci_high`` by noncentral-t inversion (see :mod:`cffbench.stats.effsize`);
    - ``prob_improvement``: share of seeds where B beats A, ties 1/2 (paired); unpaired, the share
      of all (A, B) run pairs (common-language effect size);
    - ``note``: why a test is undefined (then ``stat``/``p`` are NaN), e.g. constant differences,
      for which ``ttest_rel`` would report t = inf, p = 0.

    Raises
    ------
    StatsError
        Not exactly one of ``within`` / ``between``, ``within`` without ``subject``, a missing
        column, fewer than 2 levels, or an unknown ``padjust``.
    """
    if (within is None) == (between is None):
        raise StatsError("pairwise needs exactly one of within= (paired, with subject=) or between=")
    if padjust not in ADJUST_METHODS:
        raise StatsError(f"padjust must be one of {', '.join(ADJUST_METHODS)}; got {padjust!r}")
    factor = within if within is not None else between
    if within is not None and subject is None:
        raise StatsError("pairwise(within=...) needs subject= (the column that pairs the runs, e.g. 'seed')")
    frame = check_frame(data, dv, [factor] + ([subject] if within is not None else []))
    frame[factor] = level_labels(frame[factor])
    levels = ordered_levels(frame[factor])
    if len(levels) < 2:
        raise StatsError(f"pairwise needs at least 2 levels of {factor!r}, got {levels}")
    rows = []
    wide = subject_matrix(frame, dv, factor, subject) if within is not None else None
    for level_a, level_b in itertools.combinations(levels, 2):
        if wide is not None:
            both = wide[[level_a, level_b]].dropna()
            row = _paired_row(both[level_a].to_numpy(), both[level_b].to_numpy(), parametric, confidence)
        else:
            a = frame.loc[frame[factor] == level_a, dv].to_numpy(dtype=float)
            b = frame.loc[frame[factor] == level_b, dv].to_numpy(dtype=float)
            row = _unpaired_row(a, b, parametric, confidence)
        rows.append({"contrast": factor, "A": level_a, "B": level_b, **row})
    es = "cohen_dz" if within is not None else "hedges_g"
    columns = ["contrast", "A", "B", "test", "n_A", "n_B", "mean_A", "mean_B", "diff", "ci_low",
               "ci_high", "stat", "dof", "p_unc", "p_adj", es, "es_ci_low", "es_ci_high",
               "prob_improvement", "note"]
    out = pd.DataFrame(rows)
    out["p_adj"] = adjust(out["p_unc"].to_numpy(), padjust)
    return out[columns]


def tukey(data: pd.DataFrame, dv: str, between: str, confidence: float = 0.95) -> pd.DataFrame:
    """Tukey's HSD for all pairs of ``between`` levels (``scipy.stats.tukey_hsd``).

    Returns
    -------
    DataFrame ``A, B, diff, ci_low, ci_high, p_adj, note`` with ``diff`` = mean_B - mean_A and a
    family-wise CI. NaN with a note when a group has < 2 values or every group is constant.
    """
    frame = check_frame(data, dv, [between])
    labels = level_labels(frame[between])
    levels = ordered_levels(labels)
    if len(levels) < 2:
        raise StatsError(f"tukey needs at least 2 levels of {between!r}, got {levels}")
    groups = [frame.loc[labels == lv, dv].to_numpy(dtype=float) for lv in levels]
    note = ""
    if min(g.size for g in groups) < 2:
        note = "undefined: a group has fewer than 2 values"
    elif all(is_constant(g) for g in groups):
        note = "undefined: every group is constant (zero residual variance)"
    result = None if note else sps.tukey_hsd(*groups)
    ci = None if note else result.confidence_interval(confidence)
    rows = []
    for i, j in itertools.combinations(range(len(levels)), 2):
        row = dict(A=levels[i], B=levels[j], diff=float(np.mean(groups[j]) - np.mean(groups[i])),
                   ci_low=np.nan, ci_high=np.nan, p_adj=np.nan, note=note)
        if result is not None:
            row.update(ci_low=float(ci.low[j, i]), ci_high=float(ci.high[j, i]),
                       p_adj=float(result.pvalue[j, i]))
        rows.append(row)
    return pd.DataFrame(rows, columns=["A", "B", "diff", "ci_low", "ci_high", "p_adj", "note"])
