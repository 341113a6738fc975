"""When a store's analysis plan was first declared: ``results/<study>/plan_record.json``.

``cffbench run`` keeps the study file beside the runs; every time the ``[analysis]`` table it
declares differs from the last one recorded (or none was recorded yet), one entry is appended:

``{"analysis": {...}, "first_seen": "<UTC ISO time>", "git_commit": "<cffbench commit>",
"runs_stored": [<run ids of the finished runs already in the store>]}``

``analysis`` is the declared table with the study's defaults filled in
(:class:`cffbench.study.spec.AnalysisSection`, all keys), so an edit of comments or prose in the
study file records nothing. Entries are never rewritten or removed: the file is the store's
evidence of which plan came before which runs, and :mod:`cffbench.analysis.registration` reads it
to say whether the plan analysed is the one declared first, and whether it changed after runs
existed (a deviation from the pre-registered plan, printed in every output).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from cffbench.errors import StudyError
from cffbench.study.spec import Study

PLAN_RECORD = "plan_record.json"


def declared_analysis(study: Study) -> dict[str, Any]:
    """The study's ``[analysis]`` table with every default filled in (JSON-ready)."""
    return json.loads(study.analysis.model_dump_json())


def read_plan_record(results_dir: Path | str) -> list[dict[str, Any]]:
    """The entries of a store's plan record, oldest first; ``[]`` when it has none.

    Raises
    ------
    StudyError
        The file exists but is not a plan record.
    """
    path = Path(results_dir) / PLAN_RECORD
    if not path.is_file():
        return []
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["declared"]
        if not all(isinstance(e, dict) and "analysis" in e and "first_seen" in e for e in entries):
            raise ValueError("an entry lacks analysis or first_seen")
    except (ValueError, KeyError, TypeError) as exc:
        raise StudyError(f"{path}: not a cffbench plan record ({exc}); restore it from version "
                         "control, it is the store's evidence of when its plan was declared") from None
    return entries


def record_plan(results_dir: Path | str, study: Study, runs_stored: list[str], git_commit: str = "",
                now: dt.datetime | None = None) -> bool:
    """Append the study's plan to the store's record when it differs from the last entry;
    returns True when an entry was added. ``runs_stored``: the finished runs already stored."""
    from cffbench.study.store import write_atomic

    root = Path(results_dir)
    entries = read_plan_record(root)
    analysis = declared_analysis(study)
    if entries and entries[-1]["analysis"] == analysis:
        return False
    when = (now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
    entries.append({"analysis": analysis, "first_seen": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "git_commit": git_commit, "runs_stored": sorted(runs_stored)})
    text = json.dumps({"declared": entries}, indent=1, sort_keys=True) + "\n"
    write_atomic(root / PLAN_RECORD, lambda fh: fh.write(text.encode("utf-8")))
    return True
