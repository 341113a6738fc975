"""The exploratory critical-difference summary beside the plan: average ranks of every condition
over the complete dataset × seed blocks, Wilcoxon–Holm pairs and cliques
(:mod:`cffbench.stats.ranks`)."""

from __future__ import annotations

import pandas as pd

from cffbench.analysis.plan import Plan
from cffbench.analysis.planned import varying_axes

#: The critical-difference summary needs at least this many conditions.
MIN_RANKED = 4


def _condition(row: dict, axes: list[str]) -> str:
    levels = ", ".join(f"{a} {row[a]}" for a in axes if pd.notna(row.get(a)))
    return row["variant"].upper() + (f" ({levels})" if levels else "")


def rank_summary(ok: pd.DataFrame, plan: Plan, dv: str) -> tuple[pd.DataFrame, pd.DataFrame, list[list[str]]]:
    """Average ranks of every condition over the complete (dataset, seed) blocks, Wilcoxon-Holm
    pairs and cliques (:mod:`cffbench.stats.ranks`); empty when there is too little to rank."""
    from cffbench.stats import ranks as R

    empty = (pd.DataFrame(columns=["condition", "avg_rank", "n_blocks"]),
             pd.DataFrame(columns=["a", "b", "p", "p_adj", "exact"]), [])
    if ok.empty:
        return empty
    axes = varying_axes(ok)
    frame = ok.assign(condition=[_condition(r, axes) for r in ok.to_dict("records")])
    wide = frame.pivot_table(index=["dataset", "seed"], columns="condition", values=dv, aggfunc="first")
    wide = wide.dropna()
    if wide.shape[1] < MIN_RANKED or wide.shape[0] < 2:
        return empty
    avg = R.average_ranks(wide)
    pairs = R.wilcoxon_holm(wide[list(avg.index)])
    ranks = pd.DataFrame({"condition": avg.index, "avg_rank": avg.to_numpy(), "n_blocks": wide.shape[0]})
    return ranks, pairs, R.cliques(list(avg.index), pairs, plan.alpha)

