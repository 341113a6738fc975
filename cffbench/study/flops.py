"""Floating-point work of one run, counted analytically, and the GPU time it implies.

Only matrix products are counted, ``2·m·k·n`` FLOPs for an ``(m, k) x (k, n)`` product: that is
where a run spends its arithmetic and what a GPU's peak TFLOPS figure refers to. Elementwise work
(ReLU, norms, the loss, Adam's update, the rank-one label overlays of prediction) is left out; at
the paper's sizes it is below 2 % of the FLOPs, but its kernel launches are what
:data:`STEP_OVERHEAD_S` stands for.

Counts follow :mod:`cffbench.ff` (see :func:`run_flops`); ``tests/test_gpu_flops.py`` pins them
against ``torch.utils.flop_counter.FlopCounterMode`` around real small runs. FlopCounterMode
counts ``mm``, ``addmm`` and ``bmm`` but not the in-place ``addmm_`` (the engine's first-layer
label corrections, ``4·R·C·d_1`` per step) nor ``mv`` / ``addr``; those make up the difference.
"""

from __future__ import annotations

from cffbench.ff.config import TrainConfig
from cffbench.ff.variants import reads_other_layers

#: Assumed floor per optimiser step on a GPU: one layer update dispatches 74 (ff) to 108 (a-cff)
#: aten ops, one bp epoch 130 (counted with a TorchDispatchMode on CPU), each a kernel launch of
#: ~10 µs with Python dispatch, and the epoch's loss is read back (one synchronisation). The
#: 10 µs is an assumption, not a GPU measurement.
STEP_OVERHEAD_S = 1e-3


def _mm(m: int, k: int, n: int) -> int:
    return 2 * m * k * n


def _ff_layer_forward(rows: int, d_in: int, d_out: int, n_classes: int, first: bool) -> int:
    """Forward of one FF layer on ``rows`` positives and ``rows`` negatives."""
    if first:   # shared base matmul x0 s W^T, then the positive and negative label columns
        return _mm(rows, d_in, d_out) + 2 * _mm(rows, n_classes, d_out)
    return _mm(2 * rows, d_in, d_out)


def _ff_layer_gradient(rows: int, d_in: int, d_out: int, n_classes: int, first: bool) -> int:
    """The manual weight gradient ``δ^T x`` (first layer: shared base + two label products)."""
    if first:
        return _mm(d_out, rows, d_in) + 2 * _mm(d_out, rows, n_classes)
    return _mm(d_out, 2 * rows, d_in)


def _prediction_flops(widths: list[int], rows: int, n_classes: int) -> int:
    """Label-overlay prediction on ``rows`` images: one shared base, then every label's pass."""
    later = sum(_mm(rows, a, b) for a, b in zip(widths[1:-1], widths[2:]))
    return _mm(rows, widths[0], widths[1]) + n_classes * later


def run_flops(config: TrainConfig, n_train: int, n_val: int, n_test: int, n_features: int,
              n_classes: int) -> int:
    """Matrix-multiply FLOPs of one run: training plus evaluation.

    With widths ``d_0 = D, d_1 .. d_L``, N training images, C classes, E epochs per layer:

    - FF-family update of layer l on the epoch's N images (split over minibatches, which does not
      change the sum): forward + weight gradient, ``8·N·d_{l-1}·d_l`` (layer 1 shares the base
      product between positives and negatives: ``4·N·D·d_1 + 8·N·C·d_1``);
    - CFF also runs every later layer forward-only on layer l's output, ``4·N·d_{k-1}·d_k`` each;
    - inputs of layer l: the forward of the layers below, once per layer phase (``sequential``),
      every epoch (``redraw`` negatives), or once per epoch for every layer but the last
      (``alternating``); the final goodness pass is one forward of every layer;
    - evaluation on the test, validation and train-eval (``min(train_eval_size, N)``) sets of M
      rows: ``2·M·D·d_1 + C·Σ_{l≥2} 2·M·d_{l-1}·d_l``;
    - ``bp``: E·L epochs of forward ``2·N·Σ d_{l-1} d_l`` (head ``d_L → C`` included) and backward
      twice that, minus the input gradient of layer 1; evaluation one forward per set.

    Returns
    -------
    int
        FLOPs (multiply and add counted separately).
    """
    widths = [n_features, *config.hidden]
    E, L, N, C = config.epochs_per_layer, config.n_layers, n_train, n_classes
    n_eval_train = min(config.train_eval_size, N)
    if config.variant == "bp":
        dims = [*widths, C]
        forward = sum(_mm(N, a, b) for a, b in zip(dims[:-1], dims[1:]))
        backward = 2 * forward - _mm(N, dims[0], dims[1])
        evaluation = sum(_mm(m, a, b) for m in (n_val, n_test, n_eval_train)
                         for a, b in zip(dims[:-1], dims[1:]))
        return E * L * (forward + backward) + evaluation

    def forward(layer: int, rows: int = N) -> int:          # layer is 1-based
        return _ff_layer_forward(rows, widths[layer - 1], widths[layer], C, layer == 1)

    reads_others = reads_other_layers(config)

    def update(layer: int) -> int:
        flops = forward(layer) + _ff_layer_gradient(N, widths[layer - 1], widths[layer], C,
                                                    layer == 1)
        if reads_others:
            flops += sum(_mm(2 * N, widths[k - 1], widths[k]) for k in range(layer + 1, L + 1))
        return flops

    if config.schedule == "alternating":
        training = E * sum(update(l) + (forward(l) if l < L else 0) for l in range(1, L + 1))
    else:
        below = 0
        for layer in range(1, L + 1):
            lower = sum(forward(k) for k in range(1, layer))
            # redraw: recomputed every epoch, after the phase's first computation
            below += lower * (E + 1 if config.negatives == "redraw" else 1)
        training = E * sum(update(l) for l in range(1, L + 1)) + below
    final_goodness = sum(forward(l) for l in range(1, L + 1))
    evaluation = sum(_prediction_flops(widths, m, C) for m in (n_val, n_test, n_eval_train))
    return training + final_goodness + evaluation


def optimizer_steps(config: TrainConfig, n_train: int) -> int:
    """Optimiser steps of one run: epochs x layers x minibatches (``bp``: E·L epochs of one
    network step per minibatch)."""
    full_batch = config.batch_size == 0 or config.batch_size >= n_train
    batches = 1 if full_batch else -(-n_train // config.batch_size)
    return config.epochs_per_layer * config.n_layers * batches


def gpu_seconds(flops: int, steps: int, tflops: float) -> float:
    """``flops / (tflops · 1e12) + steps · STEP_OVERHEAD_S``: a FLOP-count estimate of one run
    on a GPU that sustains ``tflops`` TFLOPS on these matmuls; not a measurement."""
    return flops / (tflops * 1e12) + steps * STEP_OVERHEAD_S
