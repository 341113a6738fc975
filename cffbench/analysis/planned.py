"""The conditions a study plans, as the run rows the store will hold: what fixes the plan's
contrasts (and so each Holm family's size) before any run exists.

:func:`planned_runs` expands the study (:func:`cffbench.study.expand`) into one row per planned
run with the columns the store writes for it (``dataset, variant, seed`` and every axis column,
null where the variant ignores the parameter, exactly as :func:`cffbench.study.store.run_row`
writes them), so a contrast is formed from the plan even when none of its runs are stored yet.
"""

from __future__ import annotations

import hashlib

import pandas as pd

from cffbench.analysis.factors import AXIS_COLUMNS, fingerprint_axes  # grid-axis columns, from TrainConfig



def planned_runs(study) -> pd.DataFrame:
    """One row per run of ``expand(study)``: ``run_id, dataset, variant, seed`` and the
    :data:`AXIS_COLUMNS` (the store's values: ``hidden`` as "500-500", a parameter the variant
    ignores as None)."""
    from cffbench.study import expand

    rows = []
    for task in expand(study):
        row = {"run_id": task.run_id, "dataset": task.dataset, "variant": task.variant, "seed": task.seed}
        for name in AXIS_COLUMNS:
            if name == "hidden":
                row[name] = "-".join(str(h) for h in task.config.hidden)
            elif name == "n_train":
                row[name] = task.n_train
            else:
                row[name] = task.effective.get(name)
        rows.append(row)
    return pd.DataFrame(rows, columns=["run_id", "dataset", "variant", "seed", *AXIS_COLUMNS])


def varying_axes(frame: pd.DataFrame) -> list[str]:
    """The :data:`AXIS_COLUMNS` that take more than one non-null level in ``frame``."""
    return [c for c in AXIS_COLUMNS if c in frame.columns and frame[c].dropna().map(level_text).nunique() > 1]


def level_text(value) -> str:
    """A level as compared across the plan and the store: numbers by value (1000, 1000.0 and
    "1000" are one level), anything else as text."""
    try:
        return repr(float(str(value)))
    except ValueError:
        return str(value)


def conditions_fingerprint(planned: pd.DataFrame | None) -> str:
    """sha256 (12 hex digits) of the planned conditions (dataset, variant and axis levels), ""
    without a plan: a saved analysis made under another grid is stale."""
    if planned is None:
        return ""
    columns = ["dataset", "variant", *fingerprint_axes(planned)]
    text = planned[columns].astype(str).drop_duplicates().sort_values(columns).to_csv(index=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
