"""Per-group descriptive statistics with t-based and bootstrap confidence intervals."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from cffbench.errors import StatsError
from cffbench.stats.inputs import as_factor_list, check_frame

DESCRIBE_COLUMNS = ["n", "mean", "std", "sem", "ci_low", "ci_high", "median", "iqm",
                    "boot_low", "boot_high"]


def describe(data: pd.DataFrame, dv: str, by: str | Sequence[str] | None = None, *,
             confidence: float = 0.95, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Describe ``dv`` per group.

    Parameters
    ----------
    data : DataFrame, long format (one row per run).
    dv : column with the dependent variable.
    by : grouping column(s); ``None`` describes all rows as one group.
    confidence : level of both intervals.
    n_boot : bootstrap resamples.
    seed : seed of the ``numpy.random.Generator`` used by the bootstrap; the same seed gives
        identical intervals. Each group gets its own generator seeded by ``(seed, group index)``.

    Returns
    -------
    DataFrame, one row per group: the ``by`` columns, then

    - ``n``: number of finite observations;
    - ``mean``, ``std`` (ddof = 1), ``sem`` = std / sqrt(n);
    - ``ci_low``, ``ci_high``: mean -/+ t_{(1+c)/2, n-1} * sem;
    - ``median``; ``iqm``: interquartile mean, the mean of the middle 50 % (``trim_mean(x, .25)``,
      rliable's robust aggregate);
    - ``boot_low``, ``boot_high``: percentile bootstrap interval of the mean
      (``scipy.stats.bootstrap``, ``n_boot`` resamples).

    With n = 1, ``std``, ``sem`` and all intervals are NaN (undefined); a constant group has a
    zero-width interval.
    """
    groups = as_factor_list(by, "by")
    frame = check_frame(data, dv, groups)
    if not 0 < confidence < 1:
        raise StatsError(f"confidence must be in (0, 1), got {confidence}")
    rows = []
    grouped = frame.groupby(groups, sort=True, dropna=False, observed=True) if groups else [((), frame)]
    for index, (key, part) in enumerate(grouped):
        key = key if isinstance(key, tuple) else (key,)
        values = part[dv].to_numpy(dtype=float)
        rng = np.random.default_rng([seed, index])
        rows.append({**dict(zip(groups, key)), **describe_values(values, confidence, n_boot, rng)})
    return pd.DataFrame(rows, columns=[*groups, *DESCRIBE_COLUMNS])


def describe_values(values: np.ndarray, confidence: float = 0.95, n_boot: int = 2000,
                    rng: np.random.Generator | None = None) -> dict:
    """The :func:`describe` statistics of one 1-D sample ``values`` (shape (n,))."""
    n = values.size
    mean = float(np.mean(values))
    out = dict.fromkeys(DESCRIBE_COLUMNS, np.nan)
    out.update(n=n, mean=mean, median=float(np.median(values)),
               iqm=float(sps.trim_mean(values, 0.25)))
    if n < 2:
        return out
    std = float(np.std(values, ddof=1))
    sem = std / np.sqrt(n)
    out.update(std=std, sem=sem)
    if sem == 0.0:
        out.update(ci_low=mean, ci_high=mean, boot_low=mean, boot_high=mean)
        return out
    half = sps.t.ppf((1 + confidence) / 2, n - 1) * sem
    out.update(ci_low=mean - half, ci_high=mean + half)
    boot = sps.bootstrap((values,), np.mean, n_resamples=n_boot, confidence_level=confidence,
                         method="percentile", rng=rng if rng is not None else np.random.default_rng(0))
    out.update(boot_low=float(boot.confidence_interval.low),
               boot_high=float(boot.confidence_interval.high))
    return out


def mean_ci(data: pd.DataFrame, by: list[str], dv: str, confidence: float = 0.95) -> pd.DataFrame:
    """Mean, std and t-based CI of ``dv`` per group, groups in order of first appearance (null
    keys kept); the quick form of :func:`describe` (no bootstrap, no median), for many groups.

    ``ci = mean ± t_{(1+c)/2, n-1} · std / sqrt(n)``; std and CI are NaN for ``n = 1``.

    Returns
    -------
    DataFrame
        Columns ``*by, n, mean, std, ci_low, ci_high``, one row per group.
    """
    grouped = data.groupby(by, sort=False, dropna=False)[dv]
    out = grouped.agg(n="count", mean="mean", std="std").reset_index()
    out.loc[out["n"] < 2, "std"] = np.nan
    dof = (out["n"] - 1).where(out["n"] > 1)
    half = sps.t.ppf((1 + confidence) / 2, dof) * out["std"] / np.sqrt(out["n"])
    out["ci_low"], out["ci_high"] = out["mean"] - half, out["mean"] + half
    return out[[*by, "n", "mean", "std", "ci_low", "ci_high"]]
