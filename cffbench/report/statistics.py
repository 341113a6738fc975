"""The omnibus tests and diagnostics of the report, as ``cffbench analyze`` saved them
(:func:`cffbench.analysis.load_or_analyze_all`: :func:`cffbench.stats.compare` on the parametric
path fixed in advance, without pairs, which are the analysis plan's); this module only formats
their tables, sentences and warnings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from cffbench import fmt
from cffbench.report.tables import Table, frame_table

#: Omnibus tables ``compare`` may produce (``Comparison.path`` names the one it chose).
OMNIBUS_TABLES = ("rm_anova", "friedman", "anova", "welch_anova", "kruskal")
OMNIBUS_LABEL = {"rm_anova": "repeated-measures ANOVA", "friedman": "Friedman test",
                 "anova": "ANOVA", "welch_anova": "Welch ANOVA", "kruskal": "Kruskal-Wallis test"}
#: Readable headers for the engine's omnibus columns.
COLUMN_LABEL = {"source": "effect", "ddof1": "df1", "ddof2": "df2", "ddof": "df", "DF": "df",
                "p_unc": "p", "np2": "ηp²", "omega2": "ω²", "eps": "ε (GG)", "p_gg": "p (GG)",
                "eps_hf": "ε (HF)", "p_hf": "p (HF)",
                "W_mauchly": "Mauchly W", "p_mauchly": "p (Mauchly)", "SS_error": "SS error",
                "kendall_w": "Kendall W", "note": "note"}


#: The unit of an omnibus table's sums of squares: accuracies are analysed as fractions.
SS_NOTE = ("SS and MS are in squared units of the accuracy as a fraction "
           "(0.001 = 10 pp²).")


@dataclass
class DatasetStatistics:
    """The statistics of one dataset's variant comparison.

    Attributes
    ----------
    dataset : str
    trail : list of str
        The engine's decision trail in plain words (which test, and why).
    omnibus : Table or None
    sentences : list of str
        The engine's APA-style omnibus sentences (no pairs: those are the analysis plan's).
    warnings : list of str
        The engine's warnings (shown once, at the top of the report).
    problem : str
        Why there are no tests for this dataset (shown in its section); empty when there are.
    scope : str
        Empty for the main configuration; else the ablation level compared at, e.g.
        ``"θ placement = single"``.
    """

    dataset: str
    trail: list[str] = field(default_factory=list)
    omnibus: Table | None = None
    sentences: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problem: str = ""
    scope: str = ""


def _is_sum_of_squares(column: str) -> bool:
    """SS, SS_error, MS: the columns in squared accuracy units (:data:`SS_NOTE`)."""
    name = column.lower()
    return name.startswith("ss") or name == "ms"


def _cell(column: str, value) -> str:
    """Format one engine-table cell by what its column holds."""
    if isinstance(value, str) or value is None:
        return value or ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    name = column.lower()
    if name.startswith("p_") or name == "p":
        return fmt.p_cell(value)
    if name in ("ddof", "ddof1", "ddof2", "df", "dof", "n"):
        return fmt.df(value)
    if name in ("np2", "omega2", "eps", "eps_hf", "kendall_w", "w_mauchly"):
        return fmt.apa_decimal(value)
    if _is_sum_of_squares(column):
        return fmt.sig(value, 3)
    return fmt.num(value)


def omnibus_table(dataset: str, name: str, frame: pd.DataFrame) -> Table:
    """An engine omnibus table (one row per effect) with APA number formats; empty columns go."""
    frame = frame.dropna(axis=1, how="all")
    frame = frame.loc[:, [c for c in frame.columns if not (frame[c].astype(str) == "").all()]]
    shown = pd.DataFrame({COLUMN_LABEL.get(c, c): [_cell(c, v) for v in frame[c]]
                          for c in frame.columns})
    note = SS_NOTE if any(_is_sum_of_squares(c) for c in frame.columns) else ""
    return frame_table(f"omnibus_{dataset}", f"{dataset}: {OMNIBUS_LABEL.get(name, name)}", shown,
                       note=note)


def _trail(decisions) -> list[str]:
    return [f"{step[:1].upper()}{step[1:]}: {choice}, because {reason}." for step, choice, reason in decisions]


def saved_section(saved, axis_labels: dict[str, str]) -> DatasetStatistics:
    """One saved omnibus analysis of ``cffbench analyze`` (:class:`cffbench.analysis.SavedOmnibus`)
    as a report section: its trail, omnibus table, sentences and warnings, computed nothing here.

    The table key is ``omnibus_<dataset>`` for the one-factor analysis of a dataset and
    ``omnibus_<dataset>_<factor>`` for a crossing ``variant × <factor>``.
    """
    crossing = len(saved.factors) == 2
    scope = " × ".join(axis_labels.get(f, f) for f in saved.factors) if crossing else ""
    section = DatasetStatistics(saved.dataset, trail=_trail(saved.decisions), scope=scope,
                                sentences=list(saved.sentences), warnings=list(saved.warnings))
    if saved.table is None or saved.table_name not in OMNIBUS_TABLES or saved.table.empty:
        section.problem = "no omnibus test: " + next(
            (f"{c} ({r})" for step, c, r in saved.decisions if step == "design"), "descriptives only")
        return section
    key = saved.dataset + (f"_{saved.factors[1]}" if crossing else "")
    table = omnibus_table(key, saved.table_name, saved.table)
    label = OMNIBUS_LABEL.get(saved.table_name, saved.table_name)
    if crossing:
        table.caption = f"{saved.dataset}: {label} of {scope}"
    else:
        choice = next((c for step, c, _ in saved.decisions if step == "analysis plan"), "")
        table.caption = f"{saved.dataset}: {label}" + (f" ({choice})" if choice else "")
    section.omnibus = table
    return section
