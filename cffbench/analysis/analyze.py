"""``cffbench analyze``: the plan's contrasts of a results directory (:mod:`cffbench.analysis.contrasts`)
and :func:`~cffbench.stats.compare` over it for the omnibus tests, written as tables.

Plan per dataset (recorded as the first decision of each comparison):

- the *factors* are the run-row columns that vary among the dataset's ``ok`` runs (non-null
  values; see :data:`FACTOR_COLUMNS`, derived from ``TrainConfig`` in :mod:`cffbench.analysis.factors`);
- when no factor is null anywhere and at most two vary, one analysis (``main``) crosses them;
- otherwise (``ff`` / ``bp`` have null collaboration columns, so they sit outside a
  ``variant x alpha`` crossing; or more than two factors vary) two analyses: ``conditions``, one
  factor over every observed condition (this is where ff is compared), and ``crossing``, the
  two-way design on the runs where every factor is set (the CFF runs), when exactly two vary there.

These are the omnibus tests and diagnostics (normality, sphericity) only, always on the
parametric path fixed in advance. Every pair (variant − FF, BP − FF, A-CFF − F-CFF) is decided
once, by the study's analysis plan (:mod:`cffbench.analysis`), and written beside them as
``plan.json``, ``contrasts`` and ``sensitivity``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cffbench import fmt

from cffbench.analysis.contrasts import PlanResult, analyze_runs
from cffbench.analysis.factors import FACTOR_COLUMNS  # derived from TrainConfig; re-exported
from cffbench.analysis.stored import store_plan, store_planned
from cffbench.analysis.saved import save as save_plan_result
from cffbench.analysis.registration import store_registration
from cffbench.analysis.render import plan_text
from cffbench.errors import StatsError, StudyError
from cffbench.stats.compare import Comparison, Decision, compare
from cffbench.stats.inputs import level_labels


@dataclass
class Analysis:
    """What ``analyze_results`` did.

    Attributes
    ----------
    results_dir, out_dir : where the runs were read and the analysis written.
    dv : the dependent variable.
    n_runs, n_used : runs in the store, and ``ok`` runs with a finite ``dv`` that were analysed.
    excluded : reason -> number of runs left out (e.g. ``{"status diverged": 2}``).
    comparisons : ``"<dataset>/<analysis>"`` -> :class:`Comparison` (omnibus tests and
        diagnostics; no pairs).
    plan : the analysis plan's contrasts (:class:`cffbench.analysis.PlanResult`): every pair,
        decided once; written as ``plan.json``, ``contrasts`` and ``sensitivity``.
    files : every file written.
    """

    results_dir: Path
    out_dir: Path
    dv: str
    n_runs: int
    n_used: int
    excluded: dict[str, int] = field(default_factory=dict)
    comparisons: dict[str, Comparison] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    plan: PlanResult | None = None

    def excluded_text(self) -> str:
        """"Analysed 18 of 20 runs; left out 2 (status diverged: 2)."."""
        left = sum(self.excluded.values())
        text = f"Analysed {self.n_used} of {self.n_runs} runs"
        if left:
            text += f"; left out {left} ({', '.join(f'{k}: {v}' for k, v in self.excluded.items())})"
        return text + "."

    def to_text(self) -> str:
        """The console summary: exclusions, then each comparison's :meth:`Comparison.to_text`."""
        parts = [self.excluded_text()]
        if self.plan is not None:
            parts += ["", plan_text(self.plan)]
        for key, result in self.comparisons.items():
            parts += ["", f"=== {key} ===", result.to_text()]
        parts.append(f"Written to {self.out_dir}")
        return "\n".join(parts) + "\n"


def _condition_labels(runs: pd.DataFrame, factors: list[str]) -> pd.Series:
    """``variant`` bare, other set factors as ``name=value``: "a-cff / alpha=uniform"."""
    parts = []
    for f in factors:
        labels = level_labels(runs[f])
        shown = labels if f == "variant" else f + "=" + labels
        parts.append(shown.where(runs[f].notna(), ""))
    joined = pd.concat(parts, axis=1).agg(lambda r: " / ".join(x for x in r if x), axis=1)
    return joined.where(joined != "", "all")


def plan_dataset(runs: pd.DataFrame) -> list[tuple[str, pd.DataFrame, list[str], str, str]]:
    """The analyses of one dataset's runs: (name, rows, factors, choice, reason) each."""
    factors = [c for c in FACTOR_COLUMNS if c in runs and runs[c].dropna().nunique() > 1]
    if not factors:
        return [("main", runs, ["variant"] if "variant" in runs else [], "descriptives only",
                 "no run parameter varies")]
    has_null = bool(runs[factors].isna().any(axis=None))
    if not has_null and len(factors) <= 2:
        return [("main", runs, factors, f"{' x '.join(factors)} analysed as designed",
                 f"varying: {', '.join(factors)}; every run sets every factor")]
    runs = runs.assign(condition=_condition_labels(runs, factors))
    reason = ("runs with null factors (ff / bp have no collaboration parameters) sit outside the "
              f"{' x '.join(factors)} crossing" if has_null else f"{len(factors)} factors vary")
    plans = [("conditions", runs, ["condition"], f"one factor over all {runs['condition'].nunique()} conditions",
              reason + "; this one-way analysis compares every condition, the reference included")]
    crossed = runs.dropna(subset=factors)
    varying = [f for f in factors if crossed[f].nunique() > 1]
    if len(varying) > 2:
        name, rows, factor, choice, why = plans[0]
        plans[0] = (name, rows, factor, choice, why + f"; the fully set runs vary in {len(varying)} factors "
                    f"({', '.join(varying)}), more than a two-way crossing, so there is no separate crossing analysis")
    if len(varying) == 2:
        plans.append(("crossing", crossed, varying, f"two-way {' x '.join(varying)} on {len(crossed)} runs",
                      "the runs that set every factor form a crossing: main effects and interaction"))
    return plans


def analyze_results(results_dir: Path | str, dv: str = "test_acc", out: Path | str | None = None, *,
                    alpha: float = 0.05, delta: float = 0.012, power: float = 0.8) -> Analysis:
    """Analyse a results directory and write the tables under ``out``.

    Parameters
    ----------
    results_dir : a run store (``runs/<run_id>.parquet`` + ``study.toml``), read with
        :func:`cffbench.study.read_runs`.
    dv : the run column to analyse (accuracies are fractions; text shows pp).
    out : output folder (default ``results_dir/analysis``).
    alpha, delta, power : as in :func:`compare` (delta = the paper's 1.2 pp gain).

    Writes, under ``out``: ``<dataset>/<analysis>/<table>.csv`` and ``.parquet`` for every table,
    ``decisions``, ``summary.txt``, ``comparison.html``; at the top ``decisions.csv/.parquet``,
    ``apa.json`` (long, with ``dataset`` and ``analysis``), ``apa.txt``,
    ``warnings.txt`` and ``summary.txt``; and the analysis plan's result (every pair, decided
    once): ``plan.json`` (plan, hash, verdict table), ``contrasts`` and ``sensitivity``.

    Raises
    ------
    StatsError
        No store, no runs, no ``ok`` run with a finite ``dv``, or an unknown ``dv``.
    """
    from cffbench.study import read_runs

    results_dir = Path(results_dir)
    try:
        runs = read_runs(results_dir)
    except StudyError as exc:
        raise StatsError(f"nothing to analyse: {' '.join(str(exc).split())}") from None
    if dv not in runs.columns or not pd.api.types.is_numeric_dtype(runs[dv]):
        numeric = [c for c in runs.columns if pd.api.types.is_float_dtype(runs[c])]
        raise StatsError(f"--dv {dv!r} is not a numeric run column; numeric columns: {', '.join(numeric)}")
    status = runs["status"].astype(str) if "status" in runs else pd.Series("ok", index=runs.index)
    excluded = {f"status {k}": int(v) for k, v in status[status != "ok"].value_counts().items()}
    ok = runs[status == "ok"]
    finite = pd.Series(np.isfinite(pd.to_numeric(ok[dv], errors="coerce").to_numpy(dtype=float)),
                       index=ok.index)  # ±inf is not a usable accuracy either
    if (~finite).any():
        excluded[f"ok but no {dv}"] = int((~finite).sum())
    ok = ok[finite].copy()
    ok[dv] = ok[dv].astype(float)
    out_dir = Path(out) if out is not None else results_dir / "analysis"
    analysis = Analysis(results_dir, out_dir, dv, n_runs=len(runs), n_used=len(ok), excluded=excluded)
    if ok.empty:
        raise StatsError(f"no usable runs in {results_dir}: {analysis.excluded_text()} "
                         f"Only status 'ok' runs with a finite {dv} are analysed")
    datasets = sorted(ok["dataset"].astype(str).unique()) if "dataset" in ok else ["all"]
    for dataset in datasets:
        part = ok[ok["dataset"].astype(str) == dataset] if "dataset" in ok else ok
        for name, rows, factors, choice, reason in plan_dataset(part):
            # conditions: the question is each condition against ff, so Holm over those k - 1 pairs;
            # a crossing: simple effects of both factors, one Holm family per factor
            result = compare(rows, dv, factors or ["dataset"], subject="seed", alpha=alpha, delta=delta,
                             power=power, reference="ff",
                             posthoc_pairs="reference" if name == "conditions" else "all",
                             simple_effects="both" if len(factors) == 2 else "first",
                             pretest=False, pairs=False)
            result.decisions.insert(0, Decision("analysis plan", choice, reason))
            analysis.comparisons[f"{dataset}/{name}"] = result
    plan = store_plan(results_dir)
    analysis.plan = analyze_runs(ok, plan, dv, store_planned(results_dir))
    analysis.plan.register(store_registration(results_dir, plan))
    write_analysis(analysis)
    return analysis


def _write_frame(frame: pd.DataFrame, stem: Path, files: list[Path]) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    frame = frame.copy()
    for column in frame.columns:  # Parquet needs one type per column: text columns become str
        if frame[column].dtype == object:
            frame[column] = frame[column].map(lambda v: v if v is None or isinstance(v, str) else str(v))
    frame.to_csv(stem.with_suffix(".csv"), index=False, float_format=fmt.CSV_FLOAT_FORMAT)  # 12 digits: the same on any BLAS
    frame.to_parquet(stem.with_suffix(".parquet"), index=False)
    files += [stem.with_suffix(".csv"), stem.with_suffix(".parquet")]


def write_analysis(analysis: Analysis) -> None:
    """Write every table, the decisions, the sentences and the summary (see analyze_results)."""
    out = analysis.out_dir
    out.mkdir(parents=True, exist_ok=True)
    decisions, sentences, powers, warnings = [], [], [], []
    for key, result in analysis.comparisons.items():
        dataset, name = key.split("/", 1)
        folder = out / dataset / name
        for table_name, table in result.tables.items():
            _write_frame(table, folder / table_name, analysis.files)
        _write_frame(result.decisions_frame(), folder / "decisions", analysis.files)
        for path, text in ((folder / "summary.txt", result.to_text()), (folder / "comparison.html", result.to_html())):
            path.write_text(text, encoding="utf-8")
            analysis.files.append(path)
        tag = {"dataset": dataset, "analysis": name}
        decisions += [{**tag, **d._asdict()} for d in result.decisions]
        sentences += [{**tag, "sentence": s} for s in result.apa]
        warnings += [f"{key}: {w}" for w in result.warnings]
        if result.power is not None:
            p = result.power
            powers.append({**tag, "delta": p.delta, "power": p.power, "alpha": p.alpha, "diff_sd": p.diff_sd,
                           "seeds_needed": p.seeds_needed, "n_seeds": p.n_seeds, "basis": p.basis, "text": p.text})
    _write_frame(pd.DataFrame(decisions, columns=["dataset", "analysis", "step", "choice", "reason"]),
                 out / "decisions", analysis.files)
    if powers:  # compare(pairs=False) has no power line: seeds needed are per contrast (contrasts.csv)
        _write_frame(pd.DataFrame(powers, columns=["dataset", "analysis", "delta", "power", "alpha",
                                                   "diff_sd", "seeds_needed", "n_seeds", "basis", "text"]),
                     out / "power", analysis.files)
    texts = {"apa.json": json.dumps(sentences, indent=1, ensure_ascii=False),
             "apa.txt": "".join(f"[{s['dataset']}/{s['analysis']}] {s['sentence']}\n" for s in sentences),
             "warnings.txt": "".join(f"{w}\n" for w in warnings),
             "summary.txt": analysis.to_text()}
    for filename, text in texts.items():
        (out / filename).write_text(text, encoding="utf-8")
        analysis.files.append(out / filename)
    if analysis.plan is not None:
        analysis.files += save_plan_result(analysis.plan, out)
