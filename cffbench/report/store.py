"""Read one results directory into the frames the report needs.

The run store belongs to :mod:`cffbench.study` (``read_runs``, ``read_curves``, ``read_study``,
``expand``); this module only calls it and turns an unusable directory into a one-line
:class:`~cffbench.errors.ReportError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cffbench.errors import CffbenchError, ReportError
from cffbench.study import expand, read_curves, read_runs, read_study

#: Columns the report reads from the run rows (the store's contract has more).
REQUIRED_RUN_COLUMNS = ("run_id", "dataset", "variant", "seed", "status", "test_acc")


@dataclass
class ReportInputs:
    """Everything one report is built from.

    Attributes
    ----------
    results_dir : Path
    runs : DataFrame
        One row per run (all statuses), the store's run-row columns.
    curves : DataFrame
        Long format, one row per (run_id, layer, epoch): ``loss, g_pos, g_neg, gamma, alpha_row``;
        empty when no curves were stored.
    study_name, study_description : str
    planned : int or None
        Size of the study's expanded grid; None when it cannot be computed.
    notes : list of str
        Problems met while reading that the report must mention.
    """

    results_dir: Path
    runs: pd.DataFrame
    curves: pd.DataFrame
    study_name: str
    study_description: str
    planned: int | None
    notes: list[str] = field(default_factory=list)


def _read_curves(results_dir: Path, notes: list[str]) -> pd.DataFrame:
    try:
        return read_curves(results_dir)
    except CffbenchError as exc:  # a study without curves still gets a report
        notes.append(f"training curves unavailable: {' '.join(str(exc).split())}")
        return pd.DataFrame()


def _study_header(results_dir: Path, notes: list[str]) -> tuple[str, str, int | None]:
    """Name, description and planned grid size (``len(expand(study))``) of the stored study."""
    name, description, planned = results_dir.name, "", None
    try:
        study = read_study(results_dir)
    except CffbenchError as exc:
        notes.append(f"study file unusable, planned run count unknown: "
                     f"{' '.join(str(exc).split())}")
        return name, description, planned
    try:
        planned = len(expand(study))
    except CffbenchError as exc:
        notes.append(f"planned run count unknown: {' '.join(str(exc).split())}")
    return study.name, study.description, planned


def load_inputs(results_dir: Path | str) -> ReportInputs:
    """Read runs, curves and the study header of ``results_dir``.

    Raises
    ------
    ReportError
        When the directory is missing, holds no runs, or its runs lack the required columns.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ReportError(f"results directory {results_dir} does not exist; "
                          "pass the folder a study wrote (e.g. results/<study-name>)")
    try:
        runs = read_runs(results_dir)
    except CffbenchError as exc:  # the store's message already names the folder and the fix
        raise ReportError(str(exc)) from None
    if runs.empty:
        raise ReportError(f"no runs found in {results_dir / 'runs'}; "
                          "run the study first (cffbench run STUDY.toml)")
    missing = [c for c in REQUIRED_RUN_COLUMNS if c not in runs.columns]
    if missing:
        raise ReportError(f"runs in {results_dir / 'runs'} lack the column(s) {', '.join(missing)}; "
                          "they were not written by cffbench's run store")
    notes: list[str] = []
    runs = in_display_order(runs)
    curves = _read_curves(results_dir, notes)
    name, description, planned = _study_header(results_dir, notes)
    return ReportInputs(results_dir, runs, curves, name, description, planned, notes)


def in_display_order(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs sorted as the report shows them: datasets in registry order (mnist first), variants
    in :data:`~cffbench.report.tables.VARIANT_ORDER`, then seed; unknown names go last."""
    from cffbench.data import DATASETS
    from cffbench.report.tables import VARIANT_ORDER

    dataset_rank = {name: i for i, name in enumerate(DATASETS)}
    variant_rank = {name: i for i, name in enumerate(VARIANT_ORDER)}
    keys = pd.DataFrame({"d": runs["dataset"].map(dataset_rank).fillna(len(dataset_rank)),
                         "dn": runs["dataset"].astype(str),
                         "v": runs["variant"].map(variant_rank).fillna(len(variant_rank)),
                         "s": runs["seed"]}, index=runs.index)
    order = keys.sort_values(["d", "dn", "v", "s"], kind="stable").index
    return runs.loc[order].reset_index(drop=True)


def json_list(text) -> list:
    """Decode a JSON-list cell of the run store (``gamma_final_layers``, ``alpha_final``,
    ``notes``); empty or malformed cells give ``[]``."""
    if text is None or (isinstance(text, float)) or text == "":
        return []
    if isinstance(text, (list, tuple)):
        return list(text)
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return []
    return value if isinstance(value, list) else []


def runs_end_epoch(runs: pd.DataFrame) -> int:
    """When the last run of a store ended, in Unix seconds: ``max(started_at + duration_s)``.

    ``scripts/evidence.sh`` dates the committed reports with it (``SOURCE_DATE_EPOCH``), so a
    report rebuilt from the same store is the same file.
    """
    if "started_at" not in runs.columns or runs["started_at"].isna().all():
        raise ReportError("the runs carry no start times (started_at), so the store has no date")
    ends = pd.to_datetime(runs["started_at"], utc=True) + pd.to_timedelta(
        runs["duration_s"].fillna(0.0), unit="s")
    return int(ends.max().timestamp())
