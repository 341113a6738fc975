"""The numbers behind ``docs/findings.md``, computed from committed run stores.

``python -m cffbench.report.findings results/<study>`` prints one Markdown block per store;
``python -m cffbench.report.findings --update docs/findings.md`` recomputes, in place, every block
the page embeds between ``<!-- findings:<study>:begin [pilot=N] -->`` and
``<!-- findings:<study>:end -->`` from ``results/<study>``. A test recomputes the blocks from the
committed Parquet, so the page cannot drift from its data. The statistics are the
report's own (:func:`cffbench.report.statistics.analyze_variants`: the test the engine chose,
Holm-adjusted pairs, paired effect sizes), so a number in the findings is the number in the report.
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from cffbench.errors import CffbenchError
from cffbench.report import formatting as fmt
from cffbench.report.context import level_scope, level_selections
from cffbench.report.statistics import (POWER_DELTA, POWER_TARGET, DatasetStatistics,
                                        ablation_omnibus, analyze_variants, difference_text,
                                        effect_text)
from cffbench.report.store import json_list, load_inputs
from cffbench.report.tables import (ABLATION_AXES, VARIANT_LABEL, VARIANT_ORDER, describe_groups,
                                    main_configuration, select, varying_axes)
from cffbench.stats import detectable_difference

#: Marker lines around a generated block in a Markdown page.
BEGIN, END = "<!-- findings:{study}:begin -->", "<!-- findings:{study}:end -->"


def _label(variant: str, scope: str) -> str:
    return VARIANT_LABEL.get(variant, variant) + (f" ({scope})" if scope else "")


def _needed(value: float) -> str:
    return str(int(value)) if np.isfinite(value) else "undefined"


def _power_row(section: DatasetStatistics, a: str, b: str) -> dict:
    """The engine's power-table row of the pair ``a``/``b`` (n, SD of the difference, seeds)."""
    table = section.power_raw
    if table is None or table.empty:
        return {"n": 0, "diff_sd": math.nan, "seeds_needed": math.nan}
    hit = table[((table["A"] == a) & (table["B"] == b)) | ((table["A"] == b) & (table["B"] == a))]
    return hit.iloc[0].to_dict() if len(hit) else {"n": 0, "diff_sd": math.nan,
                                                    "seeds_needed": math.nan}


def _scopes(ok: pd.DataFrame, main: dict | None = None) -> list[
        tuple[str, list[str], pd.DataFrame, list[DatasetStatistics]]]:
    """(scope label, axes, runs, statistics) for the main configuration (axes: every varying
    ablation axis) and every other level of each ablation axis (axes: that one). ``main``
    defaults to the runs' own main configuration."""
    main = main_configuration(ok) if main is None else main
    ok_main = select(ok, main)
    main_label = ", ".join(f"{ABLATION_AXES.get(k, k)} = {v}" for k, v in main.items()
                           if k in ABLATION_AXES)
    main_axes = [k for k in main if k in ABLATION_AXES]
    out = [(main_label, main_axes, ok_main, analyze_variants(ok_main))]
    for axis, levels in varying_axes(ok).items():
        if axis not in ABLATION_AXES:
            continue
        for level, runs in level_selections(ok, axis, levels, main):
            scope = level_scope(axis, level)
            out.append((scope, [axis], runs, analyze_variants(runs, scope=scope)))
    return out


def comparison_rows(ok: pd.DataFrame, reference: str = "ff",
                    main: dict | None = None) -> pd.DataFrame:
    """Every variant against ``reference``, per dataset and scope, as the report tests them.

    Scopes are the main configuration and each other level of every ablation axis; at the
    latter, only variants that depend on the axis are listed (FF and BP would repeat).

    Returns
    -------
    DataFrame
        One row per (dataset, scope, variant): ``diff`` and its 95 % CI (fractions), ``effect``
        and CI with its ``effect_name`` (``d_z`` paired, ``g`` when the engine dropped the
        pairing), ``p_adj`` (Holm over the scope's pairs), ``prob_improvement``, and from the
        engine's power table ``n`` (seeds in the test), ``sd_diff`` and ``seeds_needed`` for
        :data:`POWER_DELTA` at power :data:`POWER_TARGET`; ``detectable``: the smallest
        difference this many seeds detect with that power (fraction); ``test``; ``problem``
        (why a dataset has no test, else empty).
    """
    rows = []
    for index, (scope, axes, runs, sections) in enumerate(_scopes(ok, main)):
        # away from the main configuration, only the variants that depend on the axis are new
        dependent = set(runs.loc[runs[axes].notna().any(axis=1), "variant"]) if axes else set()
        shown = set(runs["variant"]) if index == 0 else dependent
        for section in sections:
            raw = section.pairwise_raw
            if raw is None:   # say why instead of dropping the dataset without a word
                rows.append({"dataset": section.dataset, "variant": "", "scope": scope,
                             "problem": section.problem or "no pairwise test"})
                continue
            for r in raw[(raw["a"] == reference) & raw["b"].isin(shown)].itertuples(index=False):
                power = _power_row(section, reference, r.b)
                rows.append({"dataset": section.dataset, "variant": r.b,
                             "scope": scope if r.b in dependent else "",
                             "diff": r.diff, "diff_low": r.diff_low, "diff_high": r.diff_high,
                             "effect_name": r.effect_name, "effect": r.effect,
                             "effect_low": r.effect_low, "effect_high": r.effect_high,
                             "p_adj": r.p_adj, "prob_improvement": r.prob_improvement,
                             "n": int(power["n"]), "sd_diff": float(power["diff_sd"]),
                             "seeds_needed": _needed(float(power["seeds_needed"])),
                             "detectable": detectable_difference(
                                 float(power["diff_sd"]), int(power["n"]), power=POWER_TARGET,
                                 paired=r.effect_name == "d_z"),
                             "test": r.test, "problem": ""})
    return pd.DataFrame(rows)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _protocol(ok: pd.DataFrame) -> str:
    def one(column: str) -> str:
        return "/".join(sorted({str(v) for v in ok[column].dropna()}, key=str))

    return (f"datasets {one('dataset')}; n_train {one('n_train')}; hidden {one('hidden')}; "
            f"{one('epochs_per_layer')} full-batch epochs per layer; lr {one('lr')}; "
            f"threshold {one('threshold')}; schedule {one('schedule')}; "
            f"{ok['seed'].nunique()} seeds")


def accuracy_rows(ok: pd.DataFrame) -> list[list[str]]:
    """Mean ± SD, 95 % CI, n and the mean final γ (over layers and seeds; CFF variants only) per
    dataset × condition (variant and every varying axis)."""
    axes = [a for a in varying_axes(ok) if a in ABLATION_AXES]
    frame = ok.assign(**{a: ok[a].fillna("—") for a in axes})
    desc = describe_groups(frame, ["dataset", "variant", *axes])
    gamma = (frame.groupby(["dataset", "variant", *axes], sort=False)["gamma_final"].mean()
             if "gamma_final" in frame.columns else pd.Series(dtype=float))
    dataset_rank = {d: i for i, d in enumerate(dict.fromkeys(ok["dataset"]))}
    variant_rank = {v: i for i, v in enumerate(VARIANT_ORDER)}
    records = sorted(desc.to_dict("records"), key=lambda r: (
        dataset_rank.get(r["dataset"], 99), variant_rank.get(r["variant"], 99),
        *[str(r[a]) for a in axes]))
    rows = []
    for r in records:
        scope = ", ".join(f"{ABLATION_AXES[a]} {r[a]}" for a in axes if r[a] != "—")
        key = (r["dataset"], r["variant"], *[r[a] for a in axes])
        rows.append([r["dataset"], _label(r["variant"], scope),
                     f"{fmt.pct(r['mean'])} ± {fmt.pct(r['std'])}",
                     f"[{fmt.pct(r['ci_low'])}, {fmt.pct(r['ci_high'])}]", str(r["n"]),
                     fmt.num(gamma.get(key, np.nan))])
    return rows


def note_rows(runs: pd.DataFrame) -> list[list[str]]:
    """One row per (note, dataset, condition) with the number of runs and their seeds, for notes
    that only some runs of a condition carry (e.g. a collapsed layer); notes every run of the
    condition carries (e.g. the depth-2 α remark) describe the condition, not an event, and are
    left out."""
    if "notes" not in runs.columns:
        return []
    axes = [a for a in varying_axes(runs) if a in ABLATION_AXES]
    counted: dict[tuple, list[int]] = {}
    per_condition: dict[tuple, int] = {}
    for r in runs.to_dict("records"):
        scope = ", ".join(f"{ABLATION_AXES[a]} {r[a]}" for a in axes if pd.notna(r[a]))
        condition = (r["dataset"], _label(r["variant"], scope))
        per_condition[condition] = per_condition.get(condition, 0) + 1
        for note in json_list(r["notes"]):
            counted.setdefault((str(note), *condition), []).append(int(r["seed"]))
    return [[note, dataset, condition, f"{len(seeds)} of {per_condition[(dataset, condition)]}",
             ", ".join(map(str, sorted(seeds)))]
            for (note, dataset, condition), seeds in sorted(counted.items())
            if len(seeds) < per_condition[(dataset, condition)]]


def _or_undefined(text: str) -> str:
    return text or "undefined"


def _comparison_cells(comparisons: pd.DataFrame) -> list[list[str]]:
    cells = []
    for r in comparisons.itertuples(index=False):
        if r.problem:
            cells.append([r.dataset, f"({r.scope})" if r.scope else "", r.problem,
                          *[""] * 8])
            continue
        cells.append([
            r.dataset, f"{_label(r.variant, r.scope)} − FF", difference_text(r), effect_text(r),
            fmt.p_cell(r.p_adj) or "undefined", _or_undefined(fmt.apa_decimal(r.prob_improvement, 2)),
            _or_undefined(fmt.num(100 * r.sd_diff)), r.seeds_needed, str(r.n),
            _or_undefined(fmt.num(100 * r.detectable)), r.test])
    return cells


def findings_block(results_dir: Path | str, pilot_seeds: int = 0) -> str:
    """The Markdown block of one store: protocol, accuracies, comparisons with FF, omnibus tests
    of each ablation axis and, with ``pilot_seeds``, the seeds-needed estimate of a pilot made of
    the first ``pilot_seeds`` seeds."""
    inputs = load_inputs(results_dir)
    runs = inputs.runs
    ok = runs[(runs["status"] == "ok") & runs["test_acc"].notna()]
    if ok.empty:
        raise CffbenchError(f"{results_dir}: no finished run, so there are no findings to compute")
    counts = runs["status"].value_counts()
    lines = [f"Study `{inputs.study_name}` ({len(runs)} runs stored: "
             f"{int(counts.get('ok', 0))} ok, {int(counts.get('diverged', 0))} diverged, "
             f"{int(counts.get('failed', 0))} failed). Protocol: {_protocol(ok)}.", "",
             "Test accuracy [%]:", ""]
    lines += _table(["dataset", "condition", "mean ± SD", "95 % CI", "n", "final γ (mean)"],
                    accuracy_rows(ok))
    notes = note_rows(runs)
    if notes:
        lines += ["", "Notes the engine attached to some runs of a condition:", ""]
        lines += _table(["note", "dataset", "condition", "runs", "seeds"], notes)
    main = main_configuration(ok)
    comparisons = comparison_rows(ok, main=main)
    if not comparisons.empty:
        lines += ["", "Each variant minus FF (p Holm-adjusted over all pairs of variants at that "
                  "configuration; effect size d_z when the engine paired the runs by seed, Hedges "
                  "g when it could not; seeds needed: two-sided t-test at .05 with power "
                  f"{POWER_TARGET:.1f} to detect {100 * POWER_DELTA:.1f} pp, given the observed "
                  "SD of the differences; n: seeds in the test; detectable: the smallest "
                  "difference n seeds detect with that power):", ""]
        lines += _table(["dataset", "comparison", "difference [pp] (95 % CI)",
                         "effect size (95 % CI)", "p_adj", "P(improvement)", "SD of diff. [pp]",
                         "seeds needed", "n", "detectable with n [pp]", "test"],
                        _comparison_cells(comparisons))
    for axis in (a for a in varying_axes(ok) if a in ABLATION_AXES):
        subset = select(ok, {k: v for k, v in main.items() if k != axis})
        for table in ablation_omnibus(subset[subset[axis].notna()], axis, ABLATION_AXES[axis]):
            lines += ["", f"{table.caption}:", ""] + _table(table.columns, table.rows)
    if pilot_seeds:
        pilot = ok[ok["seed"].isin(sorted(ok["seed"].unique())[:pilot_seeds])]
        rows = comparison_rows(pilot, main=main)
        lines += ["", f"Pilot (the first {pilot_seeds} seeds of this store): SD of the "
                  f"differences and the seeds needed to detect {100 * POWER_DELTA:.1f} pp:", ""]
        lines += _table(["dataset", "comparison", "SD of diff. [pp]", "seeds needed", "n"],
                        [[r.dataset, f"{_label(r.variant, r.scope)} − FF",
                          _or_undefined(fmt.num(100 * r.sd_diff)), r.seeds_needed, str(r.n)]
                         for r in rows.itertuples(index=False) if not r.problem])
    return "\n".join(lines) + "\n"


def embedded_blocks(page: str) -> dict[str, tuple[int, str]]:
    """The generated blocks of a Markdown page: ``{study: (pilot_seeds, text)}``."""
    return {m.group("study"): (int(m.group("pilot") or 0), m.group("text"))
            for m in _BLOCK.finditer(page)}


_BLOCK = re.compile(r"<!-- findings:(?P<study>\S+):begin(?: pilot=(?P<pilot>\d+))? -->\n"
                    r"(?P<text>.*?)<!-- findings:(?P=study):end -->", re.S)


def block(results_dir: Path | str, pilot_seeds: int = 0) -> str:
    """One block with its markers (``pilot=N`` recorded in the begin marker)."""
    name = load_inputs(results_dir).study_name
    begin = BEGIN.format(study=name)
    if pilot_seeds:
        begin = begin.replace(" -->", f" pilot={pilot_seeds} -->")
    return f"{begin}\n{findings_block(results_dir, pilot_seeds)}{END.format(study=name)}"


def update_page(page_path: Path | str, results_root: Path | str = "results") -> list[str]:
    """Recompute every block of a Markdown page from ``results_root/<study>``; returns the studies."""
    path = Path(page_path)
    try:
        page = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CffbenchError(f"cannot read {path}: {exc.strerror}") from None
    found = embedded_blocks(page)
    if not found:
        raise CffbenchError(f"{path}: no <!-- findings:<study>:begin --> block to update")
    page = _BLOCK.sub(lambda m: block(Path(results_root) / m.group("study"),
                                      int(m.group("pilot") or 0)), page)
    path.write_text(page, encoding="utf-8")
    return list(found)


def main(argv: list[str]) -> int:
    """``RESULTS_DIR... [--pilot N]``: print the blocks; ``--update PAGE``: rewrite a page's."""
    pilot, paths, page = 0, [], None
    args = iter(argv)
    for arg in args:
        if arg == "--pilot":
            pilot = int(next(args))
        elif arg == "--update":
            page = next(args)
        else:
            paths.append(arg)
    try:
        if page is not None:
            print(f"updated {', '.join(update_page(page))} in {page}")
        for path in paths:
            print(block(path, pilot))
    except CffbenchError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
