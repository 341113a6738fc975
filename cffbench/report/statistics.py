"""The omnibus tests and diagnostics of the report: :func:`cffbench.stats.compare` per dataset on
the parametric path fixed in advance, without pairs (the pairs are the analysis plan's,
:mod:`cffbench.report.plan_section`); this module formats its tables, sentences and warnings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cffbench.errors import CffbenchError
from cffbench import fmt
from cffbench.report.tables import VARIANT_ORDER, Table, frame_table
from cffbench.stats import compare

#: Omnibus tables ``compare`` may produce (``Comparison.path`` names the one it chose).
OMNIBUS_TABLES = ("rm_anova", "friedman", "anova", "welch_anova", "kruskal")
OMNIBUS_LABEL = {"rm_anova": "repeated-measures ANOVA", "friedman": "Friedman test",
                 "anova": "ANOVA", "welch_anova": "Welch ANOVA", "kruskal": "Kruskal-Wallis test"}
#: compare() needs a delta and power; with pairs=False it computes no power line from them.
POWER_DELTA = 0.012
#: Readable headers for the engine's omnibus columns.
COLUMN_LABEL = {"source": "effect", "ddof1": "df1", "ddof2": "df2", "ddof": "df", "DF": "df",
                "p_unc": "p", "np2": "ηp²", "omega2": "ω²", "eps": "ε (GG)", "p_gg": "p (GG)",
                "eps_hf": "ε (HF)", "p_hf": "p (HF)",
                "W_mauchly": "Mauchly W", "p_mauchly": "p (Mauchly)", "SS_error": "SS error",
                "kendall_w": "Kendall W", "note": "note"}
POWER_TARGET = 0.8


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
        return str(int(round(value))) if abs(value - round(value)) < 1e-9 else f"{value:.2f}"
    if name in ("np2", "omega2", "eps", "eps_hf", "kendall_w", "w_mauchly"):
        return fmt.apa_decimal(value)
    if name.startswith("ss") or name == "ms":
        return f"{value:.3g}"
    return fmt.num(value)


def omnibus_table(dataset: str, name: str, frame: pd.DataFrame) -> Table:
    """An engine omnibus table (one row per effect) with APA number formats; empty columns go."""
    frame = frame.dropna(axis=1, how="all")
    frame = frame.loc[:, [c for c in frame.columns if not (frame[c].astype(str) == "").all()]]
    shown = pd.DataFrame({COLUMN_LABEL.get(c, c): [_cell(c, v) for v in frame[c]]
                          for c in frame.columns})
    return frame_table(f"omnibus_{dataset}", f"{dataset}: {OMNIBUS_LABEL.get(name, name)}", shown)


def analyze_dataset(dataset: str, runs: pd.DataFrame, scope: str = "",
                    scope_key: str = "") -> DatasetStatistics:
    """Compare the variants of one dataset (finished runs of the main configuration).

    ``scope`` names another configuration the runs were selected at (e.g. ``"θ placement =
    single"``) for the table captions; ``scope_key`` (e.g. ``"theta_placement_single"``) extends
    the table keys, which must stay unique in a report.
    """
    section = DatasetStatistics(dataset, scope=scope)
    # The engine's pairs and sentences follow the level order: give it the report's (baseline
    # first, ff as the reference), so the APA sentences read like the tables ("A-CFF − FF").
    present = set(runs["variant"])
    order = [v for v in VARIANT_ORDER if v in present] + sorted(present - set(VARIANT_ORDER))
    ordered = runs.assign(variant=pd.Categorical(runs["variant"], categories=order, ordered=True))
    try:
        result = compare(ordered, "test_acc", factors="variant", subject="seed",
                         delta=POWER_DELTA, power=POWER_TARGET,
                         reference="ff" if "ff" in present else None, pretest=False, pairs=False)
    except CffbenchError as exc:
        section.problem = f"no statistics: {' '.join(str(exc).split())}"
        section.warnings.append(section.problem)
        return section
    except (ArithmeticError, ValueError, np.linalg.LinAlgError) as exc:
        # a numerical failure inside the engine is a bug there; the rest of the report still
        # stands, and the reader is told the tests are missing and why
        section.problem = (f"statistics engine failed ({type(exc).__name__}: "
                           f"{' '.join(str(exc).split())}); no tests for this dataset")
        section.warnings.append(section.problem)
        return section
    section.trail = [f"{d.step[:1].upper()}{d.step[1:]}: {d.choice}, because {d.reason}."
                     for d in result.decisions]
    omnibus = result.tables.get(result.path)  # the route the engine took names its table
    key = f"{dataset}_{scope_key}" if scope_key else dataset
    if result.path in OMNIBUS_TABLES and omnibus is not None and not omnibus.empty:
        section.omnibus = _scoped(omnibus_table(key, result.path, omnibus), key, dataset, scope)
    section.sentences = list(result.apa)
    section.warnings = list(result.warnings)
    return section


def _scoped(table: Table, key: str, dataset: str, scope: str) -> Table:
    """Caption "<dataset> at <scope>: …" for a comparison made away from the main configuration."""
    if scope:
        table.caption = table.caption.replace(f"{key}:", f"{dataset} at {scope}:", 1)
    return table


def analyze_variants(ok_main: pd.DataFrame, scope: str = "",
                     scope_key: str = "") -> list[DatasetStatistics]:
    """Compare the variants of every dataset in ``ok_main`` (finished runs, main configuration,
    or the configuration ``scope`` names; see :func:`analyze_dataset`)."""
    return [analyze_dataset(d, ok_main[ok_main["dataset"] == d], scope, scope_key)
            for d in dict.fromkeys(ok_main["dataset"])]


def ablation_omnibus(runs: pd.DataFrame, axis: str, axis_label: str) -> list[Table]:
    """Per dataset, the engine's omnibus table of ``variant × axis`` (two-way when both vary);
    datasets whose design the engine cannot test are skipped (their describe-only path)."""
    tables = []
    for dataset, group in runs.groupby("dataset", sort=False):
        try:
            result = compare(group, "test_acc", factors=["variant", axis], subject="seed",
                             delta=POWER_DELTA, power=POWER_TARGET, pretest=False, pairs=False)
        except (CffbenchError, ArithmeticError, ValueError, np.linalg.LinAlgError):
            continue
        omnibus = result.tables.get(result.path)
        if result.path in OMNIBUS_TABLES and omnibus is not None and not omnibus.empty:
            table = omnibus_table(f"{dataset}_{axis}", result.path, omnibus)
            table.caption = (f"{dataset}: {OMNIBUS_LABEL.get(result.path, result.path)} of "
                             f"variant × {axis_label}")
            table.note = " ".join(f"{d.step}: {d.choice}." for d in result.decisions)
            tables.append(table)
    return tables
