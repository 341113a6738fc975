"""The pre-registered analysis of one run store: computed once, saved, rendered everywhere.

:func:`resolve_plan` fills the study's ``[analysis]`` plan with its documented defaults and
hashes it; :func:`analyze_store` forms every contrast the plan names and decides it with the
plan's one test (:mod:`cffbench.stats.paired`); :func:`save` / :func:`load` keep the result
beside the runs (``analysis/plan.json``, ``contrasts.parquet``, ``sensitivity.parquet``), and the
report and the findings render that saved object only. :func:`analyze_results` is the ``cffbench
analyze`` command: that, plus the omnibus tests and diagnostics of :func:`cffbench.stats.compare`.
This package reads the run store; :mod:`cffbench.stats` below it takes frames and arrays only.
"""

from cffbench.analysis.analyze import Analysis, analyze_results
from cffbench.analysis.contrasts import PlanResult, analyze_runs
from cffbench.analysis.stored import analyze_store
from cffbench.analysis.saved import SavedOmnibus, is_fresh, load, load_omnibus, load_or_analyze, load_or_analyze_all, save
from cffbench.analysis.plan import Plan, plan_hash, resolve_plan

__all__ = ["Analysis", "Plan", "PlanResult", "SavedOmnibus", "analyze_results", "analyze_runs", "analyze_store", "is_fresh", "load", "load_omnibus", "load_or_analyze_all",
           "load_or_analyze", "plan_hash", "resolve_plan", "save"]
