"""One FF layer with a fast, allocation-free update: the engine's hot loop.

Speed levers (each pinned against the plain definitions of :mod:`cffbench.ff.goodness` by tests):

- **shared base matmul** for the first layer: a label overlay zeroes the first ``n_labels``
  pixels and sets one of them to the batch max ``m``, so the row norm
  ``‖x̃‖ = sqrt(‖x[n_labels:]‖² + m²)`` is the same for every label and
  ``W x̃/(‖x̃‖+ε) = W x₀ s + (m s) W[:, y]`` with ``x₀`` the image with zeroed label pixels and
  ``s = 1/(‖x̃‖+ε)``. Positives and negatives share one ``(N, D) × (D, H)`` matmul instead of two:
  the positives' pre-activation is the dense ``x̂_pos W^T + b``, the negatives' is that plus the
  label shift ``(ℓ_neg − ℓ_pos) W[:, :n_labels]^T`` (ℓ the scaled one-hot labels). The weight
  gradient shares it too: ``∂W = (δ_pos + δ_neg)^T x̂_pos`` plus ``δ_neg^T (ℓ_neg − ℓ_pos)`` in the
  label columns. That correction is the short, wide product ``(ℓ_neg − ℓ_pos)^T · δ_neg``
  (``n_labels × N`` by ``N × H``) and the bias gradient ``1^T (δ_pos + δ_neg)`` over N rows:
  MKL runs the tall orientation (``δ^T ℓ``, ``H × N`` by ``N × n_labels``) several times slower,
  and a row sum is slower than the ones-row product (benchmarks/README.md).
- **manual gradient** of the layer's weights: with ``G = ‖h‖²/H`` and ``h = relu(pre)``,
  ``∂L/∂pre = (∂L/∂G) · 2h/H`` (zero where the ReLU is off, because h is). ``∂L/∂G`` comes from
  autograd on the ``(2N,)`` goodness vector only, so the (collaborative) loss stays plain torch.
- **row blocks**: after each large product, the row-wise work (label shift, ReLU, row norm,
  unit direction; in the gradient ``∂L/∂pre`` and ``δ_pos + δ_neg``) runs per block of
  :data:`ROW_BLOCK` rows, so a block is read from memory once, not once per operation.
- **buffers reused across epochs** (pre-activations, gradients, normalised outputs), so large
  tensors are not returned to the OS and page-faulted in again every epoch.
- opt-in **bfloat16** matmuls (``precision="bf16"``); accumulation, Adam and evaluation stay fp32.
  The bf16 → fp32 copy of a product and its bias, and δ's cast for the gradient product, run in
  the same row blocks (on AVX512-BF16 the bf16 products are ~4× faster than fp32, so the passes
  around them matter).

The same code trains one run and S seed-stacked runs (:mod:`cffbench.ff.stacked`): every tensor
may carry a leading seed axis (weights ``(S, H, D)``, inputs ``(S, 2N, D)``), and the products
are then ``bmm`` / ``baddbmm``, one per seed, so seed s only touches slice s. Without the axis
they are ``mm`` / ``addmm``, as fast as before. The goodness and its gradient come from a
:class:`~cffbench.ff.goodness.GoodnessFunction` (mean of squares for every built-in variant).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from cffbench.data.splits import Splits
from cffbench.errors import TrainConfigError
from cffbench.ff.goodness import MEAN_SQUARES, NORM_EPS, GoodnessFunction
from cffbench.ff.result import optimizer_step


def require_label_overlay(splits: Splits) -> None:
    """Raise :class:`TrainConfigError` when the classes do not fit the label overlay."""
    if splits.n_classes > splits.n_features:
        raise TrainConfigError(f"{splits.name}: {splits.n_classes} classes do not fit the label "
                               f"overlay of {splits.n_features} features")


def batched_mm(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ b``: ``mm`` for 2-D operands, ``bmm`` for 3-D ones (one product per seed)."""
    return torch.mm(a, b, out=out) if a.dim() == 2 else torch.bmm(a, b, out=out)


def batched_addmm(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                  out: torch.Tensor | None = None) -> torch.Tensor:
    """``c + a @ b``: ``addmm`` (2-D) or ``baddbmm`` (3-D); ``out=c`` adds in place."""
    if out is c:
        return c.addmm_(a, b) if a.dim() == 2 else c.baddbmm_(a, b)
    return torch.addmm(c, a, b, out=out) if a.dim() == 2 else torch.baddbmm(c, a, b, out=out)


#: Rows per block of the engine's row-wise work after a large product: the rank-``n_labels``
#: label shift of the negatives (:meth:`FFLayer.activations`), then ReLU, row norm and unit
#: direction, and in the gradient ``∂L/∂pre`` and ``δ_pos + δ_neg``, each done while the block
#: is in cache. One ``(N, n_labels) × (n_labels, H)`` product over all rows is several times
#: slower than the memory traffic it needs (MKL, 50k × 500 rows, 2026-12-01), and separate full
#: passes over the ``2N × H`` activations each read them from memory again (benchmarks/README.md).
#: Every operation done per block is row-wise, so the values are those of one pass over all
#: rows, with one exception: MKL computes the label shift of a block under about 8 rows (the
#: last block of ``N = 1024 k + r``, r < 8) with another kernel, whose sums may differ in the
#: last bit. So the blocks are part of the numerics: changing this constant is a numerics change.
ROW_BLOCK = 1024


def row_blocks(m: int) -> list[slice]:
    """``[0, m)`` as slices of at most :data:`ROW_BLOCK` rows."""
    return [slice(start, min(start + ROW_BLOCK, m)) for start in range(0, m, ROW_BLOCK)]


def relu_norm_rows_(h: torch.Tensor, norm: torch.Tensor, direction: torch.Tensor | None,
                    rows: slice) -> None:
    """For the rows ``rows`` of pre-activations ``h`` ``(..., M, H)``: ReLU in place, the row norm
    ``‖h‖₂`` into ``norm`` ``(..., M)`` and, when ``direction`` is given, the next layer's input
    ``h / (‖h‖ + ε)`` into it (the definitions of :func:`cffbench.ff.goodness.unit_direction`)."""
    block = h[..., rows, :].relu_()
    block_norm = torch.linalg.vector_norm(block, dim=-1, out=norm[..., rows])
    if direction is not None:
        torch.div(block, (block_norm + NORM_EPS)[..., None], out=direction[..., rows, :])


@dataclass
class OverlayInput:
    """First-layer input: positive and negative overlays of the same ``N`` images.

    ``x0_dir`` ``(N, D)``: image with its first ``n_labels`` pixels zeroed, times
    ``s = 1/(‖x̃‖+ε)``; ``label_pos`` / ``label_neg`` ``(N, n_labels)``: one-hot labels times ``m s``.
    Together they equal ``unit_direction(overlay_labels(x, y))`` for each label vector. A seed
    stack (:meth:`stack`) has a leading seed axis on every field.
    """

    x0_dir: torch.Tensor
    label_scale: torch.Tensor          # (N,) = m s
    label_pos: torch.Tensor
    label_neg: torch.Tensor
    _cast: dict = field(default_factory=dict, repr=False)      # depends on x0_dir, label_pos only
    _negatives: dict = field(default_factory=dict, repr=False)  # depends on label_neg too

    @classmethod
    def build(cls, x: torch.Tensor, y_pos: torch.Tensor, y_neg: torch.Tensor, n_labels: int,
              value: torch.Tensor | float | None = None) -> "OverlayInput":
        value = x.max() if value is None else torch.as_tensor(value, dtype=x.dtype, device=x.device)
        x0 = x.clone()
        x0[:, :n_labels] = 0.0
        norm = torch.sqrt(torch.linalg.vector_norm(x0, dim=1).square_() + value * value)
        scale = 1.0 / (norm + NORM_EPS)
        x0.mul_(scale[:, None])
        label_scale = value * scale
        return cls(x0, label_scale, _one_hot_scaled(y_pos, label_scale, n_labels),
                   _one_hot_scaled(y_neg, label_scale, n_labels))

    @classmethod
    def stack(cls, inputs: list["OverlayInput"]) -> "OverlayInput":
        """S overlays of equal shapes as one with a leading seed axis: ``x0_dir`` ``(S, N, D)``, ..."""
        return cls(*(torch.stack([getattr(inp, name) for inp in inputs])
                     for name in ("x0_dir", "label_scale", "label_pos", "label_neg")))

    @property
    def n(self) -> int:
        return self.x0_dir.shape[-2]

    def with_negatives(self, y_neg: torch.Tensor) -> "OverlayInput":
        """The same images with other negative labels ``(N,)`` (one run, no seed axis)."""
        n_labels = self.label_pos.shape[1]
        return OverlayInput(self.x0_dir, self.label_scale, self.label_pos,
                            _one_hot_scaled(y_neg, self.label_scale, n_labels), self._cast)

    def rows(self, idx: torch.Tensor) -> "OverlayInput":
        """The minibatch of images ``idx`` (one run, no seed axis)."""
        return OverlayInput(self.x0_dir[idx], self.label_scale[idx], self.label_pos[idx],
                            self.label_neg[idx])

    def positive_matrix(self, dtype: torch.dtype) -> torch.Tensor:
        """The dense positive overlays ``x̂_pos`` ``(..., N, D)`` (``x0_dir`` with ``label_pos``
        in its first ``n_labels`` features), in ``dtype``; built once and kept."""
        if ("positive", dtype) not in self._cast:
            dense = self.x0_dir.clone()
            dense[..., : self.label_pos.shape[-1]] += self.label_pos
            self._cast[("positive", dtype)] = dense.to(dtype)
        return self._cast[("positive", dtype)]

    def label_shift(self) -> torch.Tensor:
        """``ℓ_neg − ℓ_pos`` ``(..., N, n_labels)``: negatives' overlay minus positives'."""
        if "shift" not in self._negatives:
            self._negatives["shift"] = self.label_neg - self.label_pos
        return self._negatives["shift"]

    def label_shift_t(self) -> torch.Tensor:
        """``(ℓ_neg − ℓ_pos)^T`` ``(..., n_labels, N)``, contiguous: times ``δ_neg`` ``(..., N, H)``
        it is the label-column correction of the first layer's weight gradient (a short, wide
        product: MKL runs the tall ``H × N`` by ``N × n_labels`` one several times slower)."""
        if "shift_t" not in self._negatives:
            self._negatives["shift_t"] = self.label_shift().transpose(-2, -1).contiguous()
        return self._negatives["shift_t"]

    def ones_row(self) -> torch.Tensor:
        """``(..., 1, N)`` ones: times ``δ_pos + δ_neg`` it is the bias gradient."""
        return _ones_row(self._cast, self.x0_dir, self.n)


@dataclass
class PlainInput:
    """Input of a later layer: ``x`` ``(2N, D)`` (or ``(S, 2N, D)``) unit-direction rows,
    positives first."""

    x: torch.Tensor
    _cast: dict = field(default_factory=dict, repr=False)

    @property
    def n(self) -> int:
        return self.x.shape[-2] // 2

    def rows(self, idx: torch.Tensor) -> "PlainInput":
        """The positive and negative rows of images ``idx`` (one run, no seed axis)."""
        return PlainInput(self.x[torch.cat([idx, idx + self.n])])

    def matrix(self, dtype: torch.dtype) -> torch.Tensor:
        if dtype == self.x.dtype:
            return self.x
        if dtype not in self._cast:
            self._cast[dtype] = self.x.to(dtype)
        return self._cast[dtype]

    def ones_row(self) -> torch.Tensor:
        """``(..., 1, 2N)`` ones: times ``δ`` it is the bias gradient (faster than a row sum)."""
        return _ones_row(self._cast, self.x, 2 * self.n)


def _ones_row(cache: dict, like: torch.Tensor, n: int) -> torch.Tensor:
    """``(..., 1, n)`` fp32 ones (the leading axes of ``like``), made once per input: the row
    sum of ``δ`` as this product takes about half the time of ``δ.sum(-2)`` (100k × 500 at one
    thread: 26–33 ms against 50–65 ms, benchmarks/README.md)."""
    if "ones" not in cache:
        cache["ones"] = torch.ones((*like.shape[:-2], 1, n), dtype=torch.float32,
                                   device=like.device)
    return cache["ones"]


def _dense_overlay(inp: OverlayInput) -> torch.Tensor:
    """The unit-direction overlays ``(..., 2N, D)`` an :class:`OverlayInput` stands for: the
    image part ``x0_dir`` with the scaled one-hot labels in its first ``n_labels`` features."""
    n_labels = inp.label_pos.shape[-1]
    pos, neg = inp.x0_dir.clone(), inp.x0_dir.clone()
    pos[..., :n_labels] += inp.label_pos
    neg[..., :n_labels] += inp.label_neg
    return torch.cat([pos, neg], dim=-2)


def _one_hot_scaled(labels: torch.Tensor, scale: torch.Tensor, n_labels: int) -> torch.Tensor:
    out = torch.zeros(labels.shape[0], n_labels, dtype=scale.dtype, device=scale.device)
    out.scatter_(1, labels[:, None], scale[:, None])
    return out


def init_linear(in_features: int, out_features: int, generator: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.nn.Linear``'s default init drawn from ``generator``: weight ``(out, in)`` with
    kaiming-uniform(a=√5), i.e. U(±1/√in), and bias ``(out,)`` from U(±1/√in)."""
    weight = torch.empty(out_features, in_features)
    torch.nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
    bound = 1.0 / math.sqrt(in_features)
    bias = torch.empty(out_features).uniform_(-bound, bound, generator=generator)
    return weight, bias


class FFLayer:
    """``h = relu(W · unit_direction(x) + b)`` trained by its own Adam on its local loss.

    Parameters are leaf tensors ``weight`` ``(H, D)`` and ``bias`` ``(H,)`` — or ``(S, H, D)``
    and ``(S, H)`` for S seed-stacked runs (:meth:`from_parameters`; one Adam over the stack is
    S Adams, it is elementwise); gradients are written by :meth:`apply_goodness_gradient`, never
    by autograd through the layer. ``goodness`` is the layer's
    :class:`~cffbench.ff.goodness.GoodnessFunction`.
    """

    def __init__(self, in_features: int, out_features: int, generator: torch.Generator,
                 lr: float, device: torch.device, precision: str = "fp32",
                 goodness: GoodnessFunction = MEAN_SQUARES) -> None:
        weight, bias = init_linear(in_features, out_features, generator)
        self._setup(weight, bias, lr, device, precision, goodness)

    @classmethod
    def from_parameters(cls, weight: torch.Tensor, bias: torch.Tensor, lr: float,
                        device: torch.device, precision: str = "fp32",
                        goodness: GoodnessFunction = MEAN_SQUARES) -> "FFLayer":
        """A layer with these initial ``weight`` ``(..., H, D)`` and ``bias`` ``(..., H)``."""
        layer = cls.__new__(cls)
        layer._setup(weight, bias, lr, device, precision, goodness)
        return layer

    def _setup(self, weight: torch.Tensor, bias: torch.Tensor, lr: float, device: torch.device,
               precision: str, goodness: GoodnessFunction) -> None:
        self.weight = weight.to(device).requires_grad_()
        self.bias = bias.to(device).requires_grad_()
        self.optimizer = torch.optim.Adam([self.weight, self.bias], lr=lr)
        self.matmul_dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        self.goodness_fn = goodness
        self._buffers: dict[tuple, torch.Tensor] = {}

    @property
    def width(self) -> int:
        return self.weight.shape[-2]

    def buffer(self, name: str, shape: tuple[int, ...], dtype: torch.dtype = torch.float32
               ) -> torch.Tensor:
        """A scratch tensor reused across epochs (one per name, shape and dtype)."""
        key = (name, tuple(shape), dtype)
        if key not in self._buffers:
            self._buffers[key] = torch.empty(shape, dtype=dtype, device=self.weight.device)
        return self._buffers[key]

    def release_buffers(self) -> None:
        self._buffers.clear()

    def _matmul(self, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``out = a @ b`` in fp32, or with bf16 operands (bf16 result, copied to fp32)."""
        if self.matmul_dtype == torch.float32:
            return batched_mm(a, b, out=out)
        low = self.buffer("matmul_bf16", tuple(out.shape), self.matmul_dtype)
        batched_mm(self._low(a), b.to(self.matmul_dtype), out=low)
        return out.copy_(low)

    def _low(self, rows: torch.Tensor) -> torch.Tensor:
        """A large operand in the matmul dtype: itself, as it is, when already in it (e.g. the
        transposed bf16 δ), else a contiguous copy in a reused buffer (a fresh 2N × H tensor per
        epoch costs page faults on its first touch). The small weight operand is cast with
        ``.to``, keeping its layout."""
        if rows.dtype == self.matmul_dtype:
            return rows
        return self.buffer("matmul_rows", tuple(rows.shape), self.matmul_dtype).copy_(rows)

    def _pre_activations(self, a: torch.Tensor, weight_t: torch.Tensor, out: torch.Tensor
                         ) -> torch.Tensor:
        """``a @ weight_t + b``, to be finished per row block by :meth:`_rows_with_bias`: in fp32
        straight into ``out`` (one ``addmm``); in bf16 the bf16 product without the bias, which
        :meth:`_rows_with_bias` adds, so that the fp32 copy and the bias are one pass over a
        block in cache instead of two passes over all rows."""
        if self.matmul_dtype == torch.float32:
            batched_addmm(self._bias_rows(a), a, weight_t, out=out)
            return out
        low = self.buffer("matmul_bf16", tuple(out.shape), self.matmul_dtype)
        return batched_mm(self._low(a), weight_t.to(self.matmul_dtype), out=low)

    def _rows_with_bias(self, product: torch.Tensor, out: torch.Tensor, rows: slice
                        ) -> torch.Tensor:
        """Rows ``rows`` of ``out`` (returned) = those of :meth:`_pre_activations`' ``product``,
        plus the bias in fp32 where it is still missing (bf16)."""
        block = out[..., rows, :]
        if self.matmul_dtype == torch.float32:     # addmm added it
            return block
        return torch.add(product[..., rows, :], self._bias_rows(product), out=block)

    def _bias_rows(self, like: torch.Tensor) -> torch.Tensor:
        """The bias, broadcastable over the rows of ``like``: ``(S, H)`` → ``(S, 1, H)`` when
        stacked (one bias row per seed)."""
        return self.bias.unsqueeze(-2) if like.dim() == 3 else self.bias

    @torch.no_grad()
    def activations(self, inp: OverlayInput | PlainInput, name: str = "h",
                    direction_name: str | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``h = relu(W x̂ + b)`` ``(..., 2N, H)`` (positives first), its row norm ``‖h‖₂``
        ``(..., 2N)`` and, with ``direction_name``, the next layer's input ``h / (‖h‖ + ε)``
        (else None), each in a reused buffer. After the product, one pass over row blocks
        (:data:`ROW_BLOCK`) does the rest while a block is in cache."""
        n, width = inp.n, self.width
        lead = self.weight.shape[:-2]
        h = self.buffer(name, (*lead, 2 * n, width))
        norm = self.buffer(name + ":norm", (*lead, 2 * n))
        direction = None if direction_name is None else self.buffer(direction_name, tuple(h.shape))
        weight_t = self.weight.transpose(-2, -1)
        if isinstance(inp, OverlayInput):
            # the positives' x̂_pos W^T + b, then the negatives' = that + (ℓ_neg − ℓ_pos) W_ℓ^T
            pos = self._pre_activations(inp.positive_matrix(self.matmul_dtype), weight_t,
                                        h[..., :n, :])
            label_w, shift = weight_t[..., : inp.label_pos.shape[-1], :], inp.label_shift()
            for rows in row_blocks(n):
                neg_rows = slice(rows.start + n, rows.stop + n)
                batched_addmm(self._rows_with_bias(pos, h[..., :n, :], rows), shift[..., rows, :],
                              label_w, out=h[..., neg_rows, :])
                relu_norm_rows_(h, norm, direction, rows)
                relu_norm_rows_(h, norm, direction, neg_rows)
        else:
            pre = self._pre_activations(inp.matrix(self.matmul_dtype), weight_t, h)
            for rows in row_blocks(2 * n):
                self._rows_with_bias(pre, h, rows)
                relu_norm_rows_(h, norm, direction, rows)
        return h, norm, direction

    def forward(self, inp: OverlayInput | PlainInput, name: str = "h") -> torch.Tensor:
        """Activations ``(..., 2N, H)`` (positives first) into a reused buffer."""
        return self.activations(inp, name)[0]

    @torch.no_grad()
    def forward_rows(self, x_dir: torch.Tensor, name: str = "fwd", direction_name: str | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Forward-only ``(h, ‖h‖₂, h / (‖h‖ + ε) or None)`` for unit-direction rows ``x_dir``
        ``(..., M, D)``, as :meth:`activations`."""
        h = self.buffer(name, (*x_dir.shape[:-1], self.width))
        norm = self.buffer(name + ":norm", tuple(h.shape[:-1]))
        direction = None if direction_name is None else self.buffer(direction_name, tuple(h.shape))
        pre = self._pre_activations(x_dir, self.weight.transpose(-2, -1), h)
        for rows in row_blocks(h.shape[-2]):
            self._rows_with_bias(pre, h, rows)
            relu_norm_rows_(h, norm, direction, rows)
        return h, norm, direction

    def goodness(self, h: torch.Tensor, norm: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(G, ‖h‖₂)``, both ``(..., M)``, of activations ``h`` ``(..., M, H)`` (``norm``: their
        row norm when already known)."""
        if norm is None:
            norm = torch.linalg.vector_norm(h, dim=-1)
        return self.goodness_fn.fast(h, norm), norm

    def goodness_and_direction(self, inp: OverlayInput | PlainInput, name: str = "dir"
                               ) -> tuple[torch.Tensor, torch.Tensor]:
        """``G`` ``(..., 2N)`` of ``inp`` and the next layer's input ``h / (‖h‖ + ε)`` (a buffer)."""
        h, norm, direction = self.activations(inp, direction_name=name)
        return self.goodness(h, norm)[0], direction

    @torch.no_grad()
    def apply_goodness_gradient(self, inp: OverlayInput | PlainInput, h: torch.Tensor,
                                grad_goodness: torch.Tensor) -> None:
        """Set ``weight.grad`` / ``bias.grad`` from ``∂L/∂G`` ``(..., 2N)``; overwrites ``h``.

        ``δ = ∂L/∂pre`` from the goodness function (``∂L/∂G · 2h/H`` for the mean of squares),
        ``∂L/∂W = δ^T x_dir``, ``∂L/∂b = Σ_rows δ``; per seed when stacked. A goodness without a
        manual gradient takes :meth:`autograd_goodness_gradient` instead.
        """
        if not self.goodness_fn.has_manual_gradient:
            self.autograd_goodness_gradient(inp, grad_goodness)
            return
        n = inp.n
        grad_w = self.buffer("grad_w", tuple(self.weight.shape))
        if isinstance(inp, OverlayInput):
            # ∂L/∂W = δ_pos^T x̂_pos + δ_neg^T x̂_neg = (δ_pos + δ_neg)^T x̂_pos + (the label
            # columns only) δ_neg^T (ℓ_neg − ℓ_pos); ∂L/∂b = Σ_rows (δ_pos + δ_neg). δ and the
            # sum per row block, while the block is in cache (a sample's ∂L/∂pre is its own row's)
            n_labels = inp.label_pos.shape[-1]
            delta = h
            delta_neg = delta[..., n:, :]
            delta_sum = delta[..., :n, :]                    # δ_pos + δ_neg; δ_neg stays
            low = self._low_buffer(delta_sum)
            for rows in row_blocks(n):
                neg_rows = slice(rows.start + n, rows.stop + n)
                delta_pos = self._pre_activation_gradient_(h, grad_goodness, rows)
                delta_pos.add_(self._pre_activation_gradient_(h, grad_goodness, neg_rows))
                if low is not delta_sum:
                    low[..., rows, :].copy_(delta_pos)
            self._matmul(low.transpose(-2, -1), inp.positive_matrix(self.matmul_dtype), grad_w)
            correction = batched_mm(inp.label_shift_t(), delta_neg)     # (..., n_labels, H)
            grad_w[..., :n_labels] += correction.transpose(-2, -1)
            grad_b = batched_mm(inp.ones_row(), delta_sum)[..., 0, :]
        else:
            delta = h
            low = self._low_buffer(delta)
            if low is delta:                   # fp32: one pass
                self._pre_activation_gradient_(h, grad_goodness, slice(None))
            else:                              # bf16: each block's copy while it is in cache
                for rows in row_blocks(2 * n):
                    low[..., rows, :].copy_(self._pre_activation_gradient_(h, grad_goodness, rows))
            grad_b = batched_mm(inp.ones_row(), delta)[..., 0, :]
            self._matmul(low.transpose(-2, -1), inp.matrix(self.matmul_dtype), grad_w)
        self.weight.grad = grad_w
        self.bias.grad = grad_b.contiguous()

    def autograd_goodness_gradient(self, inp: OverlayInput | PlainInput,
                                   grad_goodness: torch.Tensor) -> None:
        """The plain path: ``weight.grad`` / ``bias.grad`` by torch autograd through
        ``G = g(relu(x̂ Wᵀ + b))`` with the dense input ``x̂`` ``(..., 2N, D)`` (positives first),
        i.e. ``∂L/∂W = Σ_rows ∂L/∂G · ∂G/∂W``; fp32 matmuls, per seed when stacked."""
        x = inp.x if isinstance(inp, PlainInput) else _dense_overlay(inp)
        with torch.enable_grad():
            weight = self.weight.detach().requires_grad_()
            bias = self.bias.detach().requires_grad_()
            pre = torch.matmul(x, weight.transpose(-2, -1)) + bias.unsqueeze(-2)
            own = self.goodness_fn(torch.relu(pre))
            grad_w, grad_b = torch.autograd.grad(own, (weight, bias), grad_goodness)
        self.weight.grad, self.bias.grad = grad_w, grad_b

    def _pre_activation_gradient_(self, h: torch.Tensor, grad_goodness: torch.Tensor,
                                  rows: slice) -> torch.Tensor:
        """``δ = ∂L/∂pre`` of the rows ``rows`` from the goodness function, written into
        ``h[..., rows, :]`` (returned)."""
        block = h[..., rows, :]
        delta = self.goodness_fn.pre_activation_gradient_(block, grad_goodness[..., rows])
        return delta if delta is block else block.copy_(delta)

    def _low_buffer(self, delta: torch.Tensor) -> torch.Tensor:
        """Where δ goes for the weight-gradient product: ``delta`` itself in fp32, else a reused
        bf16 buffer of its shape, which the row-block loop fills while each block is in cache."""
        if self.matmul_dtype == delta.dtype:
            return delta
        return self.buffer("delta_low", tuple(delta.shape), self.matmul_dtype)

    def step(self) -> None:
        optimizer_step(self.optimizer)
