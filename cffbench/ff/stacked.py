"""Seed stacking: S runs that differ only in ``seed`` trained as one batched model.

Weights are stacked to ``W`` ``(S, H, D)``, biases to ``b`` ``(S, H)``; a layer is
``relu(baddbmm(b, x, Wᵀ))`` on stacked inputs ``x`` ``(S, M, D)``, so seed s only touches slice s.
Per-seed losses ``L_s`` are summed before ``backward()`` (``∂(Σ_s L_s)/∂θ_s = ∂L_s/∂θ_s``) and
Adam / SGD are elementwise, so **one optimiser over the stack takes exactly the steps of S
separate optimisers**. γ_l ``(S,)`` and α's row logits ``(S, L − 1)`` are stacked the same way,
one optimiser per layer as in :class:`~cffbench.ff.collaboration.Collaboration`. Seed-derived
state comes from the engine's own helpers (``run_generators``, ``init_linear`` in layer order,
``draw_negative_labels``, ``train_eval_subset``, ``OverlayInput``), the weight gradient is the
engine's manual one and prediction is ``ff_accuracy`` per slice, so on CPU the results equal S
``train_run`` calls within float rounding (pinned by ``tests/test_ff_stacked.py``).

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

import pandas as pd
import torch
import torch.nn.functional as F

from cffbench.data.splits import Splits
from cffbench.errors import TrainConfigError
from cffbench.ff.alpha import normalised_structures_coincide
from cffbench.ff.config import TrainConfig, run_generators
from cffbench.ff.goodness import NORM_EPS
from cffbench.ff.layers import OverlayInput, init_linear
from cffbench.ff.predict import ff_accuracy
from cffbench.ff.result import CURVE_COLUMNS, RunResult, curve_epochs, optimizer_step, resolve_device
from cffbench.ff.stacked_collaboration import StackedCollaboration
from cffbench.ff.train import draw_negative_labels, train_eval_subset, train_run

log = logging.getLogger(__name__)

EpochFn = Callable[[dict], None]


def stacking_unsupported(config: TrainConfig, n_train: int) -> str | None:
    """Why ``config`` cannot be seed-stacked (``None`` when it can)."""
    if config.variant == "bp":
        return "variant bp"
    if config.schedule != "sequential":
        return f"schedule {config.schedule}"
    if 0 < config.batch_size < n_train:
        return f"minibatches (batch_size {config.batch_size})"
    if config.precision != "fp32":
        return f"precision {config.precision}"
    if config.negatives == "redraw":
        return "negatives redraw"
    return None


def config_notes(config: TrainConfig) -> list[str]:
    """The notes ``train_run`` attaches to every run of ``config`` before training."""
    notes = []
    if config.is_collaborative and normalised_structures_coincide(config.n_layers):
        notes.append("with 2 hidden layers all normalised alpha structures coincide "
                     "(uniform = distance = learned = ones: alpha = [[0, 1], [1, 0]])")
    if config.variant == "a-cff" and config.gamma == 0 and config.gamma_lr > 0:
        notes.append("a-cff with gamma init 0: gamma receives gradient and moves away from 0")
    return notes


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

    ``weights[l]`` ``(S, H_l, D_l)`` and ``biases[l]`` ``(S, H_l)`` are leaf tensors, each layer
    with one Adam over both; the first layer's input is the engine's label overlay per seed,
    stacked: ``x0_dir`` ``(S, N, D)``, ``label_pos`` / ``label_neg`` ``(S, N, n_classes)``.
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
        if splits[0].n_classes > splits[0].n_features:
            raise TrainConfigError(f"{splits[0].name}: {splits[0].n_classes} classes do not fit "
                                   f"the label overlay of {splits[0].n_features} features")
        self.on_epoch = list(on_epoch) if on_epoch is not None else [None] * self.n_seeds
        self.generators = [run_generators(c.seed) for c in configs]
        widths = (splits[0].n_features, *config.hidden)
        per_seed = [[init_linear(d_in, d_out, gens["init"]) for d_in, d_out in zip(widths[:-1], widths[1:])]
                    for gens in self.generators]   # per seed, layer by layer: train_run's order
        self.weights = [torch.stack([seed[i][0] for seed in per_seed]).to(device).requires_grad_()
                        for i in range(config.n_layers)]
        self.biases = [torch.stack([seed[i][1] for seed in per_seed]).to(device).requires_grad_()
                       for i in range(config.n_layers)]
        self.optimizers = [torch.optim.Adam([w, b], lr=config.lr)
                           for w, b in zip(self.weights, self.biases)]
        self.collab = (StackedCollaboration(config, self.n_seeds, device)
                       if config.is_collaborative else None)
        overlays = []
        for s, gens in zip(splits, self.generators):
            y_neg = draw_negative_labels(s.y_train, self.n_labels, gens["negatives"], config.negatives)
            overlays.append(OverlayInput.build(s.x_train.to(device), s.y_train.to(device),
                                               y_neg.to(device), self.n_labels))
        self.x0_dir = torch.stack([o.x0_dir for o in overlays])
        self.label_pos = torch.stack([o.label_pos for o in overlays])
        self.label_neg = torch.stack([o.label_neg for o in overlays])
        self.recorded = set(curve_epochs(config.epochs_per_layer).tolist())
        self.curves: list[list[dict]] = [[] for _ in configs]
        self.seconds = [0.0] * config.n_layers
        self.diverged_epoch: list[int | None] = [None] * self.n_seeds
        self.frozen_collab: list[tuple | None] = [None] * self.n_seeds
        self._buffers: dict[tuple, torch.Tensor] = {}

    # ------------------------------------------------------------------ forward
    @torch.no_grad()
    def forward(self, index: int, inp: torch.Tensor | None) -> torch.Tensor:
        """Activations ``(S, 2N, H)`` of layer ``index``, positives first; ``inp`` ``(S, 2N, D)``
        unit-direction rows, or ``None`` for the label overlay (shared base ``x₀ s Wᵀ + b``, then
        each half adds its labels' columns, the same operations as ``FFLayer.forward``)."""
        weight_t = self.weights[index].transpose(1, 2)
        bias = self.biases[index][:, None, :]
        (n_seeds, n, _), width = self.x0_dir.shape, weight_t.shape[2]
        h = self.buffer("h", index, (n_seeds, 2 * n, width))
        if inp is not None:
            return torch.baddbmm(bias, inp, weight_t, out=h).clamp_(min=0.0)
        base = torch.baddbmm(bias, self.x0_dir, weight_t,
                             out=self.buffer("base", index, (n_seeds, n, width)))
        label_w = weight_t[:, : self.n_labels]
        torch.baddbmm(base, self.label_pos, label_w, out=h[:, :n])
        torch.baddbmm(base, self.label_neg, label_w, out=h[:, n:])
        return h.clamp_(min=0.0)

    def buffer(self, name: str, index: int, shape: tuple[int, ...]) -> torch.Tensor:
        """A scratch tensor of layer ``index`` reused across epochs (no page faults per epoch)."""
        key = (name, index, shape)
        if key not in self._buffers:
            self._buffers[key] = torch.empty(shape, device=self.device)
        return self._buffers[key]

    def goodness_and_direction(self, index: int, h: torch.Tensor, direction: bool = True
                               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``G = ‖h‖²/H`` ``(S, 2N)`` and the next layer's input ``h/(‖h‖+ε)`` (into a buffer)."""
        norm = torch.linalg.vector_norm(h, dim=2)
        own = norm.square() / self.weights[index].shape[1]
        if not direction:
            return own, None
        return own, torch.div(h, (norm + NORM_EPS)[..., None],
                              out=self.buffer("dir", index, tuple(h.shape)))

    @torch.no_grad()
    def chain(self, upto: int) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
        """Input of layer ``upto`` and the goodness ``(S, 2N)`` of every layer below it."""
        inp, lower = None, []
        for index in range(upto):
            own, inp = self.goodness_and_direction(index, self.forward(index, inp))
            lower.append(own)
        return inp, lower

    # ------------------------------------------------------------------ one step
    def update_layer(self, index: int, inp, lower: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """One Adam step of layer ``index`` for every seed; returns (loss, G_pos, G_neg), each ``(S,)``.

        Autograd runs on the ``(S, 2N)`` goodness only; the weight gradient is the engine's
        manual one, ``∂L/∂pre = ∂L/∂G · 2h/H``, ``∂L/∂W = δᵀ x``, ``∂L/∂b = Σ_rows δ`` (batched).
        """
        n, theta, collab = self.x0_dir.shape[1], self.config.threshold, self.collab
        width = self.weights[index].shape[1]
        h = self.forward(index, inp)
        own, h_dir = self.goodness_and_direction(index, h, direction=collab is not None)
        upper = []
        if collab is not None:
            with torch.no_grad():   # the other layers' goodness enters forward-only
                for later in range(index + 1, self.config.n_layers):
                    g_later, h_dir = self.goodness_and_direction(later, self.forward(later, h_dir))
                    upper.append(g_later)
        own_leaf = own.detach().requires_grad_()
        with torch.enable_grad():
            if collab is None:
                logits = own_leaf - theta
            else:
                collab.zero_grad(index)
                others = torch.stack([*lower, own, *upper], dim=1)              # (S, L, 2N)
                alpha_row, gamma = collab.alpha_row(index)[:, None, :], collab.gammas[index][:, None]
                if self.config.theta_placement == "per_term":
                    logits = (own_leaf - theta) + gamma * torch.bmm(alpha_row, others - theta)[:, 0]
                else:
                    logits = (own_leaf + gamma * torch.bmm(alpha_row, others)[:, 0]) - theta
            loss = F.softplus(torch.cat([-logits[:, :n], logits[:, n:]], dim=1)).mean(dim=1)
            loss.sum().backward()   # ∂(Σ_s L_s)/∂θ_s = ∂L_s/∂θ_s: seeds do not mix
        with torch.no_grad():
            delta = h.mul_((own_leaf.grad * (2.0 / width))[..., None])        # (S, 2N, H)
            grad_buffer = self.buffer("grad_w", index, tuple(self.weights[index].shape))
            if inp is None:
                label_grad = torch.bmm(delta[:, :n].transpose(1, 2), self.label_pos)
                label_grad.baddbmm_(delta[:, n:].transpose(1, 2), self.label_neg)
                delta_sum = delta[:, :n].add_(delta[:, n:])
                grad_w = torch.bmm(delta_sum.transpose(1, 2), self.x0_dir, out=grad_buffer)
                grad_w[:, :, : self.n_labels] += label_grad
            else:
                delta_sum = delta
                grad_w = torch.bmm(delta.transpose(1, 2), inp, out=grad_buffer)
            self.weights[index].grad = grad_w
            self.biases[index].grad = delta_sum.sum(dim=1)
        optimizer_step(self.optimizers[index])
        if collab is not None:
            collab.step(index)
        return loss.detach(), own[:, :n].mean(dim=1), own[:, n:].mean(dim=1)

    def _record(self, index: int, epoch: int, stats: tuple[torch.Tensor, ...]) -> None:
        loss, g_pos, g_neg = (t.cpu().tolist() for t in stats)
        finite = torch.isfinite(stats[0].cpu())
        if self.collab is not None:
            finite &= self.collab.finite()
        for s in range(self.n_seeds):
            if self.diverged_epoch[s] is not None:
                continue
            if not bool(finite[s]):
                self._mark_diverged(s, epoch)
            elif epoch in self.recorded:
                row = {"layer": index + 1, "epoch": epoch, "loss": loss[s], "g_pos": g_pos[s],
                       "g_neg": g_neg[s],
                       "gamma": float(self.collab.gammas[index][s].detach()) if self.collab else float("nan"),
                       "alpha_row": self.collab.alpha_row_json(index, s) if self.collab else ""}
                self.curves[s].append(row)
                if self.on_epoch[s] is not None:
                    self.on_epoch[s](dict(row))

    def _mark_diverged(self, seed_index: int, epoch: int) -> None:
        self.diverged_epoch[seed_index] = epoch
        if self.collab is not None:   # what train_run reports: γ / α when it stopped
            self.frozen_collab[seed_index] = self.collab.snapshot(seed_index)
        log.warning("seed %d diverged at epoch %d", self.configs[seed_index].seed, epoch)

    def train_sequential(self) -> None:
        """Layer 1 for E epochs, then layer 2 on layer 1's frozen output, ... (all seeds at once)."""
        for index in range(self.config.n_layers):
            start = time.perf_counter()
            self._buffers.clear()   # drop the previous phase's scratch before allocating anew
            inp, lower = self.chain(index)
            for key in [k for k in self._buffers if k[1] < index and k[:2] != ("dir", index - 1)]:
                del self._buffers[key]   # frozen layers: only their output `inp` stays needed
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
                    for w, b in zip(self.weights, self.biases)):
                self._mark_diverged(s, self.config.epochs_per_layer)

    # ------------------------------------------------------------------ results
    def seed_weights(self, seed_index: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``[(W_l (H, D), b_l (H,)), ...]`` of one seed, as ``FFTrainer.weights()`` gives them."""
        return [(w[seed_index].detach(), b[seed_index].detach())
                for w, b in zip(self.weights, self.biases)]

    @torch.no_grad()
    def final_layer_goodness(self) -> list[list[tuple[float, float]]]:
        """Per seed, per layer: mean G_pos / G_neg on the training data with the final weights."""
        n, inp, per_layer = self.x0_dir.shape[1], None, []
        for index in range(self.config.n_layers):
            own, inp = self.goodness_and_direction(index, self.forward(index, inp))
            per_layer.append((own[:, :n].mean(dim=1).tolist(), own[:, n:].mean(dim=1).tolist()))
        self._buffers.clear()
        return [[(pos[s], neg[s]) for pos, neg in per_layer] for s in range(self.n_seeds)]

    def results(self, duration_s: float) -> list[RunResult]:
        """One :class:`RunResult` per seed (accuracies by the engine's label-overlay prediction);
        ``duration_s`` is the wall time of the whole stack."""
        nan, config, out, notes = float("nan"), self.config, [], config_notes(self.config)
        goodness = self.final_layer_goodness()
        for s, (splits, gens) in enumerate(zip(self.splits, self.generators)):
            seed_notes, acc = list(notes), {"test": nan, "val": nan, "train": nan}
            layer_goodness = [(nan, nan)] * config.n_layers
            if self.diverged_epoch[s] is not None:
                seed_notes.append(f"diverged (non-finite loss or gamma) at epoch {self.diverged_epoch[s]}")
            else:
                layer_goodness = goodness[s]
                for index, (g_pos, g_neg) in enumerate(layer_goodness, start=1):
                    if g_pos == 0.0 and g_neg == 0.0:
                        seed_notes.append(f"layer {index} collapsed (G_pos = G_neg = 0: every unit dead)")
                subset = train_eval_subset(splits, config.train_eval_size, gens["train_eval"])
                for name, x, y in (("test", splits.x_test, splits.y_test),
                                   ("val", splits.x_val, splits.y_val),
                                   ("train", splits.x_train[subset], splits.y_train[subset])):
                    acc[name] = ff_accuracy(self.seed_weights(s), x.to(self.device),
                                            y.to(self.device), splits.n_classes)
            gamma_final, alpha_final = [], []
            if self.collab is not None:
                gamma_final, alpha_final = self.frozen_collab[s] or self.collab.snapshot(s)
            seed_notes.append(f"trained seed-stacked with {self.n_seeds} seeds in one batched model "
                              f"(duration_s and seconds are the stack's wall time / {self.n_seeds})")
            out.append(RunResult(
                status="ok" if self.diverged_epoch[s] is None else "diverged",
                test_acc=acc["test"], val_acc=acc["val"], train_acc=acc["train"],
                gamma_final=gamma_final, alpha_final=alpha_final,
                layer_stats=[{"layer": i + 1, "g_pos": gp, "g_neg": gn, "seconds": self.seconds[i]}
                             for i, (gp, gn) in enumerate(layer_goodness)],
                curves=pd.DataFrame(self.curves[s], columns=CURVE_COLUMNS),
                diverged_epoch=self.diverged_epoch[s], duration_s=duration_s / self.n_seeds,
                device=str(self.device), notes=seed_notes))
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
