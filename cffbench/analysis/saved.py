"""The saved analysis: ``analysis/plan.json`` (plan, hash, runs fingerprint, verdict table,
notes, cliques) and the tables beside it (Parquet for the report, CSV for people), and the one
way the report and the findings obtain it (:func:`load_or_analyze`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cffbench import fmt

from cffbench.analysis.contrasts import PlanResult, runs_fingerprint, usable_runs
from cffbench.analysis.stored import analyze_store, store_plan, store_planned
from cffbench.analysis.plan import Plan
from cffbench.analysis.registration import (registration_from_json, registration_json,
                                            store_registration)
from cffbench.errors import StatsError
from cffbench.stats import paired as P

SAVED_FILES = ("plan.json", "contrasts.parquet", "sensitivity.parquet", "descriptives.parquet")


def save(result: PlanResult, out_dir: Path | str) -> list[Path]:
    """Write ``plan.json`` (plan, hash, registration, verdict table, notes) and the tables
    (contrasts, sensitivity, ranks, rank pairs, descriptives and, with a pilot, its contrasts),
    each as Parquet, the object the report reads, and CSV with 12 significant digits for people."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"plan": result.plan.as_dict(), "plan_hash": result.plan.hash,
            "runs_hash": result.runs_hash, "verdict_table": [list(v) for v in P.VERDICT_TABLE],
            "notes": result.notes, "cd_cliques": result.cliques,
            "registration": registration_json(result.registration)}
    files = [out / "plan.json"]
    (out / "plan.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    for name, frame in (("contrasts", result.contrasts), ("sensitivity", result.sensitivity),
                        ("ranks", result.ranks), ("rank_pairs", result.rank_pairs),
                        ("descriptives", result.descriptives),
                        *((("pilot", result.pilot),) if result.plan.pilot_seeds else ())):
        frame.to_parquet(out / f"{name}.parquet", index=False)
        frame.to_csv(out / f"{name}.csv", index=False, float_format=fmt.CSV_FLOAT_FORMAT)
        files += [out / f"{name}.parquet", out / f"{name}.csv"]
    return files


def load(out_dir: Path | str) -> PlanResult:
    """Read what :func:`save` wrote."""
    out = Path(out_dir)
    meta = json.loads((out / "plan.json").read_text(encoding="utf-8"))
    plan = Plan(**{**meta["plan"], "primary": tuple(meta["plan"]["primary"])})
    if plan.hash != meta["plan_hash"]:
        raise StatsError(f"{out / 'plan.json'}: the plan does not match its hash; rerun cffbench analyze")
    extra = {name: pd.read_parquet(out / f"{name}.parquet")
             for name in ("ranks", "rank_pairs", "descriptives", "pilot")
             if (out / f"{name}.parquet").is_file()}
    return PlanResult(plan, pd.read_parquet(out / "contrasts.parquet"),
                      pd.read_parquet(out / "sensitivity.parquet"), list(meta["notes"]),
                      meta.get("runs_hash", ""), **extra, cliques=meta.get("cd_cliques", []),
                      registration=registration_from_json(meta))


def is_fresh(results_dir: Path | str) -> bool:
    """``results_dir/analysis`` holds a saved analysis made under the store's current plan (same
    hash) on the store's current runs (same fingerprint) with its current plan record."""
    from cffbench.study import read_runs

    results_dir = Path(results_dir)
    saved = results_dir / "analysis"
    if not all((saved / f).is_file() for f in SAVED_FILES):
        return False
    meta = json.loads((saved / "plan.json").read_text(encoding="utf-8"))
    plan = store_plan(results_dir)
    saved_registration = registration_from_json(meta)
    return (meta.get("plan") == plan.as_dict() and meta.get("plan_hash") == plan.hash
            and meta.get("runs_hash") ==
            runs_fingerprint(usable_runs(read_runs(results_dir), "test_acc"), "test_acc",
                             store_planned(results_dir))
            and saved_registration == store_registration(results_dir, plan))


def load_or_analyze(results_dir: Path | str) -> PlanResult:
    """The saved analysis of ``results_dir`` (``analysis/``) when it is fresh (:func:`is_fresh`);
    otherwise the same analysis computed now (not written)."""
    results_dir = Path(results_dir)
    if is_fresh(results_dir):
        return load(results_dir / "analysis")
    return analyze_store(results_dir)


#: The omnibus tables cffbench analyze may write (the one that exists is the path it took).
OMNIBUS_TABLES = ("rm_anova", "friedman", "anova", "welch_anova", "kruskal")


@dataclass
class SavedOmnibus:
    """One saved omnibus analysis of ``cffbench analyze`` (``analysis/<dataset>/<name>/``).

    ``name`` is ``main``, ``conditions`` or ``crossing``; ``factors`` the design factors of the
    omnibus table (its main effects); ``table_name`` which test (``rm_anova``, ...) and ``table``
    its rows, or None (descriptives only); ``decisions`` (step, choice, reason); ``sentences``
    (APA, omnibus only: the pairs are the plan's); ``warnings``.
    """

    dataset: str
    name: str
    factors: list[str]
    table_name: str | None
    table: pd.DataFrame | None
    decisions: list[tuple[str, str, str]] = field(default_factory=list)
    sentences: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def load_omnibus(out_dir: Path | str) -> list[SavedOmnibus]:
    """Every saved omnibus analysis under ``out_dir`` (datasets in registry order)."""
    from cffbench.analysis.contrasts import dataset_order

    out = Path(out_dir)
    decisions = pd.read_parquet(out / "decisions.parquet")
    sentences = json.loads((out / "apa.json").read_text(encoding="utf-8"))
    warnings = (out / "warnings.txt").read_text(encoding="utf-8").splitlines()
    found = []
    for dataset in dataset_order(decisions["dataset"].astype(str)):
        part = decisions[decisions["dataset"] == dataset]
        for name in dict.fromkeys(part["analysis"]):
            folder = out / dataset / name
            table_name = next((t for t in OMNIBUS_TABLES if (folder / f"{t}.parquet").is_file()), None)
            table = pd.read_parquet(folder / f"{table_name}.parquet") if table_name else None
            factors = ([s for s in table["source"].astype(str) if ":" not in s]
                       if table is not None and "source" in table else [])
            rows = part[part["analysis"] == name]
            tag = f"{dataset}/{name}: "
            found.append(SavedOmnibus(
                dataset, name, factors, table_name, table,
                [(r.step, r.choice, r.reason) for r in rows.itertuples(index=False)],
                [s["sentence"] for s in sentences if s["dataset"] == dataset and s["analysis"] == name],
                [w.removeprefix(tag) for w in warnings if w.startswith(tag)]))
    return found


def load_or_analyze_all(results_dir: Path | str) -> tuple[PlanResult, list[SavedOmnibus]]:
    """The saved plan result and omnibus analyses of ``results_dir`` when they are fresh (same plan
    hash and runs fingerprint as the store); otherwise the same ``cffbench analyze`` run now, into
    a temporary folder (nothing is written beside the runs)."""
    import tempfile

    from cffbench.analysis.analyze import analyze_results

    results_dir = Path(results_dir)
    saved = results_dir / "analysis"
    needed = [*SAVED_FILES, "decisions.parquet", "apa.json", "warnings.txt"]
    if all((saved / f).is_file() for f in needed) and is_fresh(results_dir):
        return load(saved), load_omnibus(saved)
    with tempfile.TemporaryDirectory() as tmp:
        analysis = analyze_results(results_dir, out=tmp)
        return analysis.plan, load_omnibus(tmp)
