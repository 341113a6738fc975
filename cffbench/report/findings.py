"""The numbers behind ``docs/findings.md``, computed from committed run stores.

``python -m cffbench.report.findings results/<study>`` prints one Markdown block per store;
``python -m cffbench.report.findings --update docs/findings.md`` recomputes, in place, every block
the page embeds between ``<!-- findings:<study>:begin -->`` and
``<!-- findings:<study>:end -->`` from ``results/<study>``. A test recomputes the blocks from the
committed Parquet, so the page cannot drift from its data. Every number is the saved analysis's
(:func:`cffbench.analysis.load_or_analyze_all`: descriptives, contrasts, pilot, omnibus tests),
rendered by the cells the report uses (:mod:`cffbench.analysis.render`), so a number in the
findings is the number in the report, and nothing here computes a statistic. The caveats the
report's "Read this first" carries travel with the block, in the report's words: how many of the
planned runs are stored and which seeds are incomplete blocks, the layers that went dead
(:func:`cffbench.report.layer_health.layer_health`, worded by
:func:`cffbench.report.context.dead_layers`), the floor of the exact tests at small n
(:func:`cffbench.report.context.reader_warnings`) and how each omnibus test was chosen (its saved
decisions).
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from cffbench.errors import CffbenchError
from cffbench import fmt
from cffbench.analysis import load_or_analyze_all
from cffbench.analysis import render as plan_render
from cffbench.analysis.planned import level_text
from cffbench.analysis.planned import varying_axes as analysis_axes
from cffbench.analysis.stored import store_planned
from cffbench.report.context import dead_layers, reader_warnings
from cffbench.report.layer_health import layer_health, run_layer_health
from cffbench.report.statistics import saved_section
from cffbench.report.store import ReportInputs, json_list, load_inputs
from cffbench.report.tables import (ABLATION_AXES, VARIANT_LABEL, VARIANT_ORDER, condition_name,
                                    layer_health_table, main_configuration, select, varying_axes)

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
            f"threshold {one('threshold')}; schedule {one('schedule')}")


def seed_list(seeds) -> str:
    """"0–3, 5": sorted seeds, runs of consecutive ones as ranges."""
    seeds, parts = sorted({int(s) for s in seeds}), []
    for s in seeds:
        if parts and s == parts[-1][1] + 1:
            parts[-1][1] = s
        else:
            parts.append([s, s])
    return ", ".join(str(a) if a == b else f"{a}{'–' if b > a + 1 else ', '}{b}" for a, b in parts)


def _key(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    # numbers by value (1000 and 1000.0 are one level), as the analysis compares plan and store
    text = frame[columns].apply(lambda col: col.map(lambda v: "" if pd.isna(v) else level_text(v)))
    return text.agg("|".join, axis=1) if columns else pd.Series("", index=frame.index)


def planned_status(runs: pd.DataFrame, planned: pd.DataFrame | None) -> pd.DataFrame:
    """The study's planned runs with the status of their stored run.

    Parameters
    ----------
    runs : DataFrame
        The stored run rows (every status): ``dataset, variant, seed, status, test_acc`` and the
        axis columns.
    planned : DataFrame or None
        :func:`cffbench.analysis.stored.store_planned` (one row per run of the study's grid,
        in the store's column format); None when the store has no study file: then every stored
        condition is taken as planned for every stored seed.

    Returns
    -------
    DataFrame
        One row per planned run: ``dataset, variant, seed``, the varying axes, ``condition``
        (the report's name, :func:`~cffbench.report.tables.condition_name`, after the dataset
        when the plan has several) and ``status``: the stored run's, ``"ok"`` only with a test
        accuracy (``"no accuracy"`` without), ``"missing"`` when no run is stored. The frame's
        ``attrs["unplanned"]`` counts stored runs that match no planned run.
    """
    if planned is None:
        conditions = runs.drop(columns=["seed"]).drop_duplicates(["dataset", "variant", *analysis_axes(runs)])
        planned = conditions.merge(runs[["seed"]].drop_duplicates(), how="cross")
    axes = analysis_axes(planned)
    keys = ["dataset", "variant", *axes, "seed"]
    finite = np.isfinite(pd.to_numeric(runs["test_acc"], errors="coerce").to_numpy(dtype=float))
    status = runs["status"].astype(str).where((runs["status"] != "ok").to_numpy() | finite, "no accuracy")
    stored = dict(zip(_key(runs, keys), status))
    plan_keys = _key(planned, keys)
    several = planned["dataset"].nunique() > 1
    out = planned[keys].assign(
        condition=[(f"{r['dataset']} " if several else "") + condition_name(r, axes)
                   for r in planned.to_dict("records")],
        status=plan_keys.map(stored).fillna("missing").to_numpy())
    out.attrs["unplanned"] = len(set(stored) - set(plan_keys))
    return out.reset_index(drop=True)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _seeds(seeds) -> str:
    return f"seed{'' if len(seeds) == 1 else 's'} {seed_list(seeds)}"


_WHY = {"missing": "not stored yet", "diverged": "diverged", "failed": "failed",
        "no accuracy": "stored without a test accuracy"}


def runs_line(study_name: str, runs: pd.DataFrame, status: pd.DataFrame | None) -> str:
    """"Study `x`: 23 of 35 planned runs stored (23 ok, 0 diverged, 0 failed)." and, for an
    unfinished study, a sentence saying so (``status``: :func:`planned_status`, None when the
    planned count is unknown)."""
    counts = runs["status"].value_counts()
    tally = (f"{int(counts.get('ok', 0))} ok, {int(counts.get('diverged', 0))} diverged, "
             f"{int(counts.get('failed', 0))} failed")
    if status is None:
        return f"Study `{study_name}` ({len(runs)} runs stored: {tally}; planned count unknown)."
    stored = int((status["status"] != "missing").sum())
    extra = status.attrs.get("unplanned", 0)
    line = (f"Study `{study_name}`: {stored} of {len(status)} planned runs stored ({tally}"
            + (f"; {extra} of them not in the study's grid" if extra else "") + ").")
    missing, failed = int((status["status"] == "missing").sum()), int((status["status"] == "failed").sum())
    if missing or failed:
        left = [f"{_count(missing, 'planned run')} {'is' if missing == 1 else 'are'} not stored yet"] if missing else []
        left += [f"{_count(failed, 'planned run')} failed"] if failed else []
        line += (f" The study is unfinished: {' and '.join(left)}, so every number below is "
                 "interim and may change when they are in.")
    return line


def seeds_line(status: pd.DataFrame, planned: bool = True) -> str:
    """How many planned seeds are complete blocks (every planned condition stored and ok, of
    every dataset) and what each incomplete seed lacks, from :func:`planned_status`
    (``planned=False``: the store has no plan, and ``status`` holds its stored conditions)."""
    which = "planned" if planned else "stored"
    done = "every planned condition stored and ok" if planned else "every stored condition ok"
    by_seed = status.groupby("seed")["status"]
    complete = [s for s, done in by_seed.agg(lambda g: (g == "ok").all()).items() if done]
    empty = [s for s, none in by_seed.agg(lambda g: (g == "missing").all()).items() if none]
    seeds = sorted(status["seed"].unique())
    if len(complete) == len(seeds):
        return f"Seeds: {len(seeds)} ({seed_list(seeds)}), each a complete block ({done})"
    parts = [f"Seeds: {len(seeds)} {which} ({seed_list(seeds)}); {_count(len(complete), 'complete block')}"
             + (f" ({_seeds(complete)}: {done})" if complete else "")]
    incomplete = [s for s in seeds if s not in complete and s not in empty]
    for seed in incomplete:
        lacking = status[(status["seed"] == seed) & (status["status"] != "ok")]
        why = "; ".join(f"{', '.join(group['condition'])} {_WHY.get(reason, reason)}"
                        for reason, group in lacking.groupby("status", sort=False))
        parts.append(f"seed {seed} incomplete ({why})")
    if empty:
        parts.append(f"{_seeds(empty)}: no run stored yet")
    return "; ".join(parts) + (". A contrast pairs the seeds both of its conditions have: an "
                               "incomplete seed is left out of those with a condition it lacks and "
                               "used in the others" if incomplete else "")


def layer_health_lines(inputs: ReportInputs, ok: pd.DataFrame) -> list[str]:
    """The report's layer-health caveat: one sentence per condition and layer that went dead
    (:func:`~cffbench.report.context.dead_layers`) and the report's table of them, from the
    stored curves (:func:`~cffbench.report.layer_health.layer_health`); nothing when no layer of
    a finished run was ever dead."""
    axes = analysis_axes(ok)      # as the report's build_context names the conditions
    per_run = run_layer_health(inputs.curves, ok, axes)
    health = layer_health(per_run, axes)
    table = layer_health_table(per_run, health, axes)
    if table is None:
        return []
    return (["", f"{table.caption}:", ""] + [f"- {s}" for s in dead_layers(health, axes)] + [""]
            + _table(table.columns, table.rows) + ["", table.note])


def seed_count_warnings(inputs: ReportInputs, ok: pd.DataFrame) -> list[str]:
    """The report's per-dataset warnings on too few seeds (a single variant, a single seed, or the
    floor 2/2^n of the exact tests), in its words.

    The report builds them inside :func:`~cffbench.report.context.reader_warnings` from the runs
    at its main configuration; called with those runs as the only stored ones (so no diverged,
    failed or noted run) and no omnibus section, descriptives or dead layer, it returns exactly
    those sentences."""
    ok_main = select(ok, main_configuration(ok))
    alone = dataclasses.replace(inputs, runs=ok_main.drop(columns=["notes"], errors="ignore"), notes=[])
    return reader_warnings(alone, ok_main, [], pd.DataFrame(columns=["dataset", "variant", "mean"]))


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
    (:func:`cffbench.analysis.load_or_analyze_all`): stored of planned runs and the seed blocks,
    protocol, accuracies, dead layers, the plan's verdicts and contrasts, the exact tests' floor
    at small n, omnibus tests of each ablation axis with how each was chosen and, when the plan
    declares ``pilot_seeds``, the seeds-needed estimate of that pilot."""
    inputs = load_inputs(results_dir)
    runs = inputs.runs
    ok = runs[(runs["status"] == "ok") & runs["test_acc"].notna()]
    if ok.empty:
        raise CffbenchError(f"{results_dir}: no finished run, so there are no findings to compute")
    result, omnibus = load_or_analyze_all(results_dir)
    has_plan = inputs.planned is not None        # the study file expands to a grid
    status = planned_status(runs, store_planned(results_dir) if has_plan else None)
    lines = [f"{runs_line(inputs.study_name, runs, status if has_plan else None)} "
             f"Protocol: {_protocol(ok)}. {seeds_line(status, has_plan)}.", "", "Test accuracy [%]:", ""]
    lines += _table(["dataset", "condition", "mean ± SD", "95 % CI", "n", "final γ (mean)"],
                    accuracy_rows(result.descriptives, list(dict.fromkeys(ok["dataset"]))))
    notes = note_rows(runs)
    if notes:
        lines += ["", "Notes the engine attached to some runs of a condition:", ""]
        lines += _table(["note", "dataset", "condition", "runs", "seeds"], notes)
    lines += layer_health_lines(inputs, ok)
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
    few = seed_count_warnings(inputs, ok)
    if few:
        lines += [""] + [f"- {w}" for w in few]
    for axis in (a for a in varying_axes(ok) if a in ABLATION_AXES):
        for saved in (o for o in omnibus if o.factors[1:] == [axis]):
            section = saved_section(saved, ABLATION_AXES)
            if section.omnibus is not None:
                table = section.omnibus
                lines += ["", f"{table.caption}:", ""] + _table(table.columns, table.rows)
                if section.trail:   # the saved decisions: which runs, factors and seeds it covers
                    lines += ["", "How the test was chosen: " + " ".join(section.trail)]
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
