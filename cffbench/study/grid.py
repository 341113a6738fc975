"""Grid expansion: a :class:`Study` becomes deduplicated runs, each with a stable ``run_id``.

The study is ``product(grid axes) x datasets x seeds``. Two grid points whose *effective*
configuration (``TrainConfig.effective()``: only the fields that change this variant's result)
is the same are one run; ``ff`` and ``bp`` ignore alpha, gamma and theta placement, so a grid
with three alpha values holds one ``ff`` run per dataset and seed, not three.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pydantic

from cffbench.errors import CffbenchError, StudyError
from cffbench.ff.config import TrainConfig, identity_fields
from cffbench.plugins import plugins_of
from cffbench.study.spec import Study

RUN_ID_LENGTH = 16


def canonical_json(value: Any) -> str:
    """Deterministic JSON text: sorted keys, no spaces, ASCII only, tuples as lists.

    Python's float ``repr`` (the shortest text that round-trips) makes this identical across
    processes, platforms and Python versions >= 3.1.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)


def run_id(dataset: str, n_train: Optional[int], seed: int, effective: dict[str, Any],
           plugins: tuple = ()) -> str:
    """Stable identifier of one run.

    ``run_id = sha256(canonical_json({"dataset", "n_train", "seed", "config": effective}))``,
    the first :data:`RUN_ID_LENGTH` (16) hex digits, where ``effective`` is
    ``identity_fields(TrainConfig.effective())`` (a setting added later is left out at its
    default, e.g. ``goodness = "mean_squares"``).

    Parameters
    ----------
    dataset : registry name, e.g. ``"mnist"``.
    n_train : size of the training subset, or ``None`` for the whole 50k split.
    seed : the run's seed.
    effective : the fields of the configuration that affect the result.
    plugins : the :class:`~cffbench.plugins.Plugin` objects the run uses; when there are any,
        their ``record()`` (name, version, file sha256) is added to the payload as ``"plugins"``,
        so editing a plugin file gives its runs new ids (runs of built-ins have no such key).

    Returns
    -------
    str
        16 lowercase hex digits.
    """
    payload = {"dataset": dataset, "n_train": n_train, "seed": seed, "config": effective}
    if plugins:
        payload["plugins"] = [p.record() for p in plugins]
    return hashlib.sha256(canonical_json(payload).encode("ascii")).hexdigest()[:RUN_ID_LENGTH]


@dataclass(frozen=True)
class RunTask:
    """One run to execute: small and picklable (the worker loads the data itself).

    Attributes
    ----------
    run_id : str
    study : str
    dataset : str
    n_train : int or None
        ``None`` = the whole 50k training split.
    seed : int
    config : TrainConfig
        Full configuration handed to ``train_run`` (its ``seed`` is ``seed``).
    effective : dict
        ``config.effective()``: the parameters that define the run; the store writes the
        parameters that are absent here (e.g. ``alpha`` of an ``ff`` run) as missing values.
    plugins : tuple of Plugin
        The plugins whose objects the run uses (stored with it; a worker loads their files).
    """

    run_id: str
    study: str
    dataset: str
    n_train: Optional[int]
    seed: int
    config: TrainConfig
    effective: dict = field(compare=False)
    plugins: tuple = field(default=(), compare=False)

    @property
    def variant(self) -> str:
        return self.config.variant


def grid_points(study: Study) -> list[dict[str, Any]]:
    """The product of the ``[grid]`` axes over the ``[train]``/``[collab]`` base values.

    Returns
    -------
    list of dict
        One dict of ``TrainConfig`` fields (without ``seed``) per grid point, in axis order
        (the last axis varies fastest).
    """
    base = study.base_config()
    axes = study.grid_axes()
    points = []
    for values in itertools.product(*axes.values()):
        point = dict(base)
        point.update(zip(axes.keys(), values))
        points.append(point)
    return points


def expand(study: Study) -> list[RunTask]:
    """Expand a study into its deduplicated runs.

    Order: seed, then dataset, then grid point, so an interrupted study holds whole seeds.

    Returns
    -------
    list of RunTask
        ``len == n_seeds x n_datasets x n_distinct_effective_configs``.

    Raises
    ------
    StudyError
        If a grid point is not a valid ``TrainConfig`` (message names the study file).
    """
    where = study.source or study.name
    tasks: dict[str, RunTask] = {}
    for seed in study.seeds:
        for dataset in study.data.datasets:
            for point in grid_points(study):
                try:
                    config = TrainConfig(**point, seed=seed)
                except pydantic.ValidationError as exc:
                    from cffbench.study.spec import study_error

                    raise study_error(where, exc) from None
                except CffbenchError as exc:
                    raise StudyError(f"{where}: {exc}") from None
                effective = config.effective()
                plugins = plugins_of(effective, dataset)
                rid = run_id(dataset, study.data.n_train, seed, identity_fields(effective), plugins)
                if rid not in tasks:
                    tasks[rid] = RunTask(rid, study.name, dataset, study.data.n_train, seed,
                                         config, effective, plugins)
    return list(tasks.values())


def resolve_results_dir(study: Study, results_dir: Path | str | None) -> Path:
    """``results_dir`` if given, else ``results/<study name>`` (relative to the working dir)."""
    return Path(results_dir) if results_dir is not None else Path("results") / study.name
