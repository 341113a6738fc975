"""Multiplicity adjustment of a family of p values: the one implementation cffbench uses.

Holm (1979) step-down, Bonferroni, Benjamini–Hochberg (1995) step-up, or none; each equals
statsmodels' ``multipletests(method=...)[1]`` when the family is the finite p values given.
"""

from __future__ import annotations

import numpy as np

from cffbench.errors import StatsError

ADJUST_METHODS = ("none", "bonferroni", "holm", "fdr_bh")


def adjust(p_values, method: str, m: int | None = None) -> np.ndarray:
    """Adjusted p values of one family, in the order given; NaN p values (undefined tests) stay
    NaN.

    ``m`` is the family size: by default the number of finite p values; a pre-registered family
    passes its declared size, so a contrast that cannot be tested (a missing cell) still counts,
    as a p of 1 would, and does not make the others' adjustment milder.

    With the k finite p values sorted, p_(1) <= ... <= p_(k):

    - Holm: p_adj_(i) = max_{j <= i} min(1, (m − j + 1) p_(j));
    - Bonferroni: min(1, m p);
    - Benjamini–Hochberg: p_adj_(i) = min_{j >= i} min(1, m p_(j) / j).

    Raises
    ------
    StatsError
        An unknown ``method``, or ``m`` smaller than the number of finite p values.
    """
    if method not in ADJUST_METHODS:
        raise StatsError(f"unknown p-value adjustment {method!r}; allowed: {', '.join(ADJUST_METHODS)}")
    p = np.asarray(p_values, dtype=float)
    out = np.full_like(p, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    k = finite.size
    m = k if m is None else int(m)
    if m < k:
        raise StatsError(f"family size {m} is smaller than its {k} tested p values")
    if k == 0:
        return out
    if method == "none":
        out[finite] = p[finite]
    elif method == "bonferroni":
        out[finite] = np.minimum(1.0, m * p[finite])
    else:
        order = finite[np.argsort(p[finite], kind="stable")]
        if method == "holm":
            out[order] = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(k)) * p[order]))
        else:
            steps = np.minimum(1.0, m * p[order] / np.arange(1, k + 1))
            out[order] = np.minimum.accumulate(steps[::-1])[::-1]
    return out
