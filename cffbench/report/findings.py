"""The numbers behind ``docs/findings.md``, computed from committed run stores.

``python -m cffbench.report.findings results/<study>`` prints one Markdown block per store;
``python -m cffbench.report.findings --update docs/findings.md`` recomputes, in place, every block
the page embeds between ``<!-- findings:<study>:begin -->`` and
``<!-- findings:<study>:end -->`` from ``results/<study>``. A test recomputes the blocks from the
committed Parquet, so the page cannot drift from its data. Every number is the saved analysis's
(:func:`cffbench.analysis.load_or_analyze_all`: descriptives, contrasts, pilot, omnibus tests),
rendered by the cells the report uses (:mod:`cffbench.analysis.render`), so a number in the
findings is the number in the report, and nothing here computes a statistic.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from cffbench.errors import CffbenchError
from cffbench import fmt
from cffbench.analysis import load_or_analyze_all
from cffbench.analysis import render as plan_render
from cffbench.report.statistics import saved_section
from cffbench.report.store import json_list, load_inputs
from cffbench.report.tables import ABLATION_AXES, VARIANT_LABEL, VARIANT_ORDER, varying_axes

#: Marker lines around a generated block in a Markdown page.
BEGIN, END = "<!-- findings:{study}:begin -->", "<!-- findings:{study}:end -->"


def _label(variant: str, scope: str) -> str:
    return VARIANT_LABEL.get(variant, variant) + (f" ({scope})" if scope else "")


def _needed(value: float) -> str:
    return str(int(value)) if np.isfinite(value) else "undefined"


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


def accuracy_rows(desc: pd.DataFrame, datasets: list[str]) -> list[list[str]]:
    """Mean ± SD, 95 % CI, n and the mean final γ (over layers and seeds; CFF variants only) per
    condition, from the saved analysis's descriptives (``PlanResult.descriptives``: dataset,
    variant and every varying axis), in the order of ``datasets``, variants in the report's."""
    axes = [a for a in ABLATION_AXES if a in desc.columns]
    dataset_rank = {d: i for i, d in enumerate(datasets)}
    variant_rank = {v: i for i, v in enumerate(VARIANT_ORDER)}

    def level(value) -> str:
        return "—" if pd.isna(value) else str(value)

    records = sorted(desc.to_dict("records"), key=lambda r: (
        dataset_rank.get(r["dataset"], 99), variant_rank.get(r["variant"], 99),
        *[level(r[a]) for a in axes]))
    rows = []
    for r in records:
        scope = ", ".join(f"{ABLATION_AXES[a]} {r[a]}" for a in axes if pd.notna(r[a]))
        rows.append([r["dataset"], _label(r["variant"], scope),
                     f"{fmt.pct(r['mean'])} ± {fmt.pct(r['std'])}",
                     f"[{fmt.pct(r['ci_low'])}, {fmt.pct(r['ci_high'])}]", str(r["n"]),
                     fmt.num(r["gamma_final_mean"])])
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


def findings_block(results_dir: Path | str) -> str:
    """The Markdown block of one store, every number from its saved analysis
    (:func:`cffbench.analysis.load_or_analyze_all`): protocol, accuracies, the plan's verdicts and
    contrasts, omnibus tests of each ablation axis and, when the plan declares ``pilot_seeds``,
    the seeds-needed estimate of that pilot."""
    inputs = load_inputs(results_dir)
    runs = inputs.runs
    ok = runs[(runs["status"] == "ok") & runs["test_acc"].notna()]
    if ok.empty:
        raise CffbenchError(f"{results_dir}: no finished run, so there are no findings to compute")
    result, omnibus = load_or_analyze_all(results_dir)
    counts = runs["status"].value_counts()
    lines = [f"Study `{inputs.study_name}` ({len(runs)} runs stored: "
             f"{int(counts.get('ok', 0))} ok, {int(counts.get('diverged', 0))} diverged, "
             f"{int(counts.get('failed', 0))} failed). Protocol: {_protocol(ok)}.", "",
             "Test accuracy [%]:", ""]
    lines += _table(["dataset", "condition", "mean ± SD", "95 % CI", "n", "final γ (mean)"],
                    accuracy_rows(result.descriptives, list(dict.fromkeys(ok["dataset"]))))
    notes = note_rows(runs)
    if notes:
        lines += ["", "Notes the engine attached to some runs of a condition:", ""]
        lines += _table(["note", "dataset", "condition", "runs", "seeds"], notes)
    lines += ["", plan_render.plan_sentence(result.plan), *plan_render.registration_lines(result), "",
              "Verdicts (primary contrasts):", ""]
    lines += [f"- {v}" for v in plan_render.verdict_lines(result)]
    for dataset in dict.fromkeys(result.contrasts["dataset"]):
        rows = result.contrasts[result.contrasts["dataset"] == dataset].to_dict("records")
        lines += ["", f"{dataset}: every contrast of the plan (p (Δ ≥ SESOI): minimum-effect test; "
                  "p (TOST): equivalence within ±margin; both unadjusted, the verdict uses their "
                  "adjusted values):", ""]
        lines += _table(plan_render.CONTRAST_COLUMNS, [plan_render.contrast_cells(r) for r in rows])
        lines += ["", f"{dataset}: effect sizes and seeds needed (P(improvement): share of seeds "
                  "on which the first variant beats the second, ties ½, Wilson 95 % interval; d_z "
                  "Hedges-corrected; seeds needed: paired t at α/m with power .8 to detect the "
                  "SESOI, 95 % range from the χ² interval of the SD):", ""]
        lines += _table(plan_render.EFFECT_COLUMNS, [plan_render.effect_cells(r) for r in rows])
    flagged = result.sensitivity[result.sensitivity["changes_decision"]]
    lines += ["", "Sensitivity tests that would change a decision:" if len(flagged) else
              "No sensitivity test (sign-flip permutation, Wilcoxon, t) changes a decision."]
    if len(flagged):
        lines += [""] + _table(["dataset", *plan_render.SENSITIVITY_COLUMNS],
                               [[r["dataset"], *plan_render.sensitivity_cells(r)]
                                for r in flagged.to_dict("records")])
    for axis in (a for a in varying_axes(ok) if a in ABLATION_AXES):
        for saved in (o for o in omnibus if o.factors[1:] == [axis]):
            table = saved_section(saved, ABLATION_AXES).omnibus
            if table is not None:
                lines += ["", f"{table.caption}:", ""] + _table(table.columns, table.rows)
    if result.plan.pilot_seeds:
        n_pilot = result.plan.pilot_seeds
        lines += ["", f"Pilot (the first {n_pilot} seeds of this store, [analysis] pilot_seeds): SD "
                  f"of the differences and the seeds needed to detect {fmt.pct(result.plan.sesoi, 1)} pp "
                  f"(95 % range; from {n_pilot} seeds an order of magnitude only):", ""]
        lines += _table(["dataset", "comparison", "at", "SD of diff. [pp]", "seeds needed [95 %]", "n"],
                        [[r["dataset"], r["label"], r["scope"] or "—",
                          _or_undefined(fmt.num(100 * r["sd_diff"])), plan_render.seeds_cell(r),
                          str(r["n"])] for r in result.pilot.to_dict("records")])
    return "\n".join(lines) + "\n"


def embedded_blocks(page: str) -> dict[str, str]:
    """The generated blocks of a Markdown page: ``{study: text}``."""
    return {m.group("study"): m.group("text") for m in _BLOCK.finditer(page)}


_BLOCK = re.compile(r"<!-- findings:(?P<study>\S+):begin -->\n"
                    r"(?P<text>.*?)<!-- findings:(?P=study):end -->", re.S)


def block(results_dir: Path | str) -> str:
    """One block with its markers."""
    name = load_inputs(results_dir).study_name
    return f"{BEGIN.format(study=name)}\n{findings_block(results_dir)}{END.format(study=name)}"


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
    page = _BLOCK.sub(lambda m: block(Path(results_root) / m.group("study")), page)
    path.write_text(page, encoding="utf-8")
    return list(found)


def main(argv: list[str]) -> int:
    """``RESULTS_DIR...``: print the blocks; ``--update PAGE``: rewrite a page's."""
    paths, page = [], None
    args = iter(argv)
    for arg in args:
        if arg == "--update":
            page = next(args)
        else:
            paths.append(arg)
    try:
        if page is not None:
            print(f"updated {', '.join(update_page(page))} in {page}")
        for path in paths:
            print(block(path))
    except CffbenchError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
