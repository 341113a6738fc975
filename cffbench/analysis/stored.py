"""The plan, the planned runs and the analysis of one run store (``results/<study>``): its
``study.toml`` read once for each."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cffbench.analysis.contrasts import PlanResult, analyze_runs
from cffbench.analysis.plan import Plan, resolve_plan
from cffbench.analysis.planned import planned_runs
from cffbench.analysis.registration import store_registration
from cffbench.errors import StatsError, StudyError


def store_study(results_dir: Path):
    """The store's ``study.toml`` as a :class:`Study`, or None when the store has none."""
    from cffbench.study import read_study

    try:
        return read_study(results_dir)
    except StudyError:
        if (Path(results_dir) / "study.toml").exists():
            raise
        return None


def store_plan(results_dir: Path) -> Plan:
    """The resolved plan of a store's ``study.toml`` (all defaults when the store has none)."""
    study = store_study(Path(results_dir))
    return resolve_plan(study.analysis if study is not None else None)


def store_planned(results_dir: Path) -> pd.DataFrame | None:
    """The planned runs of a store's study (:func:`planned_runs`), None when it has no study."""
    study = store_study(Path(results_dir))
    return planned_runs(study) if study is not None else None


def analyze_store(results_dir: Path | str, dv: str = "test_acc") -> PlanResult:
    """The plan (from the stored ``study.toml``'s ``[analysis]``) applied to the store's runs,
    its contrasts those the study's grid plans."""
    from cffbench.study import read_runs

    results_dir = Path(results_dir)
    try:
        runs = read_runs(results_dir)
    except StudyError as exc:
        raise StatsError(f"nothing to analyse: {' '.join(str(exc).split())}") from None
    plan = store_plan(results_dir)
    result = analyze_runs(runs, plan, dv, store_planned(results_dir))
    result.register(store_registration(results_dir, plan))
    return result
