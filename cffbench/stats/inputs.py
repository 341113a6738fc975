"""Checks and reshapes shared by the statistics functions.

Every public function in :mod:`cffbench.stats` takes a long-format DataFrame (one row per
observation). The helpers here turn user mistakes (missing column, non-numeric dv, duplicated
subject x cell) into one-line :class:`~cffbench.errors.StatsError` messages, and build the
subject x cell matrix that the repeated-measures functions need.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cffbench.errors import StatsError

MISSING_LEVEL = "n/a"  # label for a null factor value (e.g. alpha of an ff run)


def as_factor_list(factors: str | Sequence[str] | None, name: str) -> list[str]:
    """Return ``factors`` as a list of column names (a single name becomes a one-item list)."""
    if factors is None:
        return []
    if isinstance(factors, str):
        return [factors]
    out = list(factors)
    if not all(isinstance(f, str) for f in out):
        raise StatsError(f"{name} must be a column name or a list of column names, got {factors!r}")
    return out


def check_frame(data: pd.DataFrame, dv: str, columns: Sequence[str]) -> pd.DataFrame:
    """Validate ``data`` and return the rows with a finite ``dv`` (columns ``[*columns, dv]``).

    Raises
    ------
    StatsError
        If ``data`` is not a DataFrame, a column is missing, ``dv`` is not numeric, or no row has
        a finite ``dv``.
    """
    if not isinstance(data, pd.DataFrame):
        raise StatsError(f"data must be a pandas DataFrame in long format, got {type(data).__name__}")
    wanted = [dv, *columns]
    missing = [c for c in dict.fromkeys(wanted) if c not in data.columns]
    if missing:
        raise StatsError(
            f"column(s) {missing} not in data; available: {sorted(map(str, data.columns))}")
    if not pd.api.types.is_numeric_dtype(data[dv]) or pd.api.types.is_bool_dtype(data[dv]):
        raise StatsError(f"dv column {dv!r} must be numeric, got dtype {data[dv].dtype}")
    frame = data.loc[:, list(dict.fromkeys(wanted))].copy()
    frame = frame[np.isfinite(frame[dv].to_numpy(dtype=float))]
    if frame.empty:
        raise StatsError(f"no rows with a finite {dv!r}: nothing to analyse")
    return frame


def level_labels(values: pd.Series) -> pd.Series:
    """Factor values as strings; null becomes ``"n/a"`` (ff / bp runs have no alpha).

    A categorical column keeps its category order (that is how callers order levels, e.g. the
    reference first); other columns become plain ``object`` strings.
    """
    def label(v) -> str:
        return MISSING_LEVEL if pd.isna(v) else v if isinstance(v, str) else _number_label(v)

    labels = values.astype(object).map(label).astype(object)
    if isinstance(values.dtype, pd.CategoricalDtype):
        categories = list(dict.fromkeys(label(c) for c in values.cat.categories))
        if (labels == MISSING_LEVEL).any() and MISSING_LEVEL not in categories:
            categories.append(MISSING_LEVEL)
        return pd.Series(pd.Categorical(labels, categories=categories), index=values.index, name=values.name)
    return labels


def _number_label(value) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def ordered_levels(labels: pd.Series) -> list[str]:
    """Levels in a stable order: categorical order if categorical, else sorted (numbers numerically)."""
    if isinstance(labels.dtype, pd.CategoricalDtype):
        return [str(c) for c in labels.cat.categories if (labels == c).any()]
    levels = list(dict.fromkeys(labels.tolist()))
    try:
        return sorted(levels, key=lambda v: (0, float(v), "") if _is_number(v) else (1, 0.0, str(v)))
    except TypeError:  # pragma: no cover - mixed unorderable objects
        return levels


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def subject_matrix(frame: pd.DataFrame, dv: str, cell: str, subject: str) -> pd.DataFrame:
    """Pivot to a subject x cell matrix of ``dv`` (rows: subjects, columns: cells, NaN = missing).

    Raises
    ------
    StatsError
        If a subject has more than one observation in a cell (the design is then not a block
        design; average the replicates first or add the varying column as a factor).
    """
    dup = frame.duplicated([subject, cell], keep=False)
    if dup.any():
        first = ", ".join(str(v) for v in frame.loc[dup, [subject, cell]].iloc[0].tolist())
        raise StatsError(
            f"{int(dup.sum())} rows share a {subject} x condition cell (e.g. {first}); add the column "
            f"that varies among them as a factor, or average the replicates first")
    wide = frame.assign(**{cell: frame[cell].astype(str)}).pivot(index=subject, columns=cell, values=dv)
    wide.columns = [str(c) for c in wide.columns]
    return wide


def complete_blocks(data: pd.DataFrame, dv: str, within: str | Sequence[str],
                    subject: str) -> tuple[pd.DataFrame, list]:
    """Keep only subjects observed in every within cell.

    Returns
    -------
    (kept, dropped) : the rows of complete subjects, and the list of dropped subject ids.
    """
    factors = as_factor_list(within, "within")
    frame = check_frame(data, dv, [*factors, subject])
    cells = frame[factors].astype(str).agg("\x1f".join, axis=1) if factors else pd.Series("", index=frame.index)
    n_cells = cells.nunique()
    per_subject = cells.groupby(frame[subject]).nunique()
    keep = per_subject.index[per_subject == n_cells]
    dropped = [s for s in per_subject.index if s not in set(keep)]
    return frame[frame[subject].isin(keep)], dropped
