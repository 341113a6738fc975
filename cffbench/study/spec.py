"""The study file: a TOML declaration of datasets x training grid x seeds, validated by pydantic.

A study file has the sections ``[data]``, ``[train]``, ``[collab]``, ``[grid]``,
``[execution]`` and ``[analysis]`` (the pre-registered analysis plan; it never enters a run id) plus the top-level keys ``name``, ``description`` and ``seeds``. Every key of
``[train]`` / ``[collab]`` may instead appear in ``[grid]`` as a list, which makes it an axis of
the study; the study is the product of the grid axes x datasets x seeds. The ``[train]`` and
``[collab]`` keys, their types, ranges and defaults, the ``[grid]`` axes and the ``seeds`` entries
are derived from :class:`~cffbench.ff.TrainConfig` (each field's ``Setting.section``), never
declared here, so they cannot drift from what a run accepts. Unknown keys are
rejected. Every mistake raises :class:`~cffbench.errors.StudyError` with one line that names the
file, the key and what is allowed.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import pydantic
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from cffbench.errors import StudyError
from cffbench.ff.config import TrainConfig, Variant, describe_error, section_fields

ExecutorName = Literal["serial", "local", "dask"]

_STRICT = ConfigDict(extra="forbid", frozen=True)


def _section_model(name: str, section: str, doc: str) -> type[BaseModel]:
    """A study-file section whose keys are the ``TrainConfig`` fields of ``section``.

    Each key has ``TrainConfig``'s type, constraints, default and description, so a value is
    accepted or rejected here exactly as ``TrainConfig`` would, with the same message.
    """
    fields: dict[str, Any] = {}
    for key in section_fields(section):
        info = TrainConfig.model_fields[key]
        fields[key] = (info.rebuild_annotation(), Field(info.default, description=info.description))
    return pydantic.create_model(name, __config__=_STRICT, __doc__=doc, **fields)


TrainSection = _section_model(
    "TrainSection", "train", "``[train]``: the per-run training settings (``TrainConfig``'s).")
CollabSection = _section_model(
    "CollabSection", "collab", "``[collab]``: the collaboration settings, ignored by ``ff`` and ``bp``.")
_SECTIONS = {"train": TrainSection, "collab": CollabSection}

#: Every key a ``[grid]`` may hold, with the section it belongs to.
GRID_KEYS: dict[str, str] = {key: section for section, model in _SECTIONS.items()
                             for key in model.model_fields}


def _grid_model() -> type[BaseModel]:
    """A ``[grid]`` model whose fields are non-empty lists of the section fields' types."""
    fields: dict[str, Any] = {}
    for section in _SECTIONS.values():
        for key, info in section.model_fields.items():
            item = info.rebuild_annotation()
            fields[key] = (Optional[Annotated[list[item], Field(min_length=1)]], None)
    return pydantic.create_model("GridSection", __config__=_STRICT, **fields)


GridSection = _grid_model()
#: One entry of the top-level ``seeds`` list: validated as ``TrainConfig.seed`` (strict, 0 <= s < 2^63).
_Seed = TrainConfig.model_fields["seed"].rebuild_annotation()


def _dataset_registry() -> dict:
    try:
        from cffbench.data import DATASETS
    except ImportError:  # the data package's __init__ may not re-export it yet
        from cffbench.data.registry import DATASETS
    return DATASETS


class DataSection(BaseModel):
    """``[data]``: which datasets, and how much of the 50k training split."""

    model_config = _STRICT

    datasets: Annotated[list[str], Field(min_length=1)] = ["mnist", "fashion-mnist"]
    n_train: Optional[Annotated[int, Field(ge=1)]] = None

    @field_validator("datasets")
    @classmethod
    def _known_datasets(cls, names: list[str]) -> list[str]:
        known = _dataset_registry()
        for name in names:
            if name not in known:
                raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(known)}")
        if len(set(names)) != len(names):
            raise ValueError("datasets are listed more than once")
        return names

    @model_validator(mode="after")
    def _n_train_fits_every_dataset(self) -> "DataSection":
        # Caught here, a bad n_train is one line and an untouched store, not one failed run each.
        if self.n_train is None:
            return self
        known = _dataset_registry()
        for name in self.datasets:
            info = known.get(name)
            low, high = getattr(info, "n_classes", 1), getattr(info, "n_train_split", None)
            if self.n_train < low or (high is not None and self.n_train > high):
                allowed = f"{low}..{high}" if high is not None else f">= {low}"
                raise ValueError(f"n_train = {self.n_train} does not fit {name} (allowed {allowed}; "
                                 f"omit n_train to use the whole training split)")
        return self


class SlurmSection(BaseModel):
    """``[execution.slurm]``: SLURM jobs for the ``dask`` executor (dask_jobqueue.SLURMCluster).

    Each of ``jobs`` jobs asks for ``cores`` CPUs, ``memory``, ``walltime`` and ``gpus`` GPUs
    (``--gres=gpu:N``) on partition ``queue``, and runs ``cores`` single-threaded workers.
    ``interface``: the network interface (e.g. ``"ib0"``) that the Dask scheduler (on the
    machine that runs ``cffbench run``) and the workers (on the compute nodes) listen on; whether
    it exists is checked when the cluster starts. ``log_directory``: where the jobs' stdout and
    stderr go (``#SBATCH -o`` / ``-e``; relative to where ``cffbench run`` runs; created there).
    ``local_directory``: the workers' scratch folder on the compute node (``--local-directory``,
    e.g. ``"$TMPDIR"``: expanded by the job's shell, not here).
    """

    model_config = _STRICT

    queue: str
    cores: Annotated[int, Field(ge=1)] = 1
    memory: Annotated[str, Field(pattern=r"^\d+(\.\d+)?\s*[KMGT]i?B$")] = "4GB"
    walltime: Annotated[str, Field(pattern=r"^(\d+-)?\d{1,2}:\d{2}:\d{2}$")] = "01:00:00"
    jobs: Annotated[int, Field(ge=1)] = 1
    gpus: Annotated[int, Field(ge=0)] = 0
    account: Optional[str] = None
    extra_directives: list[str] = []    # e.g. ["--qos=long"], each becomes an #SBATCH line
    prologue: list[str] = []            # shell lines before the worker starts (module load ...)
    interface: Optional[str] = None         # e.g. "ib0"
    log_directory: Optional[str] = None     # e.g. "slurm-logs"
    local_directory: Optional[str] = None   # e.g. "$TMPDIR"

    @field_validator("interface")
    @classmethod
    def _interface_name(cls, name: Optional[str]) -> Optional[str]:
        # what Linux allows (IFNAMSIZ): 1-15 characters, none of them whitespace or "/"
        if name is not None and not re.fullmatch(r"[^\s/]{1,15}", name):
            raise ValueError('must be a network interface name such as "ib0" or "eth0" '
                             '(1-15 characters, no spaces or "/")')
        return name

    @field_validator("log_directory", "local_directory")
    @classmethod
    def _folder(cls, folder: Optional[str]) -> Optional[str]:
        # dask_jobqueue writes it into the job script unquoted
        if folder is not None and not re.fullmatch(r"\S+", folder):
            raise ValueError("must be a folder path without spaces")
        return folder


class ExecutionSection(BaseModel):
    """``[execution]``: how runs are executed (each may be overridden on the command line)."""

    model_config = _STRICT

    executor: ExecutorName = "local"
    workers: Optional[Annotated[int, Field(ge=1)]] = None   # None: one per CPU core
    device: str = "auto"
    # serial / local only: train the runs that differ only in seed as one batched model
    # (cffbench.ff.stacked; same results within float rounding; pays off on GPUs, opt-in)
    stack_seeds: pydantic.StrictBool = False
    # local executor on CUDA: concurrent runs per GPU; "auto" sizes it from the free memory and
    # the largest run's estimated peak (cffbench.study.gpu); an execution setting, not in run ids
    tasks_per_gpu: Union[Annotated[int, Field(ge=1, strict=True)], Literal["auto"]] = 1
    # dask only: a running scheduler, extra attempts after a worker died, SLURM jobs
    scheduler: Optional[Annotated[str, Field(pattern=r"^[a-z]+://\S+$")]] = None
    retries: Annotated[int, Field(ge=0)] = 2
    slurm: Optional[SlurmSection] = None
    # checkpoint each run every N epochs (0 = off) or "auto" (every ~4 minutes of training,
    # cffbench.ff.checkpoint); an execution setting, not in run ids
    checkpoint_every: Union[Annotated[int, Field(ge=0, strict=True)], Literal["auto"]] = "auto"

    @field_validator("device")
    @classmethod
    def _known_device(cls, device: str) -> str:
        return validate_device(device)

    @field_validator("checkpoint_every", mode="before")
    @classmethod
    def _checkpoint_every(cls, value: Any) -> Any:
        from cffbench.ff.checkpoint import validate_every

        message = 'must be an integer >= 0 (0 = off) or "auto"'   # the wrapper adds the value
        if isinstance(value, str) and value != "auto":   # TOML "5" is a string: say so
            raise ValueError(message)
        try:
            return validate_every(value)
        except ValueError:
            raise ValueError(message) from None

    @field_validator("tasks_per_gpu", mode="before")
    @classmethod
    def _tasks_per_gpu(cls, value: Any) -> Any:
        # one clear clause instead of pydantic's one per union member
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        raise ValueError('must be a positive integer or "auto"')


class AnalysisSection(BaseModel):
    """``[analysis]``: the analysis plan, fixed before the runs (it never enters a run id).

    Every key is optional; the documented defaults are

    - ``reference = "ff"`` and ``primary = ["f-cff", "a-cff"]``: the primary contrasts are each
      primary variant minus the reference, per dataset and per level of every other grid axis
      (variants that ignore an axis, such as FF for θ placement, are shared across its levels);
      secondary, in a family of their own: each other variant minus the reference (BP − FF)
      and each pair of primary variants (A-CFF − F-CFF); no other pair is tested (with
      ``primary = ["a-cff"]``, F-CFF − FF is secondary but A-CFF − F-CFF is not);
    - ``adjust = "holm"``: Holm over the primary contrasts of one dataset (and, separately, over
      the secondary ones); ``"bonferroni"`` or ``"none"`` instead;
    - ``test = "t"``: the paired t-test; ``"permutation"`` (sign flips: exact for
      n <= ``permutation_exact_max_n``, else ``permutation_resamples`` Monte Carlo flips from
      ``permutation_seed``) or ``"wilcoxon"`` (signed-rank; Hodges–Lehmann interval);
    - ``alpha = 0.05`` and ``power = 0.8`` (for "seeds needed");
    - ``sesoi_pp``: the smallest effect of interest in percentage points; default the claim being
      tested, the paper's A-CFF − FF gain on MNIST in ``report/paper_values.toml`` (1.2 pp);
    - ``margin_pp``: the equivalence margin in pp; default ``sesoi_pp``;
    - ``pilot_seeds = 0``: when positive, the first ``pilot_seeds`` seeds (in order) are analysed
      again alone and reported as a pilot (its SD and "seeds needed"); it decides nothing.
    """

    # strict: a string "0.05" or a boolean where a number belongs is a mistake, not a value
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    reference: Variant = "ff"
    primary: Annotated[list[Variant], Field(min_length=1)] = ["f-cff", "a-cff"]
    adjust: Literal["holm", "bonferroni", "none"] = "holm"
    test: Literal["t", "permutation", "wilcoxon"] = "t"
    alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.05
    power: Annotated[float, Field(gt=0, lt=1)] = 0.8
    sesoi_pp: Optional[Annotated[float, Field(gt=0, lt=100)]] = None
    margin_pp: Optional[Annotated[float, Field(gt=0, lt=100)]] = None
    permutation_exact_max_n: Annotated[int, Field(ge=1, le=20)] = 15
    permutation_resamples: Annotated[int, Field(ge=100, le=1_000_000)] = 10000
    permutation_seed: Annotated[int, Field(ge=0)] = 0
    pilot_seeds: Annotated[int, Field(ge=0)] = 0

    @model_validator(mode="after")
    def _reference_not_primary(self) -> "AnalysisSection":
        if self.reference in self.primary:
            raise ValueError(f"the reference {self.reference!r} cannot also be a primary variant")
        if len(set(self.primary)) != len(self.primary):
            raise ValueError("primary lists a variant more than once")
        return self


def validate_device(device: str) -> str:
    """Return ``device`` if it is ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (what train_run takes)."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise ValueError(f"unknown device {device!r}; allowed: auto, cpu, cuda, cuda:N")
    return device


class Study(BaseModel):
    """A validated study file.

    The grid is ``product(grid axes) x data.datasets x seeds``; :func:`cffbench.study.expand`
    turns it into deduplicated runs. ``source`` is the file it was read from (not a TOML key).
    """

    model_config = _STRICT

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    description: str = ""
    # plugin files (relative to the study file), loaded before the rest is validated
    plugins: list[str] = []
    seeds: Annotated[list[_Seed], Field(min_length=1)] = [0]  # type: ignore[valid-type]
    data: DataSection = DataSection()
    train: TrainSection = TrainSection()
    collab: CollabSection = CollabSection()
    grid: GridSection = GridSection()  # type: ignore[valid-type]
    execution: ExecutionSection = ExecutionSection()
    analysis: AnalysisSection = AnalysisSection()
    source: Optional[Path] = Field(default=None, exclude=True)
    _text: str = PrivateAttr(default="")

    @property
    def text(self) -> str:
        """The TOML text the study was parsed from (kept verbatim beside its results)."""
        return self._text

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError("seeds are listed more than once")
        return seeds

    @model_validator(mode="after")
    def _plan_fits_the_grid(self) -> "Study":
        """An ``[analysis]`` that names a variant the study never runs, or a pilot larger than
        its seeds, could only ever report 'not yet run': a mistake, said before any run."""
        plan = self.analysis
        variants = self.grid_axes().get("variant") or [TrainConfig.model_fields["variant"].default]
        for key, named in (("reference", [plan.reference]), ("primary", plan.primary)):
            missing = [v for v in named if v not in variants]
            if key in plan.model_fields_set and missing:
                raise ValueError(f"[analysis] {key} names {', '.join(map(repr, missing))}, which "
                                 f"the study does not run (its variants: {', '.join(variants)})")
        if plan.sesoi_pp is None:
            # the default smallest effect of interest is the paper's claim for the reference;
            # where it has none, analyze could only fail: say so now, before any run
            from cffbench.analysis.plan import paper_claim_pp

            try:
                paper_claim_pp(reference=plan.reference)
            except StudyError:
                raise ValueError(f"[analysis] sesoi_pp: no default for the reference "
                                 f"{plan.reference!r} (the default is the paper's A-CFF − FF gain "
                                 f"on MNIST, {paper_claim_pp()[0]:g} pp); set sesoi_pp in pp") from None
        if plan.pilot_seeds > len(self.seeds):
            raise ValueError(f"[analysis] pilot_seeds = {plan.pilot_seeds} is more than the "
                             f"study's {len(self.seeds)} seeds")
        return self

    def grid_axes(self) -> dict[str, list]:
        """The grid axes that were set, in file order: ``{key: [values...]}``."""
        return {k: v for k, v in self.grid.model_dump(exclude_none=True).items()}

    def base_config(self) -> dict[str, Any]:
        """The ``[train]`` and ``[collab]`` values as one dict of ``TrainConfig`` fields."""
        return {**self.train.model_dump(), **self.collab.model_dump()}


def _describe_error(err: dict, raw: dict) -> str:
    """One clause for one pydantic error: ``[section] key: what is wrong``."""
    loc = [str(p) for p in err["loc"]]
    if err["type"] == "extra_forbidden":
        *section, key = loc
        where = f"[{'.'.join(section)}]" if section else "top level"
        if section == ["grid"] or section == []:
            allowed = GRID_KEYS if section == ["grid"] else Study.model_fields
        else:
            model = {"data": DataSection, **_SECTIONS, "execution": ExecutionSection,
                     "analysis": AnalysisSection, "execution.slurm": SlurmSection}.get(".".join(section))
            allowed = model.model_fields if model else {}
        allowed_keys = [k for k in allowed if k != "source"]
        hint = ""
        if section == [] and key in GRID_KEYS:
            hint = f" (it belongs in [{GRID_KEYS[key]}] or [grid])"
        return f"unknown key {key!r} at {where}{hint}; allowed: {', '.join(allowed_keys)}"
    loc, clause = describe_error(err)   # the clause TrainConfig would give for the same value
    if not loc:   # a check of the whole file, whose clause names its keys itself
        return clause
    name = f"[{loc[0]}] {'.'.join(loc[1:])}" if len(loc) >= 2 else loc[0]
    return f"{name}: {clause}"


def study_error(path: Path | str, exc: pydantic.ValidationError, raw: dict | None = None) -> StudyError:
    """Turn a pydantic ValidationError into a one-line StudyError that names the file."""
    clauses = [_describe_error(e, raw or {}) for e in exc.errors()]
    return StudyError(f"{path}: {'; '.join(clauses)}")


def parse_study(text: str, source: Path | str = "<study>", plugin_dir: Path | None = None) -> Study:
    """Parse and validate study TOML text; errors name ``source``, the key and what is allowed.

    The ``plugins`` files are loaded first (:func:`cffbench.plugins.load_plugin_file`), relative
    to ``source``'s folder, or by file name from ``plugin_dir`` (a results folder's copies), so the
    names they register are valid in the rest of the file. A bad plugin raises
    :class:`~cffbench.errors.ExtensionError` (``<plugin file>: <problem>``).
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StudyError(f"{source}: invalid TOML: {exc}") from None
    for path in plugin_paths(raw, source, plugin_dir):
        from cffbench.plugins import load_plugin_file

        load_plugin_file(path)
    if "name" not in raw and source != "<study>":
        raw["name"] = Path(source).stem
    if "source" in raw:
        raise StudyError(f"{source}: unknown key 'source' at top level")
    try:
        study = Study.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise study_error(source, exc, raw) from None
    _check_grid_overlap(study, raw, source)
    study = study.model_copy(update={"source": Path(source) if source != "<study>" else None})
    study._text = text
    return study


def plugin_paths(raw: dict, source: Path | str, plugin_dir: Path | None = None) -> list[Path]:
    """The plugin files a study's ``plugins`` key names, resolved (see :func:`parse_study`)."""
    plugins = raw.get("plugins", [])
    if not isinstance(plugins, list) or not all(isinstance(p, str) and p for p in plugins):
        raise StudyError(f"{source}: plugins: must be a list of plugin file names, e.g. "
                         f'plugins = ["my_ff.py"] (got {plugins!r})')
    if plugin_dir is not None:
        return [plugin_dir / Path(p).name for p in plugins]
    base = Path(source).parent if source != "<study>" else Path(".")
    paths = [Path(p) if Path(p).is_absolute() else base / p for p in plugins]
    names = [p.name for p in paths]
    clash = next((n for n in names if names.count(n) > 1), None)
    if clash is not None:   # the results folder keeps its copies as plugins/<file name>
        raise StudyError(f"{source}: plugins: two files are named {clash!r} "
                         f"({', '.join(p for p in plugins if Path(p).name == clash)}); "
                         f"the results folder keeps plugin copies by file name, so rename one")
    return paths


def _check_grid_overlap(study: Study, raw: dict, source: Path | str) -> None:
    for key in study.grid_axes():
        section = GRID_KEYS[key]
        if key in raw.get(section, {}):
            raise StudyError(f"{source}: [{section}] {key} is also a [grid] axis; "
                             f"set it in one place only")


def load_study(path: Path | str) -> Study:
    """Read and validate a study file.

    Parameters
    ----------
    path : path to a ``.toml`` study file.

    Returns
    -------
    Study
        The validated study; ``study.source`` is ``path``.

    Raises
    ------
    StudyError
        If the file is missing, is not valid TOML (message names the line), or breaks the
        schema (message names the key and the allowed values).
    """
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"{path}: no such study file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StudyError(f"{path}: cannot read study file: {exc}") from None
    return parse_study(text, path)
