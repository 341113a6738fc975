"""``train_run``: one FF / F-CFF / A-CFF / BP run from a config and a :class:`Splits`.

Protocol (Hinton 2022, the pytorch_forward_forward reference): label one-hot in the first
``n_classes`` pixels (value = batch max); negatives = the same images with a wrong label; each
layer trained by its own Adam on ``mean(softplus(cat([−logit_pos, logit_neg])))`` with
``logit = G − θ`` (FF) or the collaborative logit of :func:`~cffbench.ff.goodness.collaborative_logits`,
as the variant's logit rule forms it (:mod:`cffbench.ff.variants`); one step of one layer is
:func:`cffbench.ff.step.layer_step`, the step the seed-stacked engine takes too.

Schedules: ``sequential`` trains layer 1 for E epochs, then layer 2 on layer 1's frozen output,
...; ``alternating`` gives every layer one step per epoch (per minibatch), in order, each on the
current output of the (just updated) layers below. In CFF the other layers' goodness enters
forward-only (stop-gradient): earlier layers on the current inputs, later layers on layer l's
current output (pre-step), with their current (in ``sequential``: still initial) weights.

Curves record every epoch when ``epochs_per_layer ≤ 200``; otherwise 200 epochs per layer evenly
spaced over 1..E (always the first and the last). Divergence (non-finite loss or γ) is checked
every epoch and ends the run with status ``"diverged"``.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import numpy as np
import torch

from cffbench.data.splits import Splits
from cffbench.errors import TrainConfigError
from cffbench.ff.checkpoint import (RunCheckpoint, restore_trainer, resume_note,
                                   trainer_identity, trainer_state)
from cffbench.ff.config import TrainConfig, run_generators
from cffbench.ff.goodness import goodness_function, gradient_path
from cffbench.ff.layers import FFLayer, OverlayInput, PlainInput, require_label_overlay
from cffbench.ff.negatives import negative_rule
from cffbench.ff.predict import ff_accuracy
from cffbench.ff.result import RunResult, curve_epochs, finish_result, resolve_device
from cffbench.ff.step import chain_inputs, layer_step, mean_layer_goodness
from cffbench.ff.variants import variant_of

log = logging.getLogger(__name__)


class Diverged(Exception):
    """Internal signal: a non-finite loss or γ at ``epoch``."""

    def __init__(self, epoch: int) -> None:
        super().__init__(epoch)
        self.epoch = epoch


def draw_negative_labels(y: torch.Tensor, n_classes: int, generator: torch.Generator,
                         mode: str) -> torch.Tensor:
    """Negative labels ``(N,)`` on the CPU: a uniformly drawn wrong label (``fixed`` / ``redraw``)
    or the reference's ``y[randperm(N)]`` (``permutation``; may equal the true label)."""
    return negative_rule(mode).draw(y.cpu(), n_classes, generator)


class FFTrainer:
    """The state of one FF-family run: layers, the variant's logit rule, inputs, curves."""

    def __init__(self, config: TrainConfig, splits: Splits, device: torch.device,
                 on_epoch: Callable[[dict], None] | None) -> None:
        self.config = config
        self.device = device
        self.on_epoch = on_epoch
        self.generators = run_generators(config.seed)
        self.n_labels = splits.n_classes
        require_label_overlay(splits)
        widths = (splits.n_features, *config.hidden)
        self.layers = [FFLayer(d_in, d_out, self.generators["init"], config.lr, device,
                               config.precision, goodness_function(config.goodness))
                       for d_in, d_out in zip(widths[:-1], widths[1:])]
        self.logit_rule = variant_of(config).logit_rule(config, device)
        self.y_train = splits.y_train.to(device)
        self.y_neg = self._draw_negatives()
        self.overlay = OverlayInput.build(splits.x_train.to(device), self.y_train,
                                          self.y_neg, self.n_labels)
        self.recorded = set(curve_epochs(config.epochs_per_layer).tolist())
        self.curves: list[dict] = []
        self.seconds = [0.0] * len(self.layers)
        self.checkpoint: RunCheckpoint | None = None
        self.started = time.perf_counter()
        self.elapsed_before = 0.0    # training seconds of earlier processes (a resumed run)

    # ------------------------------------------------------------------ inputs
    def _draw_negatives(self) -> torch.Tensor:
        return draw_negative_labels(self.y_train, self.n_labels, self.generators["negatives"],
                                    self.config.negatives).to(self.device)

    def _redraw_negatives(self) -> None:
        self.y_neg = self._draw_negatives()
        self.overlay = self.overlay.with_negatives(self.y_neg)

    def chain_inputs(self, upto: int) -> tuple[OverlayInput | PlainInput, list[torch.Tensor]]:
        """Input of layer ``upto`` and the goodness ``(2N,)`` of layers ``< upto`` (current weights)."""
        return chain_inputs(self.layers, self.overlay, upto)

    def _batches(self) -> list[torch.Tensor | None]:
        n, size = self.overlay.n, self.config.batch_size
        if size == 0 or size >= n:
            return [None]
        order = torch.randperm(n, generator=self.generators["batches"]).to(self.device)
        return list(order.split(size))

    # ------------------------------------------------------------------ one update
    def update_layer(self, index: int, inp: OverlayInput | PlainInput, lower: list[torch.Tensor]
                     ) -> tuple[torch.Tensor, ...]:
        """One optimiser step of layer ``index`` on ``inp``; returns (loss, G_pos mean, G_neg mean)."""
        return layer_step(self.layers, index, inp, lower, self.logit_rule)

    def _update_batches(self, index: int, inp, lower, batches) -> tuple[float, float, float]:
        stats = []
        for idx in batches:
            if idx is None:
                stats.append(self.update_layer(index, inp, lower))
            else:
                rows = torch.cat([idx, idx + inp.n])
                stats.append(self.update_layer(index, inp.rows(idx), [g[rows] for g in lower]))
        return tuple(float(torch.stack(column).mean()) for column in zip(*stats))

    # ------------------------------------------------------------------ bookkeeping
    def _record(self, index: int, epoch: int, loss: float, g_pos: float, g_neg: float) -> None:
        if not (np.isfinite(loss) and bool(self.logit_rule.finite())):
            raise Diverged(epoch)
        if epoch in self.recorded:
            row = {"layer": index + 1, "epoch": epoch, "loss": loss, "g_pos": g_pos, "g_neg": g_neg,
                   **self.logit_rule.curve_values(index)}
            self.curves.append(row)
            if self.on_epoch is not None:
                self.on_epoch(dict(row))

    # ------------------------------------------------------------------ schedules
    def train_sequential(self, resume: tuple[int, int] = (0, 0)) -> None:
        """Layer by layer; ``resume = (layer index, epochs of it done)`` from a checkpoint."""
        first_layer, epochs_done = resume
        n_epochs = self.config.epochs_per_layer
        for index in range(first_layer, len(self.layers)):
            start = time.perf_counter() - self.seconds[index]
            for layer in self.layers:   # drop the previous phase's scratch before allocating anew
                layer.release_buffers()
            inp, lower = self.chain_inputs(index)
            if not negative_rule(self.config.negatives).redraw_each_epoch:
                for frozen in self.layers[:index]:  # inp / lower keep what they need alive
                    frozen.release_buffers()
            for epoch in range(epochs_done + 1 if index == first_layer else 1, n_epochs + 1):
                if negative_rule(self.config.negatives).redraw_each_epoch:
                    self._redraw_negatives()
                    inp, lower = self.chain_inputs(index)
                try:
                    stats = self._update_batches(index, inp, lower, self._batches())
                except FloatingPointError:
                    raise Diverged(epoch) from None
                self._record(index, epoch, *stats)
                self.seconds[index] = time.perf_counter() - start
                self._maybe_checkpoint(index, epoch, index * n_epochs + epoch)
            self.seconds[index] = time.perf_counter() - start

    def train_alternating(self, resume: tuple[int, int] = (0, 0)) -> None:
        """Every layer once per epoch; ``resume = (_, epochs done)`` from a checkpoint."""
        for epoch in range(resume[1] + 1, self.config.epochs_per_layer + 1):
            if negative_rule(self.config.negatives).redraw_each_epoch:
                self._redraw_negatives()
            try:
                per_layer = self._alternating_epoch()
            except FloatingPointError:
                raise Diverged(epoch) from None
            for index, stats in enumerate(per_layer):
                self._record(index, epoch, *(float(torch.stack(c).mean()) for c in zip(*stats)))
            self._maybe_checkpoint(len(self.layers) - 1, epoch, epoch)

    def _alternating_epoch(self) -> list[list]:
        """One alternating epoch: per minibatch, every layer steps once, bottom to top."""
        per_layer: list[list] = [[] for _ in self.layers]
        for idx in self._batches():
            inp = self.overlay if idx is None else self.overlay.rows(idx)
            lower: list[torch.Tensor] = []
            for index, layer in enumerate(self.layers):
                start = time.perf_counter()
                per_layer[index].append(self.update_layer(index, inp, lower))
                if index + 1 < len(self.layers):
                    with torch.no_grad():
                        own, direction = layer.goodness_and_direction(inp)
                        lower.append(own)
                        inp = PlainInput(direction)
                self.seconds[index] += time.perf_counter() - start
        return per_layer

    # ------------------------------------------------------------------ checkpoints
    def _maybe_checkpoint(self, index: int, epoch: int, epochs_done: int) -> None:
        """Write a checkpoint after this epoch if one is due (never after the run's last)."""
        n_epochs = self.config.epochs_per_layer
        total = n_epochs * (len(self.layers) if self.config.schedule == "sequential" else 1)
        if self.checkpoint is None or not self.checkpoint.enabled or epochs_done >= total:
            return
        if self.checkpoint.due(epochs_done):
            self.checkpoint.save(trainer_state(self, index, epoch), {
                "schedule": self.config.schedule, "variant": self.config.variant,
                "layer": index + 1, "epoch": epoch, "epochs_per_layer": n_epochs,
                "n_layers": len(self.layers), "epochs_done": epochs_done, "epochs_total": total,
                "elapsed_s": self.elapsed()})

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def final_layer_goodness(self) -> list[tuple[float, float]]:
        """Mean G_pos / G_neg per layer on the training data with the final weights."""
        return [(float(g_pos), float(g_neg))
                for g_pos, g_neg in mean_layer_goodness(self.layers, self.overlay)]

    def weights(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(layer.weight.detach(), layer.bias.detach()) for layer in self.layers]


def train_run(config: TrainConfig, splits: Splits, device: str = "cpu",
              on_epoch: Callable[[dict], None] | None = None,
              checkpoint: RunCheckpoint | None = None) -> RunResult:
    """Train one run and evaluate it; a diverging run is reported, never raised.

    Parameters
    ----------
    config : TrainConfig
        The run (variant, widths, epochs, γ/α settings, seed, ...).
    splits : Splits
        Normalised, flattened data: ``x_*`` ``(N, D)`` float32, ``y_*`` ``(N,)`` int64.
    device : {"cpu", "cuda", "auto"}
        Where to train. Random draws always happen on CPU generators, so the initial weights and
        negatives do not depend on the device. On CPU, the same config and splits give
        bit-identical results.
    on_epoch : callable, optional
        Receives every recorded curve row (a dict with the ``curves`` columns). A resumed run
        sends only the rows after its checkpoint.
    checkpoint : RunCheckpoint, optional
        Resume from this checkpoint if it is valid for this run, and write it as it falls due
        (:mod:`cffbench.ff.checkpoint`; ``bp`` too). The caller deletes
        it once the result is safe. On CPU the result equals an uninterrupted run bit for bit.

    Returns
    -------
    RunResult
        Test / validation / train accuracy (train on a fixed subset of ``train_eval_size``
        training images drawn from the seed), per-layer final G_pos / G_neg and seconds, final γ
        and α, and the long-format curves.

    Raises
    ------
    TrainConfigError
        Unknown device, or more classes than input features for the label overlay.
    """
    if not isinstance(config, TrainConfig):
        raise TrainConfigError(f"train_run expects a TrainConfig, got {type(config).__name__}")
    torch_device = resolve_device(device)
    started = time.perf_counter()
    variant = variant_of(config)
    if variant.end_to_end:
        from cffbench.ff.backprop import train_backprop

        return train_backprop(config, splits, torch_device, on_epoch, started, checkpoint)
    notes = variant.notes(config)
    for note in notes:
        log.info(note)
    trainer = FFTrainer(config, splits, torch_device, on_epoch)
    trainer.started = started
    resume, resumed_at = (0, 0), ""
    if checkpoint is not None and checkpoint.enabled:
        trainer.checkpoint = checkpoint
        state = checkpoint.load(trainer_identity(trainer))
        if state is not None:
            try:
                resume = restore_trainer(trainer, state)
                done = state["phase"]["epoch"]
                resumed_at = (f"epoch {done} of every layer" if config.schedule == "alternating"
                              else f"layer {state['phase']['layer'] + 1}, epoch {done}")
                log.warning("run %s resumed from its checkpoint after %s", checkpoint.run_id,
                            resumed_at)
                if (note := resume_note(state)) is not None:
                    notes.append(note)
                    log.warning(note)
            except (KeyError, TypeError, ValueError, RuntimeError) as exc:
                checkpoint.ignore(f"does not fit this run ({type(exc).__name__}: {exc})")
                trainer = FFTrainer(config, splits, torch_device, on_epoch)
                trainer.started, trainer.checkpoint = started, checkpoint
    diverged_epoch = None
    try:
        if config.schedule == "sequential":
            trainer.train_sequential(resume)
        else:
            trainer.train_alternating(resume)
        if not all(bool(torch.isfinite(w).all() and torch.isfinite(b).all())
                   for w, b in trainer.weights()):
            raise Diverged(config.epochs_per_layer)   # the last step produced non-finite weights
    except Diverged as signal:
        diverged_epoch = signal.epoch
        log.warning("run diverged at epoch %d", signal.epoch)
    weights = trainer.weights()
    if checkpoint is not None:
        notes.extend(checkpoint.notes())
    return finish_result(
        config, splits, diverged_epoch=diverged_epoch,
        accuracy=lambda x, y: ff_accuracy(weights, x.to(torch_device), y.to(torch_device),
                                          splits.n_classes,
                                          goodness=goodness_function(config.goodness)),
        train_eval_generator=trainer.generators["train_eval"],
        layer_goodness=trainer.final_layer_goodness, layer_seconds=trainer.seconds,
        curves=trainer.curves, finals=trainer.logit_rule.finals(), elapsed=trainer.elapsed,
        device=torch_device, notes=notes, resumed_at=resumed_at,
        resumed_elapsed_s=trainer.elapsed_before,
        gradient=gradient_path(goodness_function(config.goodness)))
