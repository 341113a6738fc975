"""The backprop reference row: the same MLP trained end-to-end with a linear head.

Architecture: ``h_l = relu(W_l · unit_direction(h_{l−1}) + b_l)`` — the FF layers, including the
row-wise unit-direction normalisation before every hidden layer, so the only difference to FF is
the learning rule — then ``logits = W_out h_L + b_out`` on the raw last hidden layer. No label
overlay. Cross-entropy, Adam with the same lr, ``epochs_per_layer × n_layers`` epochs (full-batch
steps when ``batch_size = 0``). Layer weights come from the same ``init`` stream as FF (so the
hidden layers start from FF's weights for the same seed); the head is drawn after them.

With a :class:`~cffbench.ff.checkpoint.RunCheckpoint` the run checkpoints its parameters, Adam
state, generators, curves and epoch as the FF engine does, and resumes from a valid checkpoint
bit for bit on CPU.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from cffbench.data.splits import Splits
from cffbench.ff.checkpoint import RunCheckpoint, resume_note, run_identity
from cffbench.ff.config import TrainConfig, run_generators
from cffbench.ff.goodness import unit_direction
from cffbench.ff.layers import init_linear
from cffbench.ff.result import RunResult, curve_epochs, finish_result, optimizer_step

log = logging.getLogger(__name__)


def mlp_logits(params: list[tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor) -> torch.Tensor:
    """Class logits ``(N, C)`` of the BP network; ``params`` = hidden layers then the head."""
    h = x
    for weight, bias in params[:-1]:
        h = torch.relu(F.linear(unit_direction(h), weight, bias))
    weight, bias = params[-1]
    return F.linear(h, weight, bias)


def _fresh_state(config: TrainConfig, splits: Splits, device: torch.device):
    generators = run_generators(config.seed)
    widths = (splits.n_features, *config.hidden, splits.n_classes)
    params = [tuple(t.to(device).requires_grad_() for t in init_linear(d_in, d_out, generators["init"]))
              for d_in, d_out in zip(widths[:-1], widths[1:])]
    optimizer = torch.optim.Adam([t for pair in params for t in pair], lr=config.lr)
    return generators, params, optimizer


def _restore(state: dict, generators: dict, params: list, optimizer) -> tuple[int, list[dict]]:
    """Put a bp checkpoint's state in place; returns (epochs done, curves). Raises on a misfit."""
    saved = state["params"]
    flat = [t for pair in params for t in pair]
    if len(saved) != len(flat):
        raise ValueError("checkpoint has another number of parameters")
    with torch.no_grad():
        for target, value in zip(flat, saved):
            if tuple(value.shape) != tuple(target.shape) or value.dtype != target.dtype:
                raise ValueError(f"checkpoint tensor {tuple(value.shape)} does not fit "
                                 f"{tuple(target.shape)}")
            target.copy_(value)
    optimizer.load_state_dict(state["optimizer"])
    for name, generator in generators.items():
        generator.set_state(state["generators"][name])
    return int(state["phase"]["epoch"]), [dict(row) for row in state["curves"]]


def train_backprop(config: TrainConfig, splits: Splits, device: torch.device,
                   on_epoch: Callable[[dict], None] | None, started: float,
                   checkpoint: RunCheckpoint | None = None) -> RunResult:
    """Train the BP reference; returns a :class:`RunResult` (curves use ``layer = 0``)."""
    generators, params, optimizer = _fresh_state(config, splits, device)
    x, y = splits.x_train.to(device), splits.y_train.to(device)
    n_epochs = config.epochs_per_layer * config.n_layers
    recorded = set(curve_epochs(n_epochs).tolist())
    curves: list[dict] = []
    diverged_epoch: int | None = None
    identity = run_identity(config, device, x.shape[0], x.shape[1])
    first_epoch, elapsed_before, resumed_at, resume_notes = 1, 0.0, "", []
    if checkpoint is not None and checkpoint.enabled:
        state = checkpoint.load(identity)
        if state is not None:
            try:
                done, curves = _restore(state, generators, params, optimizer)
                first_epoch, elapsed_before = done + 1, float(state["elapsed_s"])
                resumed_at = f"epoch {done}"
                log.warning("run %s resumed from its checkpoint after %s", checkpoint.run_id,
                            resumed_at)
                if (note := resume_note(state)) is not None:
                    resume_notes.append(note)
                    log.warning(note)
            except (KeyError, TypeError, ValueError, RuntimeError) as exc:
                checkpoint.ignore(f"does not fit this run ({type(exc).__name__}: {exc})")
                generators, params, optimizer = _fresh_state(config, splits, device)
                curves = []
    for epoch in range(first_epoch, n_epochs + 1):
        if config.batch_size and config.batch_size < x.shape[0]:
            order = torch.randperm(x.shape[0], generator=generators["batches"]).to(device)
            batches = list(order.split(config.batch_size))
        else:
            batches = [None]
        losses = []
        for idx in batches:
            xb, yb = (x, y) if idx is None else (x[idx], y[idx])
            loss = F.cross_entropy(mlp_logits(params, xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            try:
                optimizer_step(optimizer)
            except FloatingPointError:
                losses.append(torch.tensor(float("nan")))
                break
            losses.append(loss.detach())
        loss_value = float(torch.stack(losses).mean())
        if not np.isfinite(loss_value):
            diverged_epoch = epoch
            break
        if epoch in recorded:
            row = {"layer": 0, "epoch": epoch, "loss": loss_value, "g_pos": float("nan"),
                   "g_neg": float("nan"), "gamma": float("nan"), "alpha_row": ""}
            curves.append(row)
            if on_epoch is not None:
                on_epoch(dict(row))
        if checkpoint is not None and checkpoint.enabled and epoch < n_epochs \
                and checkpoint.due(epoch):
            elapsed = elapsed_before + time.perf_counter() - started
            checkpoint.save({**identity, "phase": {"layer": 0, "epoch": epoch},
                             "elapsed_s": elapsed, "curves": [dict(r) for r in curves],
                             "params": [t.detach() for pair in params for t in pair],
                             "optimizer": optimizer.state_dict(),
                             "generators": {k: g.get_state() for k, g in generators.items()}},
                            {"schedule": "end-to-end", "variant": "bp", "layer": 0,
                             "epoch": epoch, "epochs_per_layer": n_epochs, "n_layers": 1,
                             "epochs_done": epoch, "epochs_total": n_epochs,
                             "elapsed_s": elapsed})
    if diverged_epoch is None and not all(bool(torch.isfinite(t).all())
                                          for pair in params for t in pair):
        diverged_epoch = n_epochs   # the last step produced non-finite weights
    train_seconds = elapsed_before + time.perf_counter() - started

    @torch.no_grad()
    def accuracy(xs: torch.Tensor, ys: torch.Tensor) -> float:
        pred = mlp_logits(params, xs.to(device)).argmax(dim=1).cpu()
        return float((pred == ys).float().mean()) if len(ys) else float("nan")

    return finish_result(
        config, splits, diverged_epoch=diverged_epoch,
        accuracy=accuracy, train_eval_generator=generators["train_eval"], layer_goodness=None,
        gradient="autograd",
        layer_seconds=[train_seconds] * config.n_layers, curves=curves, finals=([], []),
        elapsed=lambda: elapsed_before + time.perf_counter() - started, device=device,
        notes=[f"bp: {n_epochs} epochs end-to-end; layer seconds are the whole network's",
               *resume_notes, *(checkpoint.notes() if checkpoint is not None else [])],
        diverged_because="non-finite loss", resumed_at=resumed_at,
        resumed_elapsed_s=elapsed_before)
