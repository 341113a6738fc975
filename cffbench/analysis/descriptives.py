"""The descriptives of every condition, computed once by the analysis and saved with it
(``analysis/descriptives``); the report's tables and the findings select rows of it and
compute nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cffbench.stats.descriptives import mean_ci

#: The columns of :func:`condition_descriptives` after the condition's own.
DESCRIPTIVE_COLUMNS = ["n", "mean", "std", "ci_low", "ci_high", "gamma_final_mean"]


def condition_descriptives(ok: pd.DataFrame, axes: list[str], dv: str = "test_acc") -> pd.DataFrame:
    """:func:`cffbench.stats.descriptives.mean_ci` of ``dv`` per condition: ``dataset, variant``
    and every column of ``axes`` (a variant that ignores an axis has null there: one condition
    for all its levels), in the order of each condition's first run in ``ok``, plus
    ``gamma_final_mean``, the mean final γ (NaN where the runs have none).

    Returns
    -------
    DataFrame
        Columns ``dataset, variant, *axes, n, mean, std, ci_low, ci_high, gamma_final_mean``
        (accuracies as fractions), one row per condition.
    """
    by = ["dataset", "variant", *axes]
    if ok.empty:
        return pd.DataFrame(columns=[*by, *DESCRIPTIVE_COLUMNS])
    frame = ok.assign(gamma_final=ok["gamma_final"] if "gamma_final" in ok else np.nan)
    out = mean_ci(frame, by, dv)
    out["gamma_final_mean"] = frame.groupby(by, sort=False, dropna=False)["gamma_final"].mean().to_numpy()
    for axis in axes:   # text axes: null as None, never a float NaN beside strings (Parquet)
        if out[axis].dtype == object:
            out[axis] = out[axis].map(lambda v: None if pd.isna(v) else v).astype(object)
    return out[[*by, *DESCRIPTIVE_COLUMNS]]
