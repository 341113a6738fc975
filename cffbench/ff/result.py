"""What one run reports (:class:`RunResult`, assembled once by :func:`finish_result` for every
engine: one run, seed-stacked runs, backprop), and small helpers shared by the trainers."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import pandas as pd
import torch

from cffbench.data.splits import Splits
from cffbench.errors import TrainConfigError
from cffbench.ff.goodness import DEAD_GOODNESS_TEXT, is_dead_layer

if TYPE_CHECKING:
    from cffbench.ff.config import TrainConfig

#: Version of the engines' numerics (train_run, train_stacked, the backprop reference): bumped
#: by any change that alters a result bit on the same torch build (an RNG stream drawn in
#: another order, an operation reordered in the hot loop, another reduction). Every stored run
#: and every checkpoint records it; ``tests/test_ff_golden.py`` pins the results it stands for,
#: so a change of numerics without a bump fails there. Version 1: the engine of the paper_mnist
#: study (commit d6f27be). Version 2 (2026-12-01): the first layer's positives take the dense
#: overlay in the shared matmul and the negatives a label shift; its label-column and bias
#: gradients, and every later layer's bias gradient, come from one short, wide matmul instead of
#: ``δ^T ℓ`` products and row sums (float sums reordered, the same algorithm: results agree with
#: version 1 to rounding, ``tests/test_ff_golden.py``); ReLU by ``relu_``. Version 3
#: (2026-12-02): the first layer's label-column correction reads only ``δ_neg`` (N rows, not
#: 2N) and its bias gradient is the row sum of ``δ_pos + δ_neg`` (a ones-row product over N
#: rows), after the sum is formed (same algorithm, sums reordered; agrees to rounding).
NUMERICS_VERSION = 3

#: Columns of :attr:`RunResult.curves` (long format, one row per recorded layer × epoch).
CURVE_COLUMNS = ["layer", "epoch", "loss", "g_pos", "g_neg", "gamma", "alpha_row"]
#: At most this many recorded epochs per layer.
MAX_CURVE_POINTS = 200


@dataclass
class RunResult:
    """The outcome of :func:`cffbench.ff.train_run`.

    ``status`` is ``"ok"`` or ``"diverged"``; accuracies are fractions in [0, 1] (nan when
    diverged); ``gamma_final`` has one value per layer and ``alpha_final`` is the ``L × L`` α (both
    empty for ff / bp); ``layer_stats`` has per layer ``layer`` (1-based), ``g_pos`` / ``g_neg``
    (mean goodness of the training positives / negatives with the final weights) and ``seconds``
    (training wall time of that layer). ``curves`` columns: ``layer`` (1-based; 0 = the whole
    network for bp), ``epoch`` (1-based), ``loss``, ``g_pos``, ``g_neg`` (means over the epoch's
    positives / negatives, before the step), ``gamma`` (after the epoch; nan for ff / bp) and
    ``alpha_row`` (α's row as JSON text when α is learned, else ``""``). ``numerics_version``
    is the :data:`NUMERICS_VERSION` of the engine that produced it.
    """

    status: str
    test_acc: float
    val_acc: float
    train_acc: float
    gamma_final: list[float]
    alpha_final: list[list[float]]
    layer_stats: list[dict]
    curves: pd.DataFrame
    diverged_epoch: int | None
    duration_s: float
    device: str
    notes: list[str] = field(default_factory=list)
    numerics_version: int = NUMERICS_VERSION
    #: where a run resumed from its checkpoint (e.g. ``"layer 2, epoch 40"``; "" = from the
    #: start) and the training seconds before it; neither is stored (the result is the same)
    resumed_at: str = ""
    resumed_elapsed_s: float = 0.0
    #: how the weight gradients were computed: ``"manual"`` (the fast FF engine) or
    #: ``"autograd"`` (a plugin goodness without a manual gradient; bp)
    gradient: str = "manual"


def train_eval_subset(splits: Splits, size: int, generator: torch.Generator) -> torch.Tensor:
    """Sorted indices of the fixed train-accuracy subset (``min(size, N)`` rows)."""
    n = splits.x_train.shape[0]
    return torch.randperm(n, generator=generator)[: min(size, n)].sort().values


def finish_result(config: "TrainConfig", splits: Splits, *, diverged_epoch: int | None,
                  accuracy: Callable[[torch.Tensor, torch.Tensor], float],
                  train_eval_generator: torch.Generator,
                  layer_goodness: Callable[[], list[tuple[float, float]]] | None,
                  layer_seconds: Sequence[float], curves: list[dict],
                  finals: tuple[list[float], list[list[float]]], elapsed: Callable[[], float],
                  device: torch.device | str, notes: Sequence[str] = (),
                  diverged_because: str = "non-finite loss or gamma",
                  closing_notes: Sequence[str] = (), resumed_at: str = "",
                  resumed_elapsed_s: float = 0.0, gradient: str = "manual") -> RunResult:
    """Evaluate a trained run and assemble its :class:`RunResult` (the one place that does).

    A run that finished (``diverged_epoch is None``) gets its mean G_pos / G_neg per layer from
    ``layer_goodness()`` (nan when ``None``: bp), a note for each layer that ended dead
    (:func:`dead_layer_note`), and its accuracies ``accuracy(x, y)`` (CPU tensors) on the test
    set, the validation set and the fixed train subset (:func:`train_eval_subset`, drawn from
    ``train_eval_generator``). A diverged run gets nan accuracies and goodness and the note
    "diverged (<diverged_because>) at epoch E". ``notes`` come first, ``closing_notes`` last;
    ``finals`` is ``(gamma_final, alpha_final)``; ``elapsed()`` is read after the evaluation.
    """
    nan = float("nan")
    notes = list(notes)
    accuracies = {"test": nan, "val": nan, "train": nan}
    goodness = [(nan, nan)] * config.n_layers
    if diverged_epoch is not None:
        notes.append(f"diverged ({diverged_because}) at epoch {diverged_epoch}")
    else:
        if layer_goodness is not None:
            goodness = layer_goodness()
            notes.extend(note for index, (g_pos, g_neg) in enumerate(goodness, start=1)
                         if (note := dead_layer_note(index, g_pos, g_neg, config.threshold)))
        subset = train_eval_subset(splits, config.train_eval_size, train_eval_generator)
        for name, x, y in (("test", splits.x_test, splits.y_test), ("val", splits.x_val, splits.y_val),
                           ("train", splits.x_train[subset], splits.y_train[subset])):
            accuracies[name] = accuracy(x, y)
    notes.extend(closing_notes)
    gamma_final, alpha_final = finals
    return RunResult(
        status="ok" if diverged_epoch is None else "diverged", test_acc=accuracies["test"],
        val_acc=accuracies["val"], train_acc=accuracies["train"],
        gamma_final=list(gamma_final), alpha_final=list(alpha_final),
        layer_stats=[{"layer": i + 1, "g_pos": g_pos, "g_neg": g_neg, "seconds": layer_seconds[i]}
                     for i, (g_pos, g_neg) in enumerate(goodness)],
        curves=pd.DataFrame(curves, columns=CURVE_COLUMNS), diverged_epoch=diverged_epoch,
        duration_s=elapsed(), device=str(device), notes=notes, resumed_at=resumed_at,
        resumed_elapsed_s=resumed_elapsed_s, gradient=gradient)


def dead_layer_note(layer: int, g_pos: float, g_neg: float, threshold: float) -> str:
    """The closing note of a layer that is dead with the final weights
    (:func:`~cffbench.ff.goodness.is_dead_layer`: every unit (almost) off, so it cannot tell
    positives from negatives and gets no gradient), "" for a live one.

    A layer at exactly G_pos = G_neg = 0 keeps the wording of the engines before the definition
    (the golden runs pin it); any other dead layer's note names the bound. The note is the same
    for every run, so a report lists it once per store; the values are in the run's curves and in
    the report's layer-health table (:mod:`cffbench.report.layer_health`).
    """
    if not is_dead_layer(g_pos, g_neg, threshold):
        return ""
    if g_pos == 0.0 and g_neg == 0.0:
        return f"layer {layer} collapsed (G_pos = G_neg = 0: every unit dead)"
    return (f"layer {layer} dead at the end of training (max(G_pos, G_neg) ≤ "
            f"{DEAD_GOODNESS_TEXT}: every unit (almost) off)")


def largest_step_factor(group: dict) -> float:
    """The largest scalar a step of this param group multiplies an update by: ``lr`` for SGD,
    Adam's ``lr / (1 − β₁^t)`` at ``t = 1`` (its bias correction only shrinks it later)."""
    factor = abs(float(group["lr"]))
    if "betas" in group:
        factor = factor / (1.0 - group["betas"][0])
    return factor


def optimizer_step(optimizer: torch.optim.Optimizer) -> None:
    """``optimizer.step()``, or :class:`FloatingPointError` (reported by the trainers as
    divergence) when the step cannot be finite: its step factor (:func:`largest_step_factor`)
    exceeds the largest finite value of a parameter's dtype, so the update would be ±inf. That
    is the condition under which torch refuses the step (it cannot pass the factor to the fp32
    kernel); checking the number before the step replaces matching the words of its error."""
    for group in optimizer.param_groups:
        factor = largest_step_factor(group)
        for param in group["params"]:
            if factor > torch.finfo(param.dtype).max:
                raise FloatingPointError(f"step factor {factor:.3g} exceeds the largest finite "
                                         f"{param.dtype} ({torch.finfo(param.dtype).max:.3g})")
    optimizer.step()


def curve_epochs(n_epochs: int, max_points: int = MAX_CURVE_POINTS) -> np.ndarray:
    """The 1-based epochs recorded in the curves: all of them when ``n_epochs ≤ max_points``,
    else ``max_points`` evenly spaced ones including the first and the last."""
    if n_epochs <= max_points:
        return np.arange(1, n_epochs + 1)
    return np.unique(np.rint(np.linspace(1, n_epochs, max_points)).astype(int))


def tf32_enabled() -> bool:
    """Whether CUDA fp32 matmuls may use TF32 (``$CFFBENCH_TF32``, default on; ``0`` turns it off).

    TF32 keeps fp32 range with a 10-bit mantissa on Ampere+ GPUs (several times faster matmuls);
    FF's goodness sums are robust to it, but set ``CFFBENCH_TF32=0`` for bit-level comparisons
    with CPU runs. CPU runs are unaffected.
    """
    return os.environ.get("CFFBENCH_TF32", "1").strip().lower() not in ("0", "false", "no", "off")


def resolve_device(device: str) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (cuda when available) → :class:`torch.device`.

    On CUDA this also applies the TF32 switch (:func:`tf32_enabled`) to torch's matmul backend.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise TrainConfigError(f"device {device!r} requested but CUDA is not available; "
                                   "use --device cpu or auto")
        # The fp32_precision API (torch >= 2.9); mixing it with the legacy allow_tf32 flag errors.
        torch.backends.cuda.matmul.fp32_precision = "tf32" if tf32_enabled() else "ieee"
        return torch.device(device)
    raise TrainConfigError(f"unknown device {device!r}; allowed: cpu, cuda, cuda:N, auto")
