"""The results store: one Parquet file per finished run, readable by any Parquet client.

Layout of a results directory::

    results/<study>/study.toml                  verbatim copy of the study file
    results/<study>/runs/<run_id>.parquet       one row per run (RUN_SCHEMA)
    results/<study>/curves/<run_id>.parquet     per-epoch records of that run (CURVE_SCHEMA)
    results/<study>/checkpoints/<run_id>.pt     an unfinished run's checkpoint (+ .json summary)

``pandas.read_parquet("results/<study>/runs")`` gives one row per run: every part file has the
same schema. Writes are atomic: a temp file whose name starts with ``.`` (which Parquet dataset
readers skip) in the same folder, fsync, then ``os.link`` (never replaces another process's
finished run) or ``os.replace``. A killed process leaves at most temp files, removed on the next
run once their process is gone.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import socket
import subprocess
import tomllib
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Optional, get_args, get_origin, get_type_hints

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cffbench.errors import StudyError
from cffbench.ff.config import TrainConfig, settings as train_settings
from cffbench.study.grid import RunTask
from cffbench.study.spec import Study, parse_study, plugin_paths

STUDY_FILE = "study.toml"
RUNS_DIR = "runs"
CURVES_DIR = "curves"
#: In-flight runs' checkpoints (cffbench.ff.checkpoint); git-ignored, deleted once stored.
CHECKPOINTS_DIR = "checkpoints"
#: Copies of the study's plugin files (what ``read_study`` loads for analyze / report).
PLUGINS_DIR = "plugins"

def _arrow_type(annotation: Any) -> pa.DataType:
    """The Parquet type of a ``TrainConfig`` field (or property) of type ``annotation``."""
    if get_origin(annotation) is Literal and all(isinstance(a, str) for a in get_args(annotation)):
        return pa.string()
    if get_origin(annotation) is tuple:
        return pa.string()    # layer widths as text, "500-500"
    known = {int: pa.int64(), float: pa.float64(), str: pa.string()}   # str: a registry's name
    if annotation in known:
        return known[annotation]
    raise TypeError(f"no Parquet column type for a TrainConfig field of type {annotation!r}")


def _parameter_fields() -> tuple[list[pa.Field], list[pa.Field]]:
    """``(leading, other)`` parameter columns, derived from ``TrainConfig``'s fields.

    Each field is a column of its own type, followed by the properties its ``Setting.store_after``
    names (``hidden``, then ``n_layers``); fields marked ``store_lead`` come first.
    """
    lead: list[pa.Field] = []
    rest: list[pa.Field] = []
    for name, info in TrainConfig.model_fields.items():
        setting = train_settings()[name]
        columns = [pa.field(name, _arrow_type(info.annotation))]
        columns += [pa.field(prop, _arrow_type(get_type_hints(getattr(TrainConfig, prop).fget)["return"]))
                    for prop in setting.store_after]
        (lead if setting.store_lead else rest).extend(columns)
    return lead, rest


_LEAD_PARAMETERS, _OTHER_PARAMETERS = _parameter_fields()
#: The run's parameters: every ``TrainConfig`` field (and ``n_layers``), with the data's ``n_train``
#: after the leading ones (``variant, alpha, seed``). Derived, never listed by hand: a new
#: ``TrainConfig`` field is a new column (and makes older part files a legacy schema).
PARAMETER_COLUMNS: tuple[str, ...] = tuple(
    f.name for f in (*_LEAD_PARAMETERS, pa.field("n_train", pa.int64()), *_OTHER_PARAMETERS))

RUN_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("study", pa.string()), ("dataset", pa.string()),
    *_LEAD_PARAMETERS, ("n_train", pa.int64()), *_OTHER_PARAMETERS,
    ("status", pa.string()), ("test_acc", pa.float64()), ("val_acc", pa.float64()),
    ("train_acc", pa.float64()), ("gamma_final", pa.float64()),
    ("gamma_final_layers", pa.string()), ("alpha_final", pa.string()),
    ("diverged_epoch", pa.int64()), ("duration_s", pa.float64()), ("device", pa.string()),
    ("started_at", pa.timestamp("us", tz="UTC")), ("cffbench_version", pa.string()),
    ("torch_version", pa.string()), ("numerics_version", pa.int64()), ("git_commit", pa.string()),
    ("hostname", pa.string()), ("error", pa.string()), ("notes", pa.string()),
    ("plugin", pa.string()), ("plugin_version", pa.string()), ("plugin_sha256", pa.string()),
    ("gradient", pa.string()), ("cpu_capability", pa.string()), ("torch_threads", pa.int64()),
])
#: Columns added for the extension surface (issue 14): runs stored before them are read with the
#: goodness filled in as the default it was (``identity_omits_default`` settings) and the rest
#: missing.
EXTENSION_COLUMNS = ("goodness", "plugin", "plugin_version", "plugin_sha256", "gradient")
#: The worker's CPU kernel level and torch thread count, which decide a CPU result's last bits
#: besides the code (:func:`cffbench.ff.checkpoint.numerics_environment`): runs stored before
#: them are read with both missing.
ENVIRONMENT_COLUMNS = ("cpu_capability", "torch_threads")


def _without(schema: pa.Schema, names: tuple[str, ...]) -> pa.Schema:
    return pa.schema([f for f in schema if f.name not in names])


#: Earlier run schemas, still finished runs, newest first: before the
#: :data:`ENVIRONMENT_COLUMNS`; before those and the :data:`EXTENSION_COLUMNS`; and before all of
#: them and ``numerics_version`` too (runs stored by cffbench <= d6f27be; the golden values of
#: version 1 were taken from d6f27be's engine, older commits are not checked), read with
#: ``numerics_version`` missing (<NA>).
LEGACY_RUN_SCHEMAS = (
    _without(RUN_SCHEMA, ENVIRONMENT_COLUMNS),
    _without(RUN_SCHEMA, (*ENVIRONMENT_COLUMNS, *EXTENSION_COLUMNS)),
    _without(RUN_SCHEMA, (*ENVIRONMENT_COLUMNS, *EXTENSION_COLUMNS, "numerics_version")))

CURVE_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("layer", pa.int64()), ("epoch", pa.int64()),
    ("loss", pa.float64()), ("g_pos", pa.float64()), ("g_neg", pa.float64()),
    ("gamma", pa.float64()), ("alpha_row", pa.string()),
])

DONE_STATUSES = ("ok", "diverged")


@lru_cache(maxsize=1)
def provenance() -> dict[str, str]:
    """``cffbench_version, torch_version, git_commit, hostname`` of this process."""
    import torch

    import cffbench

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(cffbench.__file__).parent, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"cffbench_version": cffbench.__version__, "torch_version": torch.__version__,
            "git_commit": commit, "hostname": socket.gethostname()}


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def run_row(task: RunTask, outcome) -> dict[str, Any]:
    """The run-row dict (keys = RUN_SCHEMA names) for one task and its outcome."""
    config, result = task.config, outcome.result
    environment = getattr(outcome, "environment", None) or {}
    row: dict[str, Any] = {
        "run_id": task.run_id, "study": task.study, "dataset": task.dataset,
        "n_train": outcome.n_train if outcome.n_train is not None else task.n_train,
    }
    for name, info in TrainConfig.model_fields.items():
        # A parameter that does not affect this run (alpha of ff, threshold of bp, ...) is missing;
        # the others are stored as the run id saw them (e.g. the canonical alpha of 2-layer CFF).
        value = task.effective.get(name)
        if value is not None and get_origin(info.annotation) is tuple:
            value = "-".join(str(v) for v in value)
        row[name] = value
        row.update({prop: getattr(config, prop) for prop in train_settings()[name].store_after})
    gammas = [float(g) for g in (getattr(result, "gamma_final", None) or [])]
    row.update({
        "status": outcome.status,
        "test_acc": _float(getattr(result, "test_acc", math.nan)),
        "val_acc": _float(getattr(result, "val_acc", math.nan)),
        "train_acc": _float(getattr(result, "train_acc", math.nan)),
        "gamma_final": sum(gammas) / len(gammas) if gammas else math.nan,
        "gamma_final_layers": json.dumps(gammas),
        "alpha_final": json.dumps([[float(a) for a in r] for r in
                                   (getattr(result, "alpha_final", None) or [])]),
        "diverged_epoch": getattr(result, "diverged_epoch", None),
        "duration_s": float(outcome.duration_s),
        "device": outcome.device,
        "started_at": outcome.started_at,
        **provenance(),
        # where the run ran (a worker's node; the driver's when a worker died), and what decides
        # its last bits there besides the code
        "hostname": environment.get("hostname") or provenance()["hostname"],
        "cpu_capability": environment.get("cpu_capability"),
        "torch_threads": environment.get("torch_threads"),
        # the engine that produced the result says which numerics it ran (a failed run: none)
        "numerics_version": getattr(result, "numerics_version", None),
        "error": outcome.error,
        "notes": json.dumps([str(n) for n in (getattr(result, "notes", None) or [])]),
        # several plugins (e.g. a variant from one, a goodness from another): ", "-joined
        "plugin": ", ".join(p.name for p in task.plugins) or None,
        "plugin_version": ", ".join(p.version for p in task.plugins) or None,
        "plugin_sha256": ", ".join(p.sha256 for p in task.plugins) or None,
        "gradient": getattr(result, "gradient", None),
    })
    return row


def curves_table(run_id: str, curves: Optional[pd.DataFrame]) -> pa.Table:
    """The run's per-epoch records as a CURVE_SCHEMA table (missing columns become null)."""
    curves = curves if curves is not None else pd.DataFrame()
    n = len(curves)
    arrays = []
    for fld in CURVE_SCHEMA:
        if fld.name == "run_id":
            arrays.append(pa.array([run_id] * n, pa.string()))
        elif fld.name not in curves:
            arrays.append(pa.nulls(n, fld.type))
        elif pa.types.is_string(fld.type):
            arrays.append(pa.array(curves[fld.name].fillna("").astype(str).tolist(), pa.string()))
        else:
            values = pd.to_numeric(curves[fld.name], errors="coerce")
            arrays.append(pa.array(values, fld.type, from_pandas=pa.types.is_integer(fld.type)))
    return pa.Table.from_arrays(arrays, schema=CURVE_SCHEMA)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temp_path(target: Path) -> Path:
    return target.parent / f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"


def write_atomic(target: Path, write: Any, replace: bool = True) -> bool:
    """Write ``target`` through a hidden temp file in the same folder.

    Parameters
    ----------
    target : final path.
    write : callable taking a binary file object.
    replace : if False, an existing ``target`` is kept (``os.link`` never overwrites).

    Returns
    -------
    bool
        False when ``replace`` is False and ``target`` already existed.
    """
    tmp = _temp_path(target)
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)
            except FileExistsError:
                return False
            finally:
                tmp.unlink(missing_ok=True)
        _fsync_dir(target.parent)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunStore:
    """One results directory: ownership check, scanning, atomic writes.

    Parameters
    ----------
    results_dir : the folder (``results/<study name>`` by default).
    """

    def __init__(self, results_dir: Path | str):
        self.root = Path(results_dir)
        self.runs_dir = self.root / RUNS_DIR
        self.curves_dir = self.root / CURVES_DIR
        self.study_file = self.root / STUDY_FILE
        self.checkpoints_dir = self.root / CHECKPOINTS_DIR

    # -- ownership ------------------------------------------------------------------------
    def check_owner(self, study: Study) -> Optional[str]:
        """Raise StudyError if this folder belongs to another study; return its study's text if
        any (read, not validated: its plugin copies may be of an older version)."""
        if self.study_file.is_file():
            text = self.study_file.read_text(encoding="utf-8")
            try:
                stored_name = tomllib.loads(text).get("name")
            except tomllib.TOMLDecodeError as exc:
                raise StudyError(f"{self.study_file}: invalid TOML: {exc}") from None
            if stored_name != study.name:
                raise StudyError(f"{self.root} holds results of study {stored_name!r}, not "
                                 f"{study.name!r}; pass --results DIR for a new folder")
            return text
        # Anything but our own entries (or hidden temp files of a process that is just
        # creating the store) means the folder is someone else's.
        foreign = self.root.exists() and (not self.root.is_dir() or any(
            not p.name.startswith(".")
            and p.name not in (RUNS_DIR, CURVES_DIR, STUDY_FILE, CHECKPOINTS_DIR, PLUGINS_DIR)
            for p in self.root.iterdir()))
        if foreign:
            raise StudyError(f"{self.root} exists and is not a cffbench results directory "
                             f"(no {STUDY_FILE}); pass --results with a new or empty folder")
        return None

    def claim(self, study: Study) -> bool:
        """Create the folders and keep the study file; returns True if the copy changed."""
        stored = self.check_owner(study)
        self.root.mkdir(parents=True, exist_ok=True)
        text = study.text
        if "name" not in tomllib.loads(text):
            # The name came from the file's stem; the copy is always study.toml, so record it.
            text = f"name = {json.dumps(study.name)}\n" + text
        changed = stored is not None and stored != text
        if stored is None or changed:
            write_atomic(self.study_file, lambda fh: fh.write(text.encode("utf-8")))
        source = study.source or Path("<study>")
        for path in plugin_paths(tomllib.loads(text), source if study.source else "<study>"):
            (self.root / PLUGINS_DIR).mkdir(exist_ok=True)
            data, copy = path.read_bytes(), self.root / PLUGINS_DIR / path.name
            if copy.is_file() and (old := copy.read_bytes()) != data:
                # the file was edited: its earlier runs are set aside, and so is the code they
                # ran (by content hash: never overwritten, never deleted)
                kept = self.root / "superseded" / PLUGINS_DIR / (
                    f"{hashlib.sha256(old).hexdigest()[:12]}-{path.name}")
                kept.parent.mkdir(parents=True, exist_ok=True)
                if not kept.exists():
                    write_atomic(kept, lambda fh, d=old: fh.write(d))
            write_atomic(copy, lambda fh, d=data: fh.write(d))
        self.runs_dir.mkdir(exist_ok=True)
        self.curves_dir.mkdir(exist_ok=True)
        return changed

    def set_aside(self, keep: set[str]) -> tuple[int, int]:
        """Keep ``runs/`` and ``curves/`` to the runs in ``keep`` (the current study's run ids).

        Part files of runs the study no longer holds (its file was edited) move to
        ``superseded/runs`` and ``superseded/curves``, so every reader of ``runs/`` sees only the
        current study; superseded runs the study holds again move back instead of being rerun.
        Nothing is deleted, and each move is one atomic rename. Returns ``(moved_aside, restored)``.
        """
        aside = self.root / "superseded"
        moved = restored = 0
        for folder, kind in ((self.runs_dir, RUNS_DIR), (self.curves_dir, CURVES_DIR)):
            target = aside / kind
            for path in sorted(folder.glob("*.parquet")) if folder.is_dir() else []:
                if path.stem not in keep and not path.name.startswith((".", "_")):
                    target.mkdir(parents=True, exist_ok=True)
                    os.replace(path, target / path.name)
                    moved += kind == RUNS_DIR
            for path in sorted(target.glob("*.parquet")) if target.is_dir() else []:
                if path.stem in keep and not (folder / path.name).exists():
                    os.replace(path, folder / path.name)
                    restored += kind == RUNS_DIR
        return moved, restored

    def remove_stale_temps(self) -> int:
        """Delete temp files left by processes that no longer run; returns how many."""
        removed = 0
        for folder in (self.root, self.runs_dir, self.curves_dir, self.checkpoints_dir):
            if not folder.is_dir():
                continue
            for tmp in folder.glob(".*.tmp"):
                parts = tmp.name.split(".")
                pid = int(parts[-3]) if len(parts) >= 4 and parts[-3].isdigit() else None
                if pid is None or not _pid_alive(pid):
                    tmp.unlink(missing_ok=True)
                    removed += 1
        return removed

    # -- reading ---------------------------------------------------------------------------
    def run_path(self, run_id: str) -> Path:
        return self.runs_dir / f"{run_id}.parquet"

    def curves_path(self, run_id: str) -> Path:
        return self.curves_dir / f"{run_id}.parquet"

    def run_status(self, run_id: str) -> Optional[str]:
        """``ok|diverged|failed`` of a stored run, ``corrupt`` if unreadable, None if absent."""
        path = self.run_path(run_id)
        if not path.exists():
            return None
        try:
            schema = pq.read_schema(path).remove_metadata()
            if not any(schema.equals(known) for known in (RUN_SCHEMA, *LEGACY_RUN_SCHEMAS)):
                return "corrupt"   # another version's columns or types: redo it in this schema
            table = pq.read_table(path, columns=["run_id", "status"])
            if table.num_rows != 1 or table["run_id"][0].as_py() != run_id:
                return "corrupt"
            status = table["status"][0].as_py()
            if status in DONE_STATUSES:
                pq.read_metadata(self.curves_path(run_id))
        except Exception:  # any unreadable part (truncated, garbage, missing curves) is redone
            return "corrupt"
        return status

    def statuses(self) -> dict[str, str]:
        """``{run_id: status}`` of every part file in ``runs/`` (``corrupt`` if unreadable)."""
        if not self.runs_dir.is_dir():
            return {}
        return {p.stem: self.run_status(p.stem) for p in sorted(self.runs_dir.glob("*.parquet"))
                if not p.name.startswith((".", "_"))}

    def is_done(self, run_id: str) -> bool:
        return self.run_status(run_id) in DONE_STATUSES

    def numerics_versions(self, run_ids: list[str]) -> dict[Optional[int], int]:
        """``{numerics_version: count}`` over the stored runs ``run_ids`` (``None``: stored before
        the column existed)."""
        counts: dict[Optional[int], int] = {}
        for rid in run_ids:
            names = pq.read_schema(self.run_path(rid)).names
            version = (pq.read_table(self.run_path(rid), columns=["numerics_version"])
                       ["numerics_version"][0].as_py() if "numerics_version" in names else None)
            counts[version] = counts.get(version, 0) + 1
        return counts

    def discard_checkpoint(self, run_id: str) -> None:
        """Delete a run's checkpoint and its summary (the run is stored, or must start over)."""
        for suffix in (".pt", ".json"):
            (self.checkpoints_dir / f"{run_id}{suffix}").unlink(missing_ok=True)

    def checkpointed_runs(self) -> list[str]:
        """Run ids that have a checkpoint file."""
        if not self.checkpoints_dir.is_dir():
            return []
        return sorted(p.stem for p in self.checkpoints_dir.glob("*.pt")
                      if not p.name.startswith("."))

    def discard(self, run_id: str) -> None:
        """Remove a run's files (a corrupt part file, before redoing the run)."""
        self.run_path(run_id).unlink(missing_ok=True)
        self.curves_path(run_id).unlink(missing_ok=True)

    # -- writing ---------------------------------------------------------------------------
    def record(self, task: RunTask, outcome, force: bool = False) -> bool:
        """Store one outcome: curves first, then the run row (its presence marks the run done).

        Without ``force`` a finished (ok / diverged) row written meanwhile by another process
        is kept and ``False`` returned; a failed or corrupt one is replaced.
        """
        if not force and self.is_done(task.run_id):
            return False     # another process finished this run meanwhile: keep its files
        if outcome.result is not None:
            table = curves_table(task.run_id, getattr(outcome.result, "curves", None))
            write_atomic(self.curves_path(task.run_id), lambda fh: pq.write_table(table, fh))
        row = pa.Table.from_pylist([run_row(task, outcome)], schema=RUN_SCHEMA)
        path = self.run_path(task.run_id)
        write = lambda fh: pq.write_table(row, fh)  # noqa: E731
        if force:
            return write_atomic(path, write)
        if write_atomic(path, write, replace=False):
            return True
        if self.is_done(task.run_id):
            return False
        return write_atomic(path, write)

def _current_run_table(table: pa.Table) -> pa.Table:
    """A run table of a legacy schema in :data:`RUN_SCHEMA` (its new columns null)."""
    if table.schema.remove_metadata().equals(RUN_SCHEMA) or not any(
            table.schema.remove_metadata().equals(s) for s in LEGACY_RUN_SCHEMAS):
        return table
    columns = [table[f.name] if f.name in table.column_names else _legacy_column(table, f)
               for f in RUN_SCHEMA]
    return pa.Table.from_arrays(columns, schema=RUN_SCHEMA)


def _legacy_column(table: pa.Table, column: pa.Field) -> pa.Array:
    """A column a legacy run table lacks: a setting added later holds the default those runs
    trained with (missing where the variant does not read it, as ``bp``'s), anything else null."""
    name = column.name
    if name == "gradient":   # every run before the column: the FF engine's manual gradient, bp's autograd
        return pa.array(["autograd" if v == "bp" else "manual" for v in table["variant"].to_pylist()],
                        column.type)
    setting = train_settings().get(name)
    if setting is None or not setting.identity_omits_default:
        return pa.nulls(table.num_rows, column.type)
    default = TrainConfig.model_fields[name].default
    values = [None if setting.bp_ignores and variant == "bp" else default
              for variant in table["variant"].to_pylist()]
    return pa.array(values, column.type)


def _read_dir(folder: Path, what: str, results_dir: Path) -> pd.DataFrame:
    files = sorted(p for p in folder.glob("*.parquet") if not p.name.startswith((".", "_"))) \
        if folder.is_dir() else []
    if not files:
        raise StudyError(f"no {what} in {results_dir}; run `cffbench run STUDY` first")
    tables = []
    for path in files:
        try:
            table = pq.read_table(path)
        except Exception:
            raise StudyError(f"{path} is unreadable; rerun the study (`cffbench run`) "
                             f"to redo that run") from None
        tables.append(_current_run_table(table) if what == "runs" else table)
    return pa.concat_tables(tables, promote_options="default").to_pandas()


def read_runs(results_dir: Path | str) -> pd.DataFrame:
    """All stored runs, one row each, columns as in :data:`RUN_SCHEMA`.

    Parameters not used by a variant (e.g. ``alpha`` of ``ff``) are missing values; failed
    runs have NaN accuracies and an ``error``.

    Raises
    ------
    StudyError
        If the store is missing or empty, or a part file is unreadable.
    """
    results_dir = Path(results_dir)
    runs = _read_dir(results_dir / RUNS_DIR, "runs", results_dir)
    for column in ("numerics_version", "torch_threads"):   # <NA> for runs stored before them
        if column in runs:
            runs[column] = runs[column].astype("Int64")
    return runs.sort_values(["dataset", "variant", "seed", "run_id"]).reset_index(drop=True)


def read_curves(results_dir: Path | str) -> pd.DataFrame:
    """Per-epoch records of every stored run, long format (:data:`CURVE_SCHEMA` columns)."""
    results_dir = Path(results_dir)
    return _read_dir(results_dir / CURVES_DIR, "curves", results_dir)


def read_study(results_dir: Path | str) -> Study:
    """The study kept beside the results (``study.toml``)."""
    path = Path(results_dir) / STUDY_FILE
    if not path.is_file():
        raise StudyError(f"no runs in {results_dir} (no {STUDY_FILE}); "
                         f"run `cffbench run STUDY` first")
    text = path.read_text(encoding="utf-8")
    try:
        return parse_study(text, path, plugin_dir=Path(results_dir) / PLUGINS_DIR)
    except StudyError as exc:
        # only a name the study cannot resolve can be for want of the package
        missing = ("Input should be" in str(exc)
                   and _uninstalled_entry_point_plugins(Path(results_dir), text))
        if not missing:
            raise
        raise StudyError(f"{exc}; its runs used {', '.join(missing)} (installed entry points, not "
                         f"kept in the results folder), which this environment lacks: install "
                         f"them to analyse this store") from None


def _uninstalled_entry_point_plugins(results_dir: Path, study_text: str) -> list[str]:
    """``name version`` of each plugin the stored runs name that is neither one of the study's
    plugin files nor an installed distribution (so the study's names cannot be resolved)."""
    import importlib.metadata

    files = {Path(p).stem for p in tomllib.loads(study_text).get("plugins", [])
             if isinstance(p, str)}
    try:
        runs = _read_dir(results_dir / RUNS_DIR, "runs", results_dir)
    except StudyError:
        return []
    used = set()
    for names, versions in runs.reindex(columns=["plugin", "plugin_version"]).dropna(
            subset=["plugin"]).itertuples(index=False):
        versions = versions.split(", ") if isinstance(versions, str) else []
        used.update(itertools.zip_longest(str(names).split(", "), versions, fillvalue=""))
    missing = []
    for name, version in sorted(used):
        if name in files:
            continue
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(f"{name} {version}".strip())
    return missing
