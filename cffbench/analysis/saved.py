"""The saved analysis: ``analysis/plan.json`` (plan, hash, runs fingerprint, verdict table,
notes, cliques) and the tables beside it (Parquet for the report, CSV for people), and the one
way the report and the findings obtain it (:func:`load_or_analyze`)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from cffbench.analysis.contrasts import PlanResult, analyze_store, runs_fingerprint, store_plan, usable_runs
from cffbench.analysis.plan import Plan
from cffbench.errors import StatsError
from cffbench.stats import paired as P

SAVED_FILES = ("plan.json", "contrasts.parquet", "sensitivity.parquet")


def save(result: PlanResult, out_dir: Path | str) -> list[Path]:
    """Write ``plan.json`` (plan, hash, verdict table, notes) and the two tables (Parquet, the
    object the report reads, and CSV with 12 significant digits for people)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"plan": result.plan.as_dict(), "plan_hash": result.plan.hash,
            "runs_hash": result.runs_hash, "verdict_table": [list(v) for v in P.VERDICT_TABLE],
            "notes": result.notes, "cd_cliques": result.cliques}
    files = [out / "plan.json"]
    (out / "plan.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    for name, frame in (("contrasts", result.contrasts), ("sensitivity", result.sensitivity),
                        ("ranks", result.ranks), ("rank_pairs", result.rank_pairs)):
        frame.to_parquet(out / f"{name}.parquet", index=False)
        frame.to_csv(out / f"{name}.csv", index=False, float_format="%.12g")
        files += [out / f"{name}.parquet", out / f"{name}.csv"]
    return files


def load(out_dir: Path | str) -> PlanResult:
    """Read what :func:`save` wrote."""
    out = Path(out_dir)
    meta = json.loads((out / "plan.json").read_text(encoding="utf-8"))
    plan = Plan(**{**meta["plan"], "primary": tuple(meta["plan"]["primary"])})
    if plan.hash != meta["plan_hash"]:
        raise StatsError(f"{out / 'plan.json'}: the plan does not match its hash; rerun cffbench analyze")
    extra = {name: pd.read_parquet(out / f"{name}.parquet") for name in ("ranks", "rank_pairs")
             if (out / f"{name}.parquet").is_file()}
    return PlanResult(plan, pd.read_parquet(out / "contrasts.parquet"),
                      pd.read_parquet(out / "sensitivity.parquet"), list(meta["notes"]),
                      meta.get("runs_hash", ""), **extra, cliques=meta.get("cd_cliques", []))


def load_or_analyze(results_dir: Path | str) -> PlanResult:
    """The saved analysis of ``results_dir`` (``analysis/``) when it exists and was made under the
    store's current plan; otherwise the same analysis computed now (not written)."""
    from cffbench.study import read_runs

    results_dir = Path(results_dir)
    saved = results_dir / "analysis"
    if all((saved / f).is_file() for f in SAVED_FILES):
        result = load(saved)
        plan = store_plan(results_dir)
        if result.plan.hash == plan.hash and result.runs_hash == runs_fingerprint(
                usable_runs(read_runs(results_dir), "test_acc"), "test_acc"):
            return result
    return analyze_store(results_dir)
