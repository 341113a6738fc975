"""Seed stacking: S runs that differ only in ``seed`` trained as one batched model.

Weights are stacked to ``W`` ``(S, H, D)``, biases to ``b`` ``(S, H)``; a layer is
``relu(baddbmm(b, x, Wᵀ))`` on stacked inputs ``x`` ``(S, M, D)``, so seed s only touches slice s.
Per-seed losses ``L_s`` are summed before ``backward()`` (``∂(Σ_s L_s)/∂θ_s = ∂L_s/∂θ_s``) and
Adam / SGD are elementwise, so **one optimiser over the stack takes exactly the steps of S
separate optimisers**. γ_l ``(S,)`` and α's row logits ``(S, L − 1)`` are stacked the same way,
one optimiser per layer (:class:`~cffbench.ff.collaboration.Collaboration` with
``seed_shape = (S,)``). The step is the single-run engine's own
(:func:`cffbench.ff.step.layer_step` on :class:`~cffbench.ff.layers.FFLayer` s with a seed axis:
the same forward, goodness, logit rule, loss and manual gradient), seed-derived state comes from
the engine's own helpers (``run_generators``, ``init_linear`` in layer order,
``draw_negative_labels``, ``train_eval_subset``, ``OverlayInput``), prediction is ``ff_accuracy``
per slice and the result is assembled by :func:`~cffbench.ff.result.finish_result`, so on CPU the
results equal S ``train_run`` calls within float rounding (pinned by ``tests/test_ff_stacked.py``).

Stacked: ``ff`` / ``f-cff`` / ``a-cff`` (both θ placements, every α structure, learned α and γ),
``sequential``, full batch (``batch_size`` 0 or ≥ N), ``fp32``, negatives ``fixed`` /
``permutation``. Anything else (``bp``, ``alternating``, minibatches, ``bf16``, ``redraw``) falls
back to one ``train_run`` per config (:func:`stacking_unsupported`).

Divergence is per seed: a seed whose loss or γ turns non-finite is marked ``diverged`` at that
epoch with its γ / α of that moment (as ``train_run`` reports them) and is no longer recorded; its
slice keeps computing, but non-finite values stay in slice s (bmm per batch entry, elementwise
optimisers), so the other seeds train on unaffected. The value is on GPUs (S short runs keep one
device busy); on CPU separate runs are as fast (``benchmarks/bench_stacked.py``), hence opt-in.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Sequence

import torch

from cffbench.data.splits import Splits
from cffbench.errors import TrainConfigError
from cffbench.ff.config import TrainConfig, run_generators
from cffbench.ff.goodness import goodness_function, gradient_path
from cffbench.ff.layers import FFLayer, OverlayInput, init_linear, require_label_overlay
from cffbench.ff.negatives import negative_rule
from cffbench.ff.predict import ff_accuracy
from cffbench.ff.result import RunResult, curve_epochs, finish_result, resolve_device
from cffbench.ff.step import chain_inputs, layer_step, mean_layer_goodness
from cffbench.ff.train import draw_negative_labels, train_run
from cffbench.ff.variants import variant_of

log = logging.getLogger(__name__)

EpochFn = Callable[[dict], None]


def stacking_unsupported(config: TrainConfig, n_train: int) -> str | None:
    """Why ``config`` cannot be seed-stacked (``None`` when it can)."""
    if variant_of(config).end_to_end:
        return f"variant {config.variant}"
    if config.schedule != "sequential":
        return f"schedule {config.schedule}"
    if 0 < config.batch_size < n_train:
        return f"minibatches (batch_size {config.batch_size})"
    if config.precision != "fp32":
        return f"precision {config.precision}"
    if negative_rule(config.negatives).redraw_each_epoch:
        return f"negatives {config.negatives}"
    return None


def check_stackable(configs: Sequence[TrainConfig], splits: Sequence[Splits]) -> None:
    """Raise ``ValueError`` unless the configs differ only in ``seed`` and the splits share shapes."""
    if len(configs) != len(splits):
        raise ValueError(f"train_stacked: {len(configs)} configs but {len(splits)} splits")
    if not configs:
        return
    for config in configs:
        if not isinstance(config, TrainConfig):
            raise TrainConfigError(f"train_stacked expects TrainConfig, got {type(config).__name__}")
    first = configs[0].model_dump(exclude={"seed"})
    for config in configs[1:]:
        other = config.model_dump(exclude={"seed"})
        differing = sorted(k for k in first if first[k] != other[k])
        if differing:
            raise ValueError(f"train_stacked: configs must differ only in seed; they also differ "
                             f"in {', '.join(differing)}")
    def shapes(s: Splits) -> tuple:
        return (s.x_train.shape, s.y_train.shape, s.x_val.shape, s.x_test.shape, s.n_classes)
    for other in splits[1:]:
        if shapes(other) != shapes(splits[0]):
            raise ValueError(f"train_stacked: splits must share shapes; got {shapes(splits[0])} "
                             f"and {shapes(other)} (x_train, y_train, x_val, x_test, n_classes)")


class StackedFFTrainer:
    """S seed runs of one FF-family config as one batched model (sequential, full batch, fp32).

    ``layers[l]`` is an :class:`~cffbench.ff.layers.FFLayer` with weight ``(S, H_l, D_l)`` and
    bias ``(S, H_l)`` (one Adam over both); ``overlay`` is the engine's label overlay per seed,
    stacked: ``x0_dir`` ``(S, N, D)``, ``label_pos`` / ``label_neg`` ``(S, N, n_classes)``;
    ``logit_rule`` the variant's, with γ / α of shape ``(S, ...)``.
    """

    def __init__(self, configs: Sequence[TrainConfig], splits: Sequence[Splits],
                 device: torch.device, on_epoch: Sequence[EpochFn | None] | None = None) -> None:
        check_stackable(configs, splits)
        self.configs, self.splits, self.device = list(configs), list(splits), device
        config = self.config = configs[0]
        if (reason := stacking_unsupported(config, splits[0].x_train.shape[0])) is not None:
            raise ValueError(f"StackedFFTrainer cannot stack {reason}; use train_stacked, which "
                             f"falls back to train_run")
        self.n_seeds, self.n_labels = len(configs), splits[0].n_classes
        require_label_overlay(splits[0])
        self.on_epoch = list(on_epoch) if on_epoch is not None else [None] * self.n_seeds
        self.generators = [run_generators(c.seed) for c in configs]
        widths = (splits[0].n_features, *config.hidden)
        per_seed = [[init_linear(d_in, d_out, gens["init"]) for d_in, d_out in zip(widths[:-1], widths[1:])]
                    for gens in self.generators]   # per seed, layer by layer: train_run's order
        self.layers = [FFLayer.from_parameters(torch.stack([seed[i][0] for seed in per_seed]),
                                               torch.stack([seed[i][1] for seed in per_seed]),
                                               config.lr, device, config.precision,
                                               goodness_function(config.goodness))
                       for i in range(config.n_layers)]
        self.logit_rule = variant_of(config).logit_rule(config, device, (self.n_seeds,))
        overlays = []
        for s, gens in zip(splits, self.generators):
            y_neg = draw_negative_labels(s.y_train, self.n_labels, gens["negatives"], config.negatives)
            overlays.append(OverlayInput.build(s.x_train.to(device), s.y_train.to(device),
                                               y_neg.to(device), self.n_labels))
        self.overlay = OverlayInput.stack(overlays)
        self.recorded = set(curve_epochs(config.epochs_per_layer).tolist())
        self.curves: list[list[dict]] = [[] for _ in configs]
        self.seconds = [0.0] * config.n_layers
        self.diverged_epoch: list[int | None] = [None] * self.n_seeds
        self.frozen_finals: list[tuple | None] = [None] * self.n_seeds

    # ------------------------------------------------------------------ one step
    def update_layer(self, index: int, inp, lower: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """One Adam step of layer ``index`` for every seed; returns (loss, G_pos, G_neg), each ``(S,)``."""
        return layer_step(self.layers, index, inp, lower, self.logit_rule)

    def _record(self, index: int, epoch: int, stats: tuple[torch.Tensor, ...]) -> None:
        loss, g_pos, g_neg = (t.cpu().tolist() for t in stats)
        finite = torch.isfinite(stats[0].cpu()) & self.logit_rule.finite()
        for s in range(self.n_seeds):
            if self.diverged_epoch[s] is not None:
                continue
            if not bool(finite[s]):
                self._mark_diverged(s, epoch)
            elif epoch in self.recorded:
                row = {"layer": index + 1, "epoch": epoch, "loss": loss[s], "g_pos": g_pos[s],
                       "g_neg": g_neg[s], **self.logit_rule.curve_values(index, s)}
                self.curves[s].append(row)
                if self.on_epoch[s] is not None:
                    self.on_epoch[s](dict(row))

    def _mark_diverged(self, seed_index: int, epoch: int) -> None:
        self.diverged_epoch[seed_index] = epoch
        # what train_run reports: γ / α when it stopped
        self.frozen_finals[seed_index] = self.logit_rule.finals(seed_index)
        log.warning("seed %d diverged at epoch %d", self.configs[seed_index].seed, epoch)

    def train_sequential(self) -> None:
        """Layer 1 for E epochs, then layer 2 on layer 1's frozen output, ... (all seeds at once)."""
        for index in range(self.config.n_layers):
            start = time.perf_counter()
            for layer in self.layers:   # drop the previous phase's scratch before allocating anew
                layer.release_buffers()
            inp, lower = chain_inputs(self.layers, self.overlay, index)
            for frozen in self.layers[:index]:   # inp / lower keep what they need alive
                frozen.release_buffers()
            for epoch in range(1, self.config.epochs_per_layer + 1):
                try:
                    stats = self.update_layer(index, inp, lower)
                except FloatingPointError:   # an optimiser overflow: the lr is shared by all seeds
                    for s in range(self.n_seeds):
                        if self.diverged_epoch[s] is None:
                            self._mark_diverged(s, epoch)
                    return
                self._record(index, epoch, stats)
            self.seconds[index] = (time.perf_counter() - start) / self.n_seeds
        for s in range(self.n_seeds):   # a last step may leave non-finite weights
            if self.diverged_epoch[s] is None and not all(
                    bool(torch.isfinite(w[s]).all() and torch.isfinite(b[s]).all())
                    for w, b in self.stacked_weights()):
                self._mark_diverged(s, self.config.epochs_per_layer)

    # ------------------------------------------------------------------ results
    def stacked_weights(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``[(W_l (S, H, D), b_l (S, H)), ...]``, detached."""
        return [(layer.weight.detach(), layer.bias.detach()) for layer in self.layers]

    def seed_weights(self, seed_index: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``[(W_l (H, D), b_l (H,)), ...]`` of one seed, as ``FFTrainer.weights()`` gives them."""
        return [(w[seed_index], b[seed_index]) for w, b in self.stacked_weights()]

    def final_layer_goodness(self) -> list[list[tuple[float, float]]]:
        """Per seed, per layer: mean G_pos / G_neg on the training data with the final weights."""
        per_layer = [(g_pos.tolist(), g_neg.tolist())
                     for g_pos, g_neg in mean_layer_goodness(self.layers, self.overlay)]
        return [[(pos[s], neg[s]) for pos, neg in per_layer] for s in range(self.n_seeds)]

    def results(self, duration_s: float) -> list[RunResult]:
        """One :class:`RunResult` per seed (accuracies by the engine's label-overlay prediction);
        ``duration_s`` is the wall time of the whole stack."""
        config, n_seeds = self.config, self.n_seeds
        notes = variant_of(config).notes(config)
        stacked_note = (f"trained seed-stacked with {n_seeds} seeds in one batched model "
                        f"(duration_s and seconds are the stack's wall time / {n_seeds})")
        goodness = self.final_layer_goodness()
        out = []
        for s, (splits, gens) in enumerate(zip(self.splits, self.generators)):
            weights = self.seed_weights(s)
            out.append(finish_result(
                config, splits, diverged_epoch=self.diverged_epoch[s],
                accuracy=lambda x, y, w=weights, c=splits.n_classes: ff_accuracy(
                    w, x.to(self.device), y.to(self.device), c,
                    goodness=goodness_function(config.goodness)),
                train_eval_generator=gens["train_eval"],
                layer_goodness=lambda g=goodness[s]: g, layer_seconds=self.seconds,
                curves=self.curves[s],
                finals=self.frozen_finals[s] or self.logit_rule.finals(s),
                elapsed=lambda: duration_s / n_seeds, device=self.device, notes=notes,
                closing_notes=[stacked_note],
                gradient=gradient_path(goodness_function(config.goodness))))
        return out


def train_stacked(configs: Sequence[TrainConfig], splits: Sequence[Splits], device: str = "cpu",
                  on_epoch: Sequence[EpochFn | None] | None = None) -> list[RunResult]:
    """Train S runs that differ only in ``seed`` as one batched model; one result per config.

    Parameters
    ----------
    configs : sequence of TrainConfig, length S
        Identical except ``seed``.
    splits : sequence of Splits, length S
        ``splits[s]`` is the data of ``configs[s]`` (e.g. the seed's stratified ``n_train``
        subset); all share shapes: ``x_train`` ``(N, D)``, ``x_val``, ``x_test``, ``n_classes``.
    device : {"cpu", "cuda", "auto"}
    on_epoch : sequence of callables (or None), length S, optional
        ``on_epoch[s]`` receives seed s's recorded curve rows, as ``train_run``'s ``on_epoch``.

    Returns
    -------
    list of RunResult
        ``results[s]`` equals ``train_run(configs[s], splits[s])`` within float rounding, plus a
        note that it was stacked; ``duration_s`` is the stack's wall time / S. Configs that
        cannot be stacked (:func:`stacking_unsupported`) are run by ``train_run`` one by one.

    Raises
    ------
    ValueError
        Configs that differ in anything but ``seed``, or splits of different shapes.
    TrainConfigError
        Unknown device, or more classes than input features.
    """
    configs, splits = list(configs), list(splits)
    if not configs:
        return []
    check_stackable(configs, splits)
    callbacks = list(on_epoch) if on_epoch is not None else [None] * len(configs)
    if len(callbacks) != len(configs):
        raise ValueError(f"train_stacked: {len(callbacks)} on_epoch callbacks for {len(configs)} configs")
    config = configs[0]
    if stacking_unsupported(config, splits[0].x_train.shape[0]) is not None:
        return [train_run(c, s, device, cb) for c, s, cb in zip(configs, splits, callbacks)]
    torch_device = resolve_device(device)
    started = time.perf_counter()
    trainer = StackedFFTrainer(configs, splits, torch_device, callbacks)
    trainer.train_sequential()
    return trainer.results(time.perf_counter() - started)
