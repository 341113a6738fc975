"""Studies: a TOML grid of runs, executed where asked, stored as Parquet, resumed where it stopped.

Public API (see docs/architecture.md and docs/studies.md)::

    load_study(path) -> Study                     parse + validate a study file
    expand(study) -> list[RunTask]                deduplicated runs with stable run ids
    run_study(study, results_dir=None, ...)       run what is missing, store each result
    plan_study(study, results_dir=None, ...)      planned / done / remaining + time estimate
    study_status(results_dir) -> DataFrame        planned / done / failed per dataset x variant
    in_flight_runs(results_dir) -> DataFrame      unfinished runs with a checkpoint, and where
    read_runs / read_curves / read_study(results_dir)
"""

from cffbench.study.executors import LocalExecutor, SerialExecutor, make_executor
from cffbench.study.grid import RunTask, canonical_json, expand, run_id
from cffbench.study.planning import StudyPlan, plan_study
from cffbench.study.runner import RunSummary, in_flight_runs, run_study, study_status
from cffbench.study.spec import Study, load_study, parse_study
from cffbench.study.store import (CURVE_SCHEMA, RUN_SCHEMA, RunStore, read_curves, read_runs,
                                  read_study)
from cffbench.study.worker import RunOutcome

__all__ = ["CURVE_SCHEMA", "LocalExecutor", "RUN_SCHEMA", "RunOutcome", "RunStore", "RunSummary",
           "RunTask", "SerialExecutor", "Study", "StudyPlan", "canonical_json", "expand",
           "load_study", "make_executor", "parse_study", "plan_study", "read_curves", "read_runs",
           "read_study", "run_id", "run_study", "study_status",
           "in_flight_runs"]
