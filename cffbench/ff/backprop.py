"""The backprop reference row: the same MLP trained end-to-end with a linear head.

Architecture: ``h_l = relu(W_l · unit_direction(h_{l−1}) + b_l)`` — the FF layers, including the
row-wise unit-direction normalisation before every hidden layer, so the only difference to FF is
the learning rule — then ``logits = W_out h_L + b_out`` on the raw last hidden layer. No label
overlay. Cross-entropy, Adam with the same lr, ``epochs_per_layer × n_layers`` epochs (full-batch
steps when ``batch_size = 0``). Layer weights come from the same ``init`` stream as FF (so the
hidden layers start from FF's weights for the same seed); the head is drawn after them.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from cffbench.data.splits import Splits
from cffbench.ff.config import TrainConfig, run_generators
from cffbench.ff.goodness import unit_direction
from cffbench.ff.layers import init_linear
from cffbench.ff.result import CURVE_COLUMNS, RunResult, curve_epochs, optimizer_step


def mlp_logits(params: list[tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor) -> torch.Tensor:
    """Class logits ``(N, C)`` of the BP network; ``params`` = hidden layers then the head."""
    h = x
    for weight, bias in params[:-1]:
        h = torch.relu(F.linear(unit_direction(h), weight, bias))
    weight, bias = params[-1]
    return F.linear(h, weight, bias)


def train_backprop(config: TrainConfig, splits: Splits, device: torch.device,
                   on_epoch: Callable[[dict], None] | None, started: float) -> RunResult:
    """Train the BP reference; returns a :class:`RunResult` (curves use ``layer = 0``)."""
    generators = run_generators(config.seed)
    widths = (splits.n_features, *config.hidden, splits.n_classes)
    params = [tuple(t.to(device).requires_grad_() for t in init_linear(d_in, d_out, generators["init"]))
              for d_in, d_out in zip(widths[:-1], widths[1:])]
    optimizer = torch.optim.Adam([t for pair in params for t in pair], lr=config.lr)
    x, y = splits.x_train.to(device), splits.y_train.to(device)
    n_epochs = config.epochs_per_layer * config.n_layers
    recorded = set(curve_epochs(n_epochs).tolist())
    curves, status, diverged_epoch = [], "ok", None
    for epoch in range(1, n_epochs + 1):
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
            status, diverged_epoch = "diverged", epoch
            break
        if epoch in recorded:
            row = {"layer": 0, "epoch": epoch, "loss": loss_value, "g_pos": float("nan"),
                   "g_neg": float("nan"), "gamma": float("nan"), "alpha_row": ""}
            curves.append(row)
            if on_epoch is not None:
                on_epoch(dict(row))
    if status == "ok" and not all(bool(torch.isfinite(t).all()) for pair in params for t in pair):
        status, diverged_epoch = "diverged", n_epochs   # the last step produced non-finite weights
    train_seconds = time.perf_counter() - started
    accuracies = {"test": float("nan"), "val": float("nan"), "train": float("nan")}
    if status == "ok":
        from cffbench.ff.train import train_eval_subset

        subset = train_eval_subset(splits, config.train_eval_size, generators["train_eval"])
        with torch.no_grad():
            for name, xs, ys in (("test", splits.x_test, splits.y_test),
                                 ("val", splits.x_val, splits.y_val),
                                 ("train", splits.x_train[subset], splits.y_train[subset])):
                pred = mlp_logits(params, xs.to(device)).argmax(dim=1).cpu()
                accuracies[name] = float((pred == ys).float().mean()) if len(ys) else float("nan")
    notes = [f"bp: {n_epochs} epochs end-to-end; layer seconds are the whole network's"]
    if status == "diverged":
        notes.append(f"diverged (non-finite loss) at epoch {diverged_epoch}")
    return RunResult(
        status=status, test_acc=accuracies["test"], val_acc=accuracies["val"],
        train_acc=accuracies["train"], gamma_final=[], alpha_final=[],
        layer_stats=[{"layer": i + 1, "g_pos": float("nan"), "g_neg": float("nan"),
                      "seconds": train_seconds} for i in range(config.n_layers)],
        curves=pd.DataFrame(curves, columns=CURVE_COLUMNS), diverged_epoch=diverged_epoch,
        duration_s=time.perf_counter() - started, device=str(device), notes=notes)
