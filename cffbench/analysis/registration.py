"""Was the plan analysed the one declared before the runs? Read from the store's plan record
(:mod:`cffbench.study.plan_record`, written by ``cffbench run``).

Each recorded ``[analysis]`` table is resolved like the study's own (:func:`resolve_plan`) and
compared by its hash, so only a change of a decision field (:data:`DECISION_FIELDS`) counts.
The outcome, one of :data:`STATUSES`, is printed with the plan in every output:

- ``pre-registered``: the plan analysed is the first one recorded, and no run was stored then;
- ``recorded late``: the plan analysed is the first one recorded, but runs were already stored
  (the store cannot show that the plan came first; not a change);
- ``deviation``: the plan analysed differs from the first one recorded, and it was first
  recorded (or, never recorded, is analysed now) when runs were already stored: a deviation
  from the pre-registered plan, reported loudly;
- ``amended before the runs``: it differs from the first recorded plan but was recorded before
  any run was stored;
- ``no record``: the store has no plan record (written before cffbench kept one, or by hand).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cffbench.analysis.plan import Plan, resolve_plan
from cffbench.errors import StudyError

STATUSES = ("pre-registered", "recorded late", "deviation", "amended before the runs", "no record")


@dataclass(frozen=True)
class Registration:
    """``status`` (one of :data:`STATUSES`), ``text`` (the sentence every output prints),
    ``record_hash`` (sha256 of the record file, 12 hex digits, "" without one: a saved analysis
    made before the record changed is stale)."""

    status: str
    text: str
    record_hash: str = ""

    @property
    def deviation(self) -> bool:
        return self.status == "deviation"


def _entry_hash(entry: dict) -> str | None:
    from cffbench.study.spec import AnalysisSection

    try:
        return resolve_plan(AnalysisSection(**entry["analysis"])).hash
    except (TypeError, ValueError, StudyError):
        return None   # a table this cffbench no longer reads: never equal to the plan analysed


def _when(entry: dict) -> str:
    commit = str(entry.get("git_commit") or "")[:12]
    return entry["first_seen"] + (f" (cffbench {commit})" if commit else "")


def assess(entries: list[dict], plan: Plan, record_hash: str = "") -> Registration:
    """The :class:`Registration` of ``plan`` against the plan record ``entries`` (oldest first)."""
    if not entries:
        return Registration("no record", f"Plan {plan.hash}: this store has no plan record (stores "
                            "written before cffbench recorded plans have none), so whether the plan "
                            "came before its runs cannot be checked from the store.")
    hashes = [_entry_hash(e) for e in entries]
    first, first_hash = entries[0], hashes[0]
    mine = next((e for e, h in zip(entries, hashes) if h == plan.hash), None)
    n_then = len(mine["runs_stored"]) if mine is not None else None
    if first_hash == plan.hash:
        if not first["runs_stored"]:
            return Registration("pre-registered", f"Plan {plan.hash} was pre-registered: first recorded "
                                f"{_when(first)}, before any run was stored.", record_hash)
        return Registration("recorded late", f"Plan {plan.hash} is the first plan this store recorded, "
                            f"{_when(first)}, but {len(first['runs_stored'])} run(s) were already "
                            "stored then, so the store cannot show that it came before them.", record_hash)
    first_name = first_hash or "(unreadable)"
    if mine is not None and n_then == 0:
        return Registration("amended before the runs", f"Plan {plan.hash} replaced the first recorded "
                            f"plan {first_name} ({_when(first)}) on {_when(mine)}, before any run was "
                            "stored.", record_hash)
    since = (f"first recorded {_when(mine)}, with {n_then} run(s) already stored" if mine is not None
             else "never recorded by cffbench run (the study file beside the runs was changed "
                  "after the last run)")
    return Registration("deviation", f"DEVIATION FROM THE PRE-REGISTERED PLAN: the plan analysed, "
                        f"{plan.hash}, is not the plan first recorded for this store ({first_name}, "
                        f"{_when(first)}, {len(first['runs_stored'])} run(s) stored then); it was "
                        f"{since}. Its decisions are not the pre-registered ones.", record_hash)


def store_registration(results_dir: Path | str, plan: Plan) -> Registration:
    """:func:`assess` of ``plan`` against ``results_dir``'s plan record."""
    from cffbench.study.plan_record import PLAN_RECORD, read_plan_record

    path = Path(results_dir) / PLAN_RECORD
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.is_file() else ""
    return assess(read_plan_record(results_dir), plan, digest)


def registration_from_json(meta: dict) -> Registration:
    """The :class:`Registration` a saved ``plan.json`` carries (``no record`` for older files)."""
    saved = meta.get("registration")
    if not saved:
        return Registration("", "")
    return Registration(saved["status"], saved["text"], saved.get("record_hash", ""))


def registration_json(registration: Registration) -> dict:
    return {"status": registration.status, "text": registration.text,
            "record_hash": registration.record_hash}


__all__ = ["Registration", "STATUSES", "assess", "registration_from_json", "registration_json",
           "store_registration"]
