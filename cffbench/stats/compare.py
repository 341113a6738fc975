"""The omnibus decision tree: pick the tests a design allows, run them, and record why.

``compare`` looks at the data (paired by seed or not, one or two factors, complete crossing or
not, assumptions met or not), runs the tables that apply and returns a :class:`Comparison` that
the report renders. Every choice is logged as a :class:`Decision` (step, choice, reason). The
result types live in :mod:`cffbench.stats.comparison`, the two branches in
:mod:`cffbench.stats.design_paths`; this module validates and orchestrates.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd

from cffbench.errors import StatsError
from cffbench.stats.comparison import Comparison, Decision, PowerLine, is_reference
from cffbench.stats.design_paths import between_path, power_line, within_path
from cffbench.stats.descriptives import describe
from cffbench.stats.inputs import as_factor_list, check_frame, level_labels, ordered_levels, subject_matrix

__all__ = ["Comparison", "Decision", "PowerLine", "compare", "is_reference"]

# Fewer complete seeds than this after dropping incomplete ones: the pairing is abandoned.
MIN_BLOCKS = 3


def _is_accuracy(dv: str, values: pd.Series) -> bool:
    return "acc" in dv.lower() and bool(values.between(0, 1).all())


def compare(data: pd.DataFrame, dv: str, factors: str | Sequence[str], subject: str | None = "seed",
            alpha: float = 0.05, *, delta: float = 0.012, power: float = 0.8,
            reference: str | None = None, as_percent: bool | None = None, seed: int = 0,
            posthoc_pairs: str = "all", simple_effects: str = "first", pretest: bool = False,
            pairs: bool = True) -> Comparison:
    """Choose and run the analysis that fits the design, recording each choice and its reason.

    Parameters
    ----------
    data : long format, one row per run.
    dv : the dependent variable (accuracy as a fraction in [0, 1]).
    factors : the columns that define the conditions (one, two, or more: more than two, or two
        whose crossing has empty cells, are analysed as one combined ``condition`` factor).
    subject : the blocking column; runs with the same subject share initial weights, data subset
        and negatives, so comparisons are paired. None or absent: between-subjects.
    alpha : level for the assumption checks and the omnibus-to-post-hoc decisions.
    delta : the difference the power line is about, in dv units (0.012 = the paper's 1.2 pp).
    power : target power of the power line.
    reference : a condition label (e.g. ``"ff"``): with one factor it becomes the first level, so
        every pair with it reads "condition − reference"; its pairs define the power line's SD.
    as_percent : render differences x100 in pp; None = when ``dv`` contains "acc" and lies in [0, 1].
    seed : seed of the descriptives' bootstrap.
    posthoc_pairs : ``"all"`` (every pair, Holm over all k(k-1)/2) or ``"reference"`` (one factor
        with a ``reference`` level: only the k - 1 pairs "condition − reference", Holm over those).
    simple_effects : after a significant two-way interaction, ``"first"`` (pairs of the first
        factor within each level of the second) or ``"both"`` (also the second factor within each
        level of the first; one Holm family per factor).
    pretest : False (default): the normality check is a diagnostic only and the parametric path
        is always taken (what ``cffbench analyze`` and the report use: a test chosen by a pre-test
        of the same data has no nominal error rate; Rochon et al. 2012). True (opt-in, kept for
        comparison): the check picks parametric or rank tests as in step 3.
    pairs : False: no post-hoc pairs, no pair sentences and no power line; the pairs are the
        analysis plan's (:mod:`cffbench.analysis`), decided once, and this result keeps the
        omnibus tests and the diagnostics.

    The path (see the decision trail of the result):

    1. factors with one level are dropped; none left -> descriptives only;
    2. paired when the subject occurs in several cells; seeds missing a cell are dropped if at
       least 3 complete blocks remain, otherwise the pairing is abandoned (between-subjects);
    3. within: Shapiro-Wilk on the paired differences (2 cells) or on the residuals of the
       subject + cell model (constancy judged against the raw data's scale), a diagnostic unless
       ``pretest``; RM-ANOVA, Greenhouse-Geisser when its epsilon is below .75 and Huynh-Feldt
       otherwise (Girden 1992; Mauchly reported), and paired t post-hoc tests (Holm). With
       ``pretest`` and normality rejected: Friedman (+ Wilcoxon, Holm) instead, unless the
       smallest Holm-adjusted Wilcoxon p, m * 2 / 2^n, is >= alpha (then the parametric path is
       kept with a warning);
    4. between: Levene + Shapiro on residuals; one factor -> Welch ANOVA (+ Tukey when variances
       are equal), or with ``pretest`` Kruskal-Wallis when not normal, Welch / Mann-Whitney post-hoc (Holm);
       two factors -> two-way ANOVA with interaction, then simple effects if it is significant;
    5. power line from the SD of paired differences (paired t), or of independent runs
       (two-sample t, seeds per condition) in a between design.
    """
    names = as_factor_list(factors, "factors")
    if not names:
        raise StatsError("compare needs at least one factor column (e.g. factors=['variant'])")
    if not 0 < alpha < 1:
        raise StatsError(f"alpha must be in (0, 1), got {alpha!r}")
    if posthoc_pairs not in ("all", "reference"):
        raise StatsError(f"posthoc_pairs must be 'all' or 'reference', got {posthoc_pairs!r}")
    if posthoc_pairs == "reference" and reference is None:
        raise StatsError("posthoc_pairs='reference' needs reference= (e.g. reference='ff')")
    if simple_effects not in ("first", "both"):
        raise StatsError(f"simple_effects must be 'first' or 'both', got {simple_effects!r}")
    use_subject = subject is not None and subject in data.columns
    frame = check_frame(data, dv, names + ([subject] if use_subject else []))
    if as_percent is None:
        as_percent = _is_accuracy(dv, frame[dv])
    result = Comparison(dv=dv, factors=[], subject=subject if use_subject else None, design="none",
                        path="describe", n_blocks=0, alpha=alpha, scale=100.0 if as_percent else 1.0,
                        unit=" pp" if as_percent else "")
    if len(frame) < len(data):
        result.warnings.append(f"{len(data) - len(frame)} row(s) without a finite {dv} left out")
    for name in names:
        frame[name] = level_labels(frame[name])
    active = [f for f in names if frame[f].nunique() > 1]
    for f in names:
        if f not in active:
            result.decide(f"factor {f}", "dropped", f"one level only ({frame[f].iloc[0]!r})")
    if len(active) == 2:
        cells = frame.groupby(active).size()
        expected = int(np.prod([frame[f].nunique() for f in active]))
        if len(cells) < expected:
            missing = sorted(set(pd.MultiIndex.from_product([ordered_levels(frame[f]) for f in active]))
                             - set(cells.index))
            shown = "; ".join(", ".join(m) for m in missing[:4]) + (", ..." if len(missing) > 4 else "")
            result.decide("design", "one factor 'condition' over the observed cells",
                          f"the {' x '.join(active)} crossing misses {len(missing)} cell(s): {shown}")
            active = _combine(frame, active)
    elif len(active) > 2:
        result.decide("design", "one factor 'condition' over the observed cells",
                      f"{len(active)} factors vary ({', '.join(active)}); the engine crosses at most two")
        active = _combine(frame, active)
    result.factors = active
    if reference is not None and len(active) == 1:
        _reference_first(frame, active[0], reference, result)
    result.tables["descriptives"] = describe(frame, dv, active or None, seed=seed)
    if not active:
        result.decide("design", "descriptives only", "one condition: nothing to compare")
        result.warnings.append("one condition only: nothing to compare")
        return result
    frame["cell"] = _cell_labels(frame, active)
    n_cells = frame["cell"].nunique()
    paired_frame = _pairing(frame, dv, subject if use_subject else None, n_cells, result)
    options = {"reference": reference if posthoc_pairs == "reference" else None,
               "both_simple_effects": simple_effects == "both", "pretest": pretest}
    if paired_frame is not None:
        within_path(paired_frame, dv, active, subject, result, **options)
    else:
        between_path(frame, dv, active, result, **options)
    if pairs:
        result.power = power_line(frame if paired_frame is None else paired_frame, dv,
                                  subject if paired_frame is not None else None, delta, power, alpha,
                                  reference, result)
    else:
        _drop_pairs(result)
    for name, table in result.tables.items():
        if "note" not in table or name == "assumptions":  # assumption checks are reported as decisions
            continue
        for _, row in table[table["note"].astype(str).str.startswith("undefined")].iterrows():
            label = row.get("source", None) or f"{row.get('B', '')} − {row.get('A', '')}"
            result.warnings.append(f"undefined test: {name} {label}: {row['note'].removeprefix('undefined: ')}")
    return result


def _drop_pairs(result: Comparison) -> None:
    """Remove the post-hoc pairs (tables, sentences, trail) from a result: the plan decides them."""
    for name in ("posthoc", "tukey"):
        result.tables.pop(name, None)
    result.apa = [s for s in result.apa if " − " not in s]
    result.decisions = [d for d in result.decisions if not d.step.startswith("post-hoc")]
    result.decide("pairs", "none here", "every pair is decided once, by the study's analysis plan "
                  "(contrasts.csv), with its one pre-specified test and family")


def _reference_first(frame: pd.DataFrame, factor: str, reference: str, result: Comparison) -> None:
    """Order the levels reference first, so every pair reads "condition − reference"."""
    levels = ordered_levels(frame[factor])
    first = [lv for lv in levels if is_reference(lv, reference)]
    if not first:
        return
    order = first + [lv for lv in levels if lv not in first]
    frame[factor] = pd.Categorical(frame[factor], categories=order)
    result.decide("level order", f"{', '.join(first)} first",
                  f"{reference} is the reference: each pair is reported as condition − {reference}")


def _cell_labels(frame: pd.DataFrame, active: list[str]) -> pd.Series:
    """One categorical label per cell, in level order (reference first, then the factors' order).

    A plain ``astype(str)`` would sort the cells alphabetically downstream, so pairs on the
    non-parametric path would read "ff − a-cff" instead of "a-cff − ff".
    """
    levels = [ordered_levels(frame[f]) for f in active]
    if len(active) == 1:
        labels, order = frame[active[0]].astype(str), levels[0]
    else:
        labels = frame[active].astype(str).agg(" / ".join, axis=1)
        order = [" / ".join(c) for c in itertools.product(*levels)]
    order = [c for c in order if (labels == c).any()]
    return pd.Series(pd.Categorical(labels, categories=order), index=frame.index, name="cell")


def _combine(frame: pd.DataFrame, active: list[str]) -> list[str]:
    frame["condition"] = frame[active].astype(str).agg(" / ".join, axis=1)
    return ["condition"]


def _pairing(frame: pd.DataFrame, dv: str, subject: str | None, n_cells: int,
             result: Comparison) -> pd.DataFrame | None:
    """Return the complete-block rows when a paired analysis is possible, else None."""
    if subject is None:
        result.decide("pairing", "between-subjects", "no subject column to pair runs")
        return None
    wide = subject_matrix(frame, dv, "cell", subject)
    observed = wide.notna().sum(axis=1)
    if (observed <= 1).all():
        result.decide("pairing", "between-subjects",
                      f"no {subject} occurs in more than one condition: nothing to pair")
        return None
    complete = wide.index[observed == n_cells]
    dropped = len(wide) - len(complete)
    if dropped == 0:
        result.decide("pairing", f"within-subjects, paired by {subject}",
                      f"all {len(complete)} {subject}s occur in all {n_cells} conditions; a {subject} "
                      f"fixes initial weights, data subset and negatives, so it is a block")
        return frame
    if len(complete) >= MIN_BLOCKS:
        kept = set(complete)
        missing = ", ".join(map(str, [s for s in wide.index if s not in kept][:6]))
        more = ", …" if dropped > 6 else ""
        result.decide("pairing", f"within-subjects on {len(complete)} complete {subject}s",
                      f"dropped {dropped} of {len(wide)} {subject}s that miss a condition "
                      f"({missing}{more})")
        result.warnings.append(f"{dropped} {subject}(s) miss a condition and were left out of the "
                               f"paired analysis: {subject} {missing}{more}")
        return frame[frame[subject].isin(complete)]
    result.decide("pairing", "between-subjects (pairing abandoned)",
                  f"only {len(complete)} of {len(wide)} {subject}s occur in every condition "
                  f"(< {MIN_BLOCKS}); analysing all runs as independent, which is conservative")
    result.warnings.append(f"too few complete {subject} blocks ({len(complete)}) for a paired analysis")
    return None
