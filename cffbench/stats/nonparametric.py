"""Rank-based omnibus test for repeated measures: Friedman, with Kendall's W."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from cffbench.errors import StatsError
from cffbench.stats.assumptions import is_constant
from cffbench.stats.inputs import check_frame, level_labels, ordered_levels, subject_matrix

FRIEDMAN_COLUMNS = ["source", "n", "Q", "ddof", "p_unc", "kendall_w", "note"]


def friedman(data: pd.DataFrame, dv: str, within: str, subject: str) -> pd.DataFrame:
    """Friedman's rank test over the levels of one within factor, blocks = ``subject``.

    ``Q`` is the tie-corrected Friedman chi-square from ``scipy.stats.friedmanchisquare`` on
    ddof = k - 1; ``kendall_w`` = Q / (n (k - 1)) (Kendall's coefficient of concordance, 0..1).

    Returns
    -------
    One-row DataFrame ``source, n, Q, ddof, p_unc, kendall_w, note``. Q and p are NaN, with a note,
    when there are fewer than 3 levels (use the Wilcoxon signed-rank test), fewer than 2 subjects,
    or every block is constant (all ranks tied).

    Raises
    ------
    StatsError
        Missing columns, one level, a duplicated subject x level, or a subject missing a level.
    """
    frame = check_frame(data, dv, [within, subject])
    frame[within] = level_labels(frame[within])
    levels = ordered_levels(frame[within])
    if len(levels) < 2:
        raise StatsError(f"friedman needs at least 2 levels of {within!r}, got {levels}")
    wide = subject_matrix(frame, dv, within, subject)[levels]
    if wide.isna().any(axis=None):
        raise StatsError(f"{int(wide.isna().any(axis=1).sum())} {subject!r} value(s) miss a level of "
                         f"{within!r}; keep complete blocks first")
    y = wide.to_numpy(dtype=float)
    n, k = y.shape
    row = dict(source=within, n=n, Q=np.nan, ddof=float(k - 1), p_unc=np.nan, kendall_w=np.nan, note="")
    if k < 3:
        row["note"] = "undefined: Friedman needs at least 3 levels; use the Wilcoxon signed-rank test"
    elif n < 2:
        row["note"] = f"undefined: needs at least 2 {subject} blocks, got {n}"
    elif all(is_constant(block) for block in y):
        row["note"] = "undefined: every block is constant (all ranks tied)"
    else:
        res = sps.friedmanchisquare(*y.T)
        row.update(Q=float(res.statistic), p_unc=float(res.pvalue),
                   kendall_w=float(res.statistic) / (n * (k - 1)))
    return pd.DataFrame([row], columns=FRIEDMAN_COLUMNS)


def kruskal(data: pd.DataFrame, dv: str, between: str) -> pd.DataFrame:
    """Kruskal-Wallis H test over the levels of one between factor (``scipy.stats.kruskal``).

    Returns one row ``source, H, ddof, p_unc, note``; NaN with a note when all values are tied.
    """
    frame = check_frame(data, dv, [between])
    labels = level_labels(frame[between])
    levels = ordered_levels(labels)
    if len(levels) < 2:
        raise StatsError(f"kruskal needs at least 2 levels of {between!r}, got {levels}")
    groups = [frame.loc[labels == lv, dv].to_numpy(dtype=float) for lv in levels]
    row = dict(source=between, H=np.nan, ddof=float(len(levels) - 1), p_unc=np.nan, note="")
    if is_constant(np.concatenate(groups)):
        row["note"] = "undefined: all values are tied"
    else:
        res = sps.kruskal(*groups)
        row.update(H=float(res.statistic), p_unc=float(res.pvalue))
    return pd.DataFrame([row], columns=["source", "H", "ddof", "p_unc", "note"])
