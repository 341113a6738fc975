"""Assemble everything the report shows into one plain dict (the template's context).

Tables and figures are built here from :class:`~cffbench.report.store.ReportInputs`; the
renderers in :mod:`cffbench.report.render` only lay them out.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pandas as pd

from cffbench.analysis import load_or_analyze_all
from cffbench.analysis.descriptives import DESCRIPTIVE_COLUMNS
from cffbench.analysis.planned import varying_axes as analysis_axes
from cffbench.errors import StatsError
from cffbench.ff.goodness import DEAD_GOODNESS_TEXT
from cffbench.report import figures as figs
from cffbench.report.plan_section import plan_section
from cffbench import fmt
from cffbench.report.statistics import DatasetStatistics, saved_section
from cffbench.report.store import ReportInputs, json_list
from cffbench.report.layer_health import layer_health, run_layer_health
from cffbench.report.tables import (ABLATION_AXES, VARIANT_LABEL, Table, ablation_table,
                                    condition_name, layer_health_table, load_paper_values,
                                    main_configuration, paper_comparison, paper_table, select,
                                    varying_axes)

#: With n paired seeds the exact two-sided Wilcoxon signed-rank p is at least 2 / 2**n, so
#: below this many seeds the non-parametric path can never reach p < .05.
MIN_SEEDS_NONPARAMETRIC = 6


def _unique(runs: pd.DataFrame, column: str) -> str:
    if column not in runs.columns:
        return "unknown"
    values = sorted({str(v) for v in runs[column].dropna()})
    return ", ".join(values) if values else "unknown"


def generated_stamp() -> str:
    """When the report was built: now, or ``$SOURCE_DATE_EPOCH`` when set (the reproducible-builds
    convention), so that a regenerated report can equal the committed one byte for byte."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch.isdigit():
        when = dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc)
        return when.strftime("%Y-%m-%d %H:%M UTC") + " (fixed by SOURCE_DATE_EPOCH)"
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def header(inputs: ReportInputs) -> dict:
    """Study name, provenance and run counts (planned / done / failed / diverged)."""
    runs = inputs.runs
    counts = runs["status"].value_counts()
    return {
        "name": inputs.study_name, "description": inputs.study_description,
        "generated": generated_stamp(),
        "cffbench_version": _unique(runs, "cffbench_version"),
        "torch_version": _unique(runs, "torch_version"),
        "git_commit": _unique(runs, "git_commit"), "device": _unique(runs, "device"),
        "results_dir": str(inputs.results_dir),
        "planned": inputs.planned if inputs.planned is not None else "unknown",
        "done": int(counts.get("ok", 0)), "failed": int(counts.get("failed", 0)),
        "diverged": int(counts.get("diverged", 0)), "stored": len(runs),
        **plugin_provenance(runs),
    }


def plugin_provenance(runs: pd.DataFrame) -> dict:
    """``plugins`` (each plugin's name, version and file hash) and ``gradient_paths`` (which
    gradient path each variant × goodness condition ran on), both "" when no run used a plugin."""
    if "plugin" not in runs or runs["plugin"].isna().all():
        return {"plugins": "", "gradient_paths": ""}
    used = runs.dropna(subset=["plugin"])[["plugin", "plugin_version", "plugin_sha256"]]
    plugins = "; ".join(f"{name} {version or ''} (sha256 {str(sha)[:12]})".replace("  ", " ")
                        for name, version, sha in used.drop_duplicates().itertuples(index=False))
    paths = runs.assign(goodness=runs["goodness"].fillna("-"), gradient=runs["gradient"].fillna("?"))
    grouped = paths.groupby(["variant", "goodness"], sort=True)["gradient"].agg(
        lambda g: "/".join(sorted(set(g))))
    return {"plugins": plugins, "gradient_paths": "; ".join(
        f"{variant} × {goodness}: {path}" for (variant, goodness), path in grouped.items())}


def failed_runs(runs: pd.DataFrame) -> list[dict]:
    """The appendix: one entry per failed or diverged run with its error text."""
    bad = runs[runs["status"] != "ok"]
    columns = [c for c in ("run_id", "dataset", "variant", "alpha", "seed", "status", "error",
                           "diverged_epoch") if c in bad.columns]
    return [{c: ("" if pd.isna(r[c]) else r[c]) for c in columns} for _, r in bad.iterrows()]


def reader_warnings(inputs: ReportInputs, ok_main: pd.DataFrame,
                    stats: list[DatasetStatistics], desc: pd.DataFrame,
                    dead: list[str] = ()) -> list[str]:
    """What the reader must see before trusting any number (``dead``: :func:`dead_layers`)."""
    runs, out = inputs.runs, list(inputs.notes)
    n_diverged = int((runs["status"] == "diverged").sum())
    if n_diverged:
        by = runs[runs["status"] == "diverged"].groupby("variant").size()
        per_variant = ", ".join(f"{VARIANT_LABEL.get(v, v)}: {n}" for v, n in by.items())
        out.append(f"{n_diverged} diverged run(s) are excluded from every table and test "
                   f"({per_variant}).")
    n_failed = int((runs["status"] == "failed").sum())
    if n_failed:
        out.append(f"{n_failed} run(s) failed and are missing; their errors are in the appendix.")
    cff = runs[runs["variant"].isin(["f-cff", "a-cff"])]
    if "n_layers" in cff.columns and (cff["n_layers"] == 2).any() and "alpha" in cff.columns \
            and cff["alpha"].nunique() > 1:
        out.append("Two hidden layers make the normalised α structures identical (each layer has "
                   "a single partner), so differences between α structures at depth 2 are noise.")
    if ok_main.empty:
        out.append("No run finished: there is nothing to compare.")
        return out
    for dataset, group in ok_main.groupby("dataset", sort=False):
        variants = group["variant"].nunique()
        seeds = group.groupby("variant")["seed"].nunique().min()
        if variants < 2:
            out.append(f"{dataset}: only one variant finished, so no comparison is possible.")
        if seeds < 2:
            out.append(f"{dataset}: a variant has a single seed, so std, CI and every test are "
                       "undefined; run more seeds.")
        elif seeds < MIN_SEEDS_NONPARAMETRIC:
            out.append(f"{dataset}: with {seeds} seeds the exact Wilcoxon signed-rank and sign-flip "
                       f"p cannot go below 2/2^{seeds} = {fmt.apa_decimal(2 / 2 ** seeds)}, so those "
                       "tests (the sensitivity table, or the plan's test if it is one of them) "
                       "cannot reject at .05.")
    out.extend(did_not_learn(desc))
    out.extend(dead)
    for section in stats:
        out.extend(f"{section.dataset}: {w}" for w in section.warnings)
    if "notes" in runs.columns:
        notes = {n for cell in runs["notes"] for n in json_list(cell) if isinstance(n, str)}
        out.extend(f"Run note: {n}" for n in sorted(notes))
    return list(dict.fromkeys(out))


#: A condition whose mean test accuracy is below chance (1 / classes) plus this did not learn.
CHANCE_MARGIN = 0.05


def did_not_learn(desc: pd.DataFrame) -> list[str]:
    """"<dataset>, <condition>: did not learn (mean test accuracy 10.3 %, chance 10.0 %)" for every
    condition of the saved descriptives (``PlanResult.descriptives``: dataset, variant and the
    varying axes) whose mean sits at chance."""
    from cffbench.data import DATASETS

    from cffbench.analysis.factors import AXIS_COLUMNS

    axes = [a for a in AXIS_COLUMNS if a in desc.columns]   # every varying axis, goodness too
    out = []
    for r in desc.to_dict("records"):
        info = DATASETS.get(r["dataset"])
        chance = 1.0 / getattr(info, "n_classes", 10)
        if r["mean"] < chance + CHANCE_MARGIN:
            out.append(f"{r['dataset']}, {condition_name(r, axes)}: did not learn (mean test accuracy "
                       f"{fmt.pct(r['mean'])} %, chance {fmt.pct(chance)} %); its comparisons "
                       "describe a failure, not a method.")
    return out


def dead_layers(health: pd.DataFrame, axes: list[str]) -> list[str]:
    """"<dataset>, <condition>: layer L went dead ..." for every condition and layer of
    :func:`~cffbench.report.layer_health.layer_health` with a run whose layer was dead at some
    logged epoch."""
    return [f"{r['dataset']}, {condition_name(r, axes)}: layer {r['layer']} went dead "
            f"(max(G_pos, G_neg) ≤ {DEAD_GOODNESS_TEXT}: every unit (almost) off, no gradient) in "
            f"{r['runs_dead']} of {r['runs']} runs ({r['dead_epochs']} of their {r['logged']} "
            f"logged epochs) and was still dead at the end of its training in "
            f"{r['dead_at_end']} of {r['runs']}; see the layer health table."
            for r in health[health["runs_dead"] > 0].to_dict("records")]


def protocol_differences(ok_main: pd.DataFrame, paper_values: pd.DataFrame,
                         protocol: dict) -> list[str]:
    """A warning when the runs set beside the paper's values were trained another way.

    Compares each field of the paper's protocol (``[source.protocol]`` of ``paper_values.toml``)
    with the values of the runs in the paper table, for the datasets the paper reports.
    """
    if not protocol or ok_main.empty or paper_values.empty:
        return []
    runs = ok_main[ok_main["dataset"].isin(set(paper_values["dataset"]))]
    differences = []
    for field, paper in protocol.items():
        if field not in runs.columns:
            continue
        ours = sorted({str(v) for v in runs[field].dropna()})
        if ours and ours != [str(paper)]:
            differences.append(f"{field.replace('_', ' ')} {'/'.join(ours)} vs {paper}")
    if not differences:
        return []
    return ["This study's protocol differs from the paper's (" + "; ".join(differences) +
            "): the paper's values are a reference point, not a like-for-like comparison."]


def _at_main(main: dict) -> str:
    return f"the main configuration ({figs.condition_label(main)})" if main else ""


def condition_curves(curves: pd.DataFrame, ok: pd.DataFrame, main: dict,
                     fig_dir: Path) -> list[figs.Figure]:
    """Training curves at the main configuration, then at each other level of every varying
    axis (the rest held at the main configuration): one band never mixes two conditions."""
    figures = figs.training_curves(curves, select(ok, main), fig_dir, _at_main(main))
    for axis, levels in varying_axes(ok).items():
        for level in levels:
            if level == main[axis]:
                continue
            where = {**main, axis: level}
            shown = select(ok, where)
            if not (shown[axis] == level).any():   # the level occurs only off the main config
                continue
            held = {k: v for k, v in main.items() if k != axis}
            text = figs.condition_label({axis: level}) + (
                f" ({figs.condition_label(held)})" if held else "")
            if shown[axis].isna().any():
                text += "; runs that do not depend on it (e.g. FF) are the same in each figure"
            figures += figs.training_curves(curves, shown, fig_dir, text,
                                            figs.level_slug({axis: level}))
    return figures


def ablations(ok_runs: pd.DataFrame, desc: pd.DataFrame, main: dict, fig_dir: Path,
              crossings: list[DatasetStatistics]) -> list[dict]:
    """One section per varying ablation axis: table (rows of the saved descriptives ``desc``),
    the saved ``variant × axis`` omnibus tests of ``cffbench analyze`` (``crossings``), and for α
    an interaction plot."""
    sections = []
    for axis, levels in varying_axes(ok_runs).items():
        if axis not in ABLATION_AXES:
            continue
        table = ablation_table(desc, axis, main)
        figure = None
        if axis == "alpha":
            subset = select(desc, {k: v for k, v in main.items() if k != axis})
            figure = figs.interaction_plot(subset[subset[axis].notna()], axis, ABLATION_AXES[axis], fig_dir)
        tests = [c for c in crossings if c.omnibus is not None and c.omnibus.key.endswith(f"_{axis}")]
        for test in tests:
            test.omnibus.note = " ".join(test.trail + ([test.omnibus.note] if test.omnibus.note else []))
        sections.append({"axis": axis, "label": ABLATION_AXES[axis], "levels": levels,
                         "table": table, "figure": figure, "tests": [t.omnibus for t in tests]})
    return sections


def in_run_order(desc: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """The saved per-condition rows ordered as their first runs appear in ``runs`` (the report's
    display order: datasets in registry order, variants in the report's order); a condition
    without a run in ``runs`` goes last."""
    from cffbench.analysis.planned import level_text

    columns = [c for c in desc.columns if c in runs.columns and c not in DESCRIPTIVE_COLUMNS]

    def keys(frame: pd.DataFrame) -> pd.Series:
        text = frame[columns].apply(lambda col: col.map(lambda v: "" if pd.isna(v) else level_text(v)))
        return text.agg("|".join, axis=1)

    first: dict[str, int] = {}
    for i, key in enumerate(keys(runs)):
        first.setdefault(key, i)
    order = keys(desc).map(first).fillna(len(runs))
    return desc.assign(_order=order).sort_values("_order", kind="stable").drop(columns="_order")


def unique_keys(tables: list[Table]) -> None:
    """Give every table its own key (HTML id, LaTeX file name): a repeated key, e.g. from two
    levels whose names differ only in punctuation, gets ``_2``, ``_3``, ... in order."""
    seen: dict[str, int] = {}
    for table in tables:
        count = seen.get(table.key, 0) + 1
        seen[table.key] = count
        if count > 1:
            table.key = f"{table.key}_{count}"


def _saved_analysis(inputs: ReportInputs):
    """(plan result, omnibus analyses, problem text) from ``cffbench analyze``'s saved analysis
    (or the same analysis run now, when the saved one is missing or stale)."""
    try:
        plan_result, omnibus = load_or_analyze_all(inputs.results_dir)
    except StatsError as exc:   # data that cannot be analysed yet: the report says why
        return None, [], f"no analysis: {' '.join(str(exc).split())}"
    # a malformed plan (StudyError) is the user's mistake: one line and exit 2, like analyze
    return plan_result, omnibus, ""


def _main_pairs(plan_result, main: dict) -> pd.DataFrame | None:
    """The plan's contrasts at the main configuration as ``dataset, a, b, diff, p_adj`` (for the
    paper table's bold-best rule)."""
    if plan_result is None or plan_result.contrasts.empty:
        return None
    wanted = {f"{k} = {v}" for k, v in main.items()}
    rows = []
    for r in plan_result.contrasts.to_dict("records"):
        parts = [p for p in r["scope"].split(", ") if p]
        if all(p in wanted for p in parts):
            rows.append({"dataset": r["dataset"], "a": r["minus"], "b": r["variant"],
                         "diff": r["estimate"], "p_adj": r["p_adj"]})
    return pd.DataFrame(rows) if rows else None


def build_context(inputs: ReportInputs, fig_dir: Path) -> dict:
    """Every table, figure and sentence of the report.

    Returns
    -------
    dict
        ``header, warnings, layer_health, main_config, paper, paper_source, statistics,
        ablations, figures, failed, tables`` (``layer_health``: the table of dead layers, None
        without one; ``tables``: every :class:`Table`, for the LaTeX output).
    """
    runs = inputs.runs
    ok = runs[(runs["status"] == "ok") & runs["test_acc"].notna()]
    main = main_configuration(ok)
    ok_main = select(ok, main)
    plan_result, omnibus, plan_problem = _saved_analysis(inputs)
    sections = [saved_section(o, ABLATION_AXES) for o in omnibus]
    stats = [s for s in sections if not s.scope]              # one factor per dataset
    crossings = [s for s in sections if s.scope]              # variant × another factor
    pairwise = _main_pairs(plan_result, main)
    paper_values, source = load_paper_values()
    # every descriptive is the saved analysis's, one row per condition in the runs' order
    conditions = (in_run_order(plan_result.descriptives, runs) if plan_result is not None
                  else pd.DataFrame(columns=["dataset", "variant", *varying_axes(ok), "n", "mean", "std",
                                             "ci_low", "ci_high"]))
    desc = select(conditions, main)
    comparison = paper_comparison(desc, paper_values, pairwise)
    paper = paper_table(comparison, source.get("citation", "")) if not desc.empty else None
    ablation_sections = ablations(ok, conditions, main, fig_dir, crossings)
    shown = {id(t) for a in ablation_sections for t in a["tests"]}
    stats += [c for c in crossings if c.omnibus is None or id(c.omnibus) not in shown]

    figures = [f for f in [figs.accuracy_distribution(ok_main, fig_dir, _at_main(main))]
               if f is not None]
    figures += condition_curves(inputs.curves, ok, main, fig_dir)
    forest = (figs.forest_plot(plan_result.contrasts, plan_result.plan.sesoi, plan_result.plan.margin,
                               fig_dir) if plan_result is not None else [])
    for maker in (lambda: figs.gamma_trajectories(inputs.curves, ok, fig_dir),
                  lambda: figs.alpha_heatmaps(ok, fig_dir),
                  lambda: figs.cd_diagram(plan_result.ranks, plan_result.cliques,
                                          len(plan_result.rank_pairs), fig_dir)
                  if plan_result is not None else None):
        figure = maker()
        if figure is not None:
            figures.append(figure)

    # layer health from the curves, so stores of engines without the dead-layer note show it too
    health_axes = analysis_axes(ok)
    per_run = run_layer_health(inputs.curves, ok, health_axes)
    health = layer_health(per_run, health_axes)
    health_table = layer_health_table(per_run, health, health_axes)

    plan = plan_section(plan_result) if plan_result is not None else None
    # a plan changed after runs existed is the first thing a reader sees
    deviation = [plan_result.registration.text] if plan_result is not None and plan_result.registration.deviation else []
    tables: list[Table] = []
    if plan is not None:
        for d in plan["datasets"]:
            tables += [d["contrasts"], d["effects"], d["sensitivity"]]
    tables += [t for t in [paper] if t is not None]
    for section in stats:
        tables += [t for t in (section.omnibus,) if t is not None]
    for section in ablation_sections:
        tables += [section["table"], *section["tests"]]
    tables += [t for t in [health_table] if t is not None]
    unique_keys(tables)
    return {
        "header": header(inputs),
        "warnings": deviation
        + protocol_differences(ok_main, paper_values, source.get("protocol", {}))
        + reader_warnings(inputs, ok_main, stats, conditions, dead_layers(health, health_axes))
        + ([plan_problem] if plan_problem else []),
        "layer_health": health_table,
        "plan": plan, "forest": forest, "main_config": main, "paper": paper, "paper_source": source, "statistics": stats,
        "ablations": ablation_sections, "figures": figures, "failed": failed_runs(runs),
        "tables": tables,
    }
