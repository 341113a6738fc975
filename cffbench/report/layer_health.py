"""Layer health: which layers went dead during training, read from the stored curves.

A layer is dead at a logged epoch when its mean goodness of positives and of negatives are both
at most ``1e-6·θ`` (:func:`cffbench.ff.goodness.is_dead_layer`: every unit (almost) off, so it
cannot tell positives from negatives and gets no gradient). The engine notes a layer dead with
its final weights, but only since that definition, and only at the end; the curves of any store
(``run_id, layer, epoch, g_pos, g_neg``) show it at every logged epoch, so the report computes
it from them for stores of every engine version.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cffbench.ff.config import TrainConfig
from cffbench.ff.goodness import is_dead_layer

#: Columns of :func:`run_layer_health` besides the condition columns.
RUN_LAYER_COLUMNS = ["run_id", "seed", "layer", "logged", "dead_epochs", "dead_at_end", "lowest"]
#: Columns of :func:`layer_health` besides the condition columns.
LAYER_COLUMNS = ["layer", "runs", "runs_dead", "dead_epochs", "logged", "dead_at_end", "lowest"]


def run_layer_health(curves: pd.DataFrame, runs: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """One row per run × layer of the finished runs (``status == "ok"``) that have curves.

    Parameters
    ----------
    curves : DataFrame
        The store's curves, long format: ``run_id, layer, epoch, g_pos, g_neg`` (more columns are
        ignored).
    runs : DataFrame
        Run rows: ``run_id, dataset, variant, seed, status``, ``threshold`` (θ; when absent or
        nan for a run, the ``TrainConfig`` default) and the ``axes`` columns.
    axes : list of str
        The axis columns (besides dataset and variant) that name a condition.

    Returns
    -------
    DataFrame
        ``dataset, variant, *axes, run_id, seed, layer`` (runs in the order of ``runs``);
        ``logged`` (logged epochs of the layer with a finite goodness), ``dead_epochs`` (how many
        of them are dead), ``dead_at_end`` (the layer's last logged epoch is dead: the end of its
        training), ``lowest`` (the least ``max(G_pos, G_neg)`` over its logged epochs). bp's
        curves (nan goodness) give ``logged = 0`` and are never dead.
    """
    keys = ["dataset", "variant", *axes]
    columns = [*keys, *RUN_LAYER_COLUMNS]
    if curves.empty or runs.empty:
        return pd.DataFrame(columns=columns)
    ok = runs[runs["status"] == "ok"]
    default = TrainConfig.model_fields["threshold"].default
    theta = (ok["threshold"].astype(float).fillna(default) if "threshold" in ok.columns
             else pd.Series(default, index=ok.index))
    meta = ok[["run_id", "seed", *keys]].assign(threshold=theta.to_numpy(), order=np.arange(len(ok)))
    frame = curves[["run_id", "layer", "epoch", "g_pos", "g_neg"]].merge(meta, on="run_id")
    if frame.empty:
        return pd.DataFrame(columns=columns)
    frame = frame.sort_values(["order", "layer", "epoch"], kind="stable")   # runs in their order
    largest = np.maximum(frame["g_pos"].to_numpy(float), frame["g_neg"].to_numpy(float))
    frame = frame.assign(largest=largest, finite=np.isfinite(largest),
                         dead=is_dead_layer(frame["g_pos"].to_numpy(float),
                                            frame["g_neg"].to_numpy(float),
                                            frame["threshold"].to_numpy(float)))
    grouped = frame.groupby([*keys, "run_id", "seed", "layer"], sort=False, dropna=False)
    out = grouped.agg(logged=("finite", "sum"), dead_epochs=("dead", "sum"),
                      dead_at_end=("dead", "last"), lowest=("largest", "min")).reset_index()
    return out.astype({"logged": int, "dead_epochs": int, "dead_at_end": bool})[columns]


def layer_health(per_run: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """Per condition (``dataset, variant, *axes``) and layer, from :func:`run_layer_health`.

    Returns
    -------
    DataFrame
        ``dataset, variant, *axes, layer``; ``runs`` (runs with curves of the layer),
        ``runs_dead`` (runs whose layer was dead at some logged epoch), ``dead_epochs`` and
        ``logged`` (dead and all logged epochs, summed over the runs), ``dead_at_end`` (runs
        whose layer was dead at the end of its training), ``lowest`` (the least
        ``max(G_pos, G_neg)`` of any run). Conditions in the order of ``per_run``.
    """
    keys = ["dataset", "variant", *axes, "layer"]
    if per_run.empty:
        return pd.DataFrame(columns=[*keys, *LAYER_COLUMNS[1:]])
    grouped = per_run.assign(was_dead=per_run["dead_epochs"] > 0).groupby(
        keys, sort=False, dropna=False)
    return grouped.agg(runs=("run_id", "size"), runs_dead=("was_dead", "sum"),
                       dead_epochs=("dead_epochs", "sum"), logged=("logged", "sum"),
                       dead_at_end=("dead_at_end", "sum"), lowest=("lowest", "min")
                       ).reset_index().astype({"runs_dead": int, "dead_at_end": int})
