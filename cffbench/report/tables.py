"""The report's tables: the paper table and the ablation tables, from the saved analysis's
per-condition descriptives (``PlanResult.descriptives``: nothing here computes a statistic
but the paper table's prediction interval, from those descriptives alone).

:class:`Table` is the formatted view that HTML and LaTeX both render, so the two renderings can
never disagree.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
import pandas as pd
from scipy import stats as sps

from cffbench import fmt
from cffbench.ff.goodness import DEAD_GOODNESS_TEXT

VARIANT_ORDER = ("ff", "f-cff", "a-cff", "bp")
VARIANT_LABEL = {"ff": "FF", "f-cff": "F-CFF", "a-cff": "A-CFF", "bp": "BP"}

#: ``TrainConfig`` defaults: the "main" configuration the paper table compares variants at when
#: the study varies an axis (falls back to the most frequent value when the default is absent).
MAIN_DEFAULTS = {
    "alpha": "uniform", "hidden": "500-500", "schedule": "sequential",
    "theta_placement": "per_term", "negatives": "fixed", "gamma": 1.0, "gamma_lr": 0.01,
    "gamma_optimizer": "sgd", "alpha_decay": 0.5, "epochs_per_layer": 1000, "lr": 0.03,
    "threshold": 2.0, "batch_size": 0, "precision": "fp32", "n_train": None,
    "goodness": "mean_squares", "train_eval_size": 10000,
}

#: Axes that get their own ablation section, with the label the report shows.
ABLATION_AXES = {"alpha": "α structure", "schedule": "schedule",
                 "theta_placement": "θ placement", "hidden": "depth (hidden units per layer)",
                 "goodness": "goodness function"}


@dataclass
class Table:
    """A formatted table, rendered identically to HTML and LaTeX.

    Attributes
    ----------
    key : str
        File stem for ``tables/<key>.tex`` and the HTML anchor.
    caption : str
    columns : list of str
    rows : list of list of str
        ``len(rows[i]) == len(columns)``.
    bold : set of (row, col)
        Cells to set in bold.
    note : str
        A line under the table.
    label_columns : int
        How many leading columns hold labels (left-aligned); the rest are numbers.
    text_columns : frozenset of int
        Columns after the labels that hold text, not numbers (``"not significant;
        inconclusive"``): left-aligned and free to wrap, where a number cell never breaks.
    """

    key: str
    caption: str
    columns: list[str]
    rows: list[list[str]]
    bold: set[tuple[int, int]] = field(default_factory=set)
    note: str = ""
    label_columns: int = 2
    text_columns: frozenset[int] = frozenset()

    def is_number(self, column: int) -> bool:
        """Whether cells of ``column`` hold numbers (right-aligned, never broken)."""
        return column >= self.label_columns and column not in self.text_columns


def condition_name(record: dict, axes) -> str:
    """A condition as the report names it: the variant's label and, in brackets, every level of
    ``axes`` the record sets (``"A-CFF (θ placement per_term)"``; ``"FF"`` where it sets none)."""
    where = ", ".join(f"{ABLATION_AXES.get(a, a)} {record[a]}" for a in axes if pd.notna(record[a]))
    return VARIANT_LABEL.get(record["variant"], record["variant"]) + (f" ({where})" if where else "")


def layer_health_table(per_run: pd.DataFrame, health: pd.DataFrame, axes: list[str]) -> Table | None:
    """The layers that went dead, one row per dataset × condition × layer with a dead run
    (:func:`cffbench.report.layer_health.layer_health`; the per-run counts from ``per_run``,
    :func:`~cffbench.report.layer_health.run_layer_health`); None when no layer went dead."""
    dead = health[health["runs_dead"] > 0]
    if dead.empty:
        return None
    keys = ["dataset", "variant", *axes, "layer"]
    columns = ["Dataset", "Condition", "Layer", "Runs dead at a logged epoch",
               "Dead logged epochs (seed: dead of logged)", "Dead at the end of its training",
               "Least max(G_pos, G_neg)"]
    rows = []
    for r in dead.to_dict("records"):
        mine = per_run[(per_run[keys].fillna("") == pd.Series(r)[keys].fillna("")).all(axis=1)]
        mine = mine.sort_values("seed")
        went = mine[mine["dead_epochs"] > 0]
        ended = mine[mine["dead_at_end"]]
        per_seed = "; ".join(f"{s}: {d} of {n}" for s, d, n in
                             went[["seed", "dead_epochs", "logged"]].itertuples(index=False))
        at_end = f"{r['dead_at_end']} of {r['runs']}" + (
            f" (seed {', '.join(map(str, ended['seed']))})" if len(ended) else "")
        rows.append([r["dataset"], condition_name(r, axes), str(r["layer"]),
                     f"{r['runs_dead']} of {r['runs']}", per_seed, at_end, fmt.sig(r["lowest"], 2)])
    note = (f"A layer is dead at a logged epoch when max(G_pos, G_neg) ≤ {DEAD_GOODNESS_TEXT} "
            "(mean goodness of the epoch's positives and negatives): (almost) every unit's ReLU "
            "is off for both, its logit is ≈ −θ for both, so it cannot tell them apart, and its "
            "gradient vanishes. Computed from the stored training curves (logged epochs only); "
            "the end is the layer's last logged epoch.")
    # the per-seed list grows with the seeds: text that wraps, not a number
    return Table("layer_health", "Layer health: layers that went dead during training", columns,
                 rows, note=note, label_columns=3, text_columns=frozenset({4, 5}))


def ordered_variants(values) -> list[str]:
    """Variants in the report's fixed order (unknown names last, alphabetically)."""
    values = set(values)
    return [v for v in VARIANT_ORDER if v in values] + sorted(values - set(VARIANT_ORDER))


def varying_axes(runs: pd.DataFrame) -> dict[str, list]:
    """Axes of :data:`MAIN_DEFAULTS` that take more than one non-null value in ``runs``."""
    axes = {}
    for axis in MAIN_DEFAULTS:
        if axis in runs.columns:
            levels = sorted(runs[axis].dropna().unique().tolist(), key=str)
            if len(levels) > 1:
                axes[axis] = levels
    return axes


def main_configuration(runs: pd.DataFrame) -> dict:
    """The level chosen for every varying axis: the ``TrainConfig`` default, else the mode."""
    chosen = {}
    for axis, levels in varying_axes(runs).items():
        default = MAIN_DEFAULTS[axis]
        if default in levels:
            chosen[axis] = default
        else:
            counts = runs[axis].value_counts()
            chosen[axis] = sorted(counts[counts == counts.max()].index.tolist(), key=str)[0]
    return chosen


def select(runs: pd.DataFrame, levels: dict) -> pd.DataFrame:
    """Rows whose axis values equal ``levels``; null cells (ff / bp collaboration axes) match
    every level because those runs do not depend on the axis."""
    mask = pd.Series(True, index=runs.index)
    for axis, level in levels.items():
        mask &= runs[axis].isna() | (runs[axis] == level)
    return runs[mask]


def load_paper_values() -> tuple[pd.DataFrame, dict]:
    """The published accuracies in ``paper_values.toml``.

    Returns
    -------
    values : DataFrame
        Columns ``dataset, variant, paper_acc`` (fraction), ``source, where``.
    source : dict
        The ``[source]`` table (citation, url).
    """
    text = resources.files("cffbench.report").joinpath("paper_values.toml").read_text()
    raw = tomllib.loads(text)
    values = pd.DataFrame([{"dataset": v["dataset"], "variant": v["variant"],
                            "paper_acc": v["test_acc_pct"] / 100.0, "source": v["source"],
                            "where": v.get("where", "")} for v in raw.get("value", [])])
    return values, raw.get("source", {})


def paper_comparison(desc: pd.DataFrame, paper: pd.DataFrame,
                     pairwise: pd.DataFrame | None, alpha_level: float = 0.05) -> pd.DataFrame:
    """Our descriptives beside the paper's values, with the bold-best flag.

    ``diff = mean − paper_acc``. The paper reports one run per value, so it is set against the
    95 % prediction interval of one new run of ours, not the CI of our mean:
    ``pi = mean ± t_{.975, n−1} · std · √(1 + 1/n)`` and ``paper_in_pi = pi_low <= paper_acc <=
    pi_high`` (NaN when either side is missing; the interval needs n ≥ 2). ``best`` marks, per
    dataset, the highest mean when it beats every other variant in the test's direction with
    adjusted p below ``alpha_level`` (never without a pairwise table).

    Parameters
    ----------
    desc : DataFrame
        The saved per-condition descriptives at one configuration (one row per dataset and
        variant): ``dataset, variant, n, mean, std, ci_low, ci_high``.
    paper : DataFrame
        :func:`load_paper_values`.
    pairwise : DataFrame or None
        Columns ``dataset, a, b, diff, p_adj`` with ``diff = mean_b − mean_a``.

    Returns
    -------
    DataFrame
        ``desc``'s columns plus ``paper_acc, diff, pi_low, pi_high, paper_in_pi, best``.
    """
    table = desc.merge(paper[["dataset", "variant", "paper_acc"]], on=["dataset", "variant"],
                       how="left") if not paper.empty else desc.assign(paper_acc=np.nan)
    table["diff"] = table["mean"] - table["paper_acc"]
    n = table["n"].astype(float).where(table["n"] >= 2)
    half = sps.t.ppf(0.975, n - 1) * table["std"] * np.sqrt(1 + 1 / n)
    table["pi_low"], table["pi_high"] = table["mean"] - half, table["mean"] + half
    inside = (table["paper_acc"] >= table["pi_low"]) & (table["paper_acc"] <= table["pi_high"])
    defined = table["paper_acc"].notna() & table["pi_low"].notna()
    table["paper_in_pi"] = inside.astype(object).where(defined, other=np.nan)
    table["best"] = False
    if pairwise is None or pairwise.empty:
        return table
    for dataset, group in table.groupby("dataset", sort=False):
        if len(group) < 2 or group["mean"].isna().all():
            continue
        top = group.loc[group["mean"].idxmax(), "variant"]
        pw = pairwise[(pairwise["dataset"] == dataset)
                      & ((pairwise["a"] == top) | (pairwise["b"] == top))]
        others = set(group["variant"]) - {top}
        covered = set(pw["a"]).union(pw["b"]) - {top}
        # "top better" must hold in the test's own direction too (diff is b − a)
        wins = ((pw["b"] == top) & (pw["diff"] > 0)) | ((pw["a"] == top) & (pw["diff"] < 0))
        if others <= covered and (pw["p_adj"] < alpha_level).all() and wins.all():
            table.loc[(table["dataset"] == dataset) & (table["variant"] == top), "best"] = True
    return table


def compared_at(comparison: pd.DataFrame) -> str:
    """The configuration the rows of ``comparison`` were taken at: every axis level they set
    (``"θ placement = per_term"``), empty when they set none."""
    levels = []
    for axis in (a for a in MAIN_DEFAULTS if a in comparison.columns):
        values = sorted({str(v) for v in comparison[axis] if pd.notna(v)})
        if values:
            levels.append(f"{ABLATION_AXES.get(axis, axis)} = {'/'.join(values)}")
    return ", ".join(levels)


def paper_table(comparison: pd.DataFrame, citation: str) -> Table:
    """Format :func:`paper_comparison` as the report's headline table; its caption names the
    configuration compared (:func:`compared_at`)."""
    columns = ["Dataset", "Variant", "Ours: mean ± std (n) [%]", "95 % CI [%]", "Paper [%]",
               "Ours − paper [pp]", "Paper in our 95 % PI"]
    rows, bold = [], set()
    for i, r in enumerate(comparison.itertuples(index=False)):
        in_pi = "" if pd.isna(r.paper_in_pi) else ("yes" if r.paper_in_pi else "no")
        rows.append([r.dataset, VARIANT_LABEL.get(r.variant, r.variant),
                     fmt.mean_sd_n(r.mean, r.std, r.n), fmt.ci(r.ci_low, r.ci_high),
                     fmt.pct(r.paper_acc), fmt.pp(r.diff), in_pi])
        if r.best:
            bold.add((i, 2))
    at = compared_at(comparison)
    note = (f"Paper values: {citation}; empty cells are values the paper does not report. "
            "CI: of our mean. PI: 95 % prediction interval of one new run of ours, "
            "mean ± t(.975, n − 1) · s · √(1 + 1/n), the check for a single published run. "
            "Bold: best variant of its dataset, significantly better than every other "
            "(adjusted p < .05)."
            + (f" Ours at {at}; variants without the setting ignore it." if at else ""))
    # kept short: one line in the PDF
    caption = ("Test accuracy per dataset and variant"
               + (f" at {at}" if at else ", beside the published values"))
    return Table("paper", caption, columns, rows, bold, note)


def ablation_table(desc: pd.DataFrame, axis: str, main: dict) -> Table:
    """Mean ± std (n) per dataset × variant × level of ``axis``, the other varying axes held at
    the main configuration; variants that ignore the axis are left out. ``desc``: the saved
    per-condition descriptives (``PlanResult.descriptives``)."""
    others = {k: v for k, v in main.items() if k != axis}
    subset = select(desc, others)
    subset = subset[subset[axis].notna()]
    levels = sorted(subset[axis].unique().tolist(), key=str)
    columns = ["Dataset", "Variant", *[f"{ABLATION_AXES.get(axis, axis)} = {lv}" for lv in levels]]
    rows = []
    for (dataset, variant), group in subset.groupby(["dataset", "variant"], sort=False):
        cells = {row[axis]: fmt.mean_sd_n(row["mean"], row["std"], row["n"])
                 for _, row in group.iterrows()}
        rows.append([dataset, VARIANT_LABEL.get(variant, variant),
                     *[cells.get(lv, "") for lv in levels]])
    held = ", ".join(f"{k} = {v}" for k, v in others.items()) or "nothing else varies"
    return Table(f"ablation_{axis}", f"Test accuracy [%] by {ABLATION_AXES.get(axis, axis)}",
                 columns, rows, note=f"Mean ± std (n seeds). Held fixed: {held}.")


def frame_table(key: str, caption: str, frame: pd.DataFrame, note: str = "",
                label_columns: int = 1) -> Table:
    """Any already-formatted frame (all cells strings) as a :class:`Table`."""
    rows = [["" if pd.isna(v) else str(v) for v in row] for row in frame.itertuples(index=False)]
    return Table(key, caption, [str(c) for c in frame.columns], rows, note=note,
                 label_columns=label_columns)
