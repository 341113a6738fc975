"""The training configuration of one run and the per-purpose random streams derived from its seed."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pydantic
import torch

from cffbench.errors import TrainConfigError
from cffbench.ff.alpha import normalised_structures_coincide

#: Fields that only matter for the collaborative variants.
_CFF_FIELDS = ("gamma", "gamma_lr", "gamma_optimizer", "alpha", "alpha_decay", "theta_placement")
#: Fields that only matter for the FF family (label overlay, negatives, threshold, layer schedule).
_FF_FAMILY_FIELDS = ("threshold", "schedule", "negatives")


class TrainConfig(pydantic.BaseModel, frozen=True, extra="forbid"):
    """Everything that determines one training run (see docs/architecture.md).

    ``variant``: ``ff`` (Hinton 2022 reference protocol), ``f-cff`` (collaborative goodness with a
    fixed γ), ``a-cff`` (learned γ_l per layer), ``bp`` (the same MLP trained end-to-end by
    backprop with a linear head). ``epochs_per_layer`` E: sequential schedule trains each layer E
    full-batch epochs; ``bp`` gets E × n_layers epochs. Invalid values raise
    :class:`~cffbench.errors.TrainConfigError` from the constructor (one line naming the field).
    """

    variant: Literal["ff", "f-cff", "a-cff", "bp"] = "ff"
    hidden: tuple[int, ...] = (500, 500)
    epochs_per_layer: int = 1000
    lr: float = 0.03
    threshold: float = 2.0
    batch_size: int = 0
    schedule: Literal["sequential", "alternating"] = "sequential"
    negatives: Literal["fixed", "redraw", "permutation"] = "fixed"
    gamma: float = 1.0
    gamma_lr: float = 0.01
    gamma_optimizer: Literal["sgd", "adam"] = "sgd"
    alpha: Literal["uniform", "distance", "learned", "ones"] = "uniform"
    alpha_decay: float = 0.5
    theta_placement: Literal["per_term", "single"] = "per_term"
    precision: Literal["fp32", "bf16"] = "fp32"
    train_eval_size: int = 10000
    seed: int = 0

    def __init__(self, **data):
        try:
            super().__init__(**data)
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}"
                f" (got {err.get('input')!r})" for err in exc.errors())
            raise TrainConfigError(f"invalid training configuration: {problems}") from None

    @pydantic.model_validator(mode="after")
    def _check_ranges(self) -> "TrainConfig":
        if self.epochs_per_layer < 1:
            raise ValueError("epochs_per_layer must be >= 1")
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError("hidden must list at least one positive layer width, e.g. [500, 500]")
        if self.batch_size < 0:
            raise ValueError("batch_size must be >= 0 (0 = full batch)")
        if self.train_eval_size < 1:
            raise ValueError("train_eval_size must be >= 1")
        numbers = (self.lr, self.gamma_lr, self.gamma, self.threshold, self.alpha_decay)
        if not all(np.isfinite(numbers)):
            raise ValueError("lr, gamma_lr, gamma, threshold and alpha_decay must be finite")
        if self.lr <= 0 or self.gamma_lr < 0:
            raise ValueError("lr must be > 0 and gamma_lr >= 0")
        if not 0 < self.alpha_decay:
            raise ValueError("alpha_decay must be > 0")
        return self

    @property
    def n_layers(self) -> int:
        return len(self.hidden)

    @property
    def is_collaborative(self) -> bool:
        return self.variant in ("f-cff", "a-cff")

    def effective(self) -> dict:
        """Only the fields that affect this variant's result (used to deduplicate study grids).

        ``ff`` drops every γ/α/θ-placement field; ``bp`` additionally drops ``threshold``,
        ``schedule``, ``negatives`` and ``precision``; with two hidden layers every α structure
        coincides, so CFF's ``alpha`` is reported as ``"uniform"``; ``f-cff`` drops ``gamma_lr`` / ``gamma_optimizer`` unless
        α is learned; both CFF variants drop ``alpha_decay`` unless α is ``distance``.
        """
        fields = self.model_dump()
        fields["hidden"] = list(self.hidden)
        if self.is_collaborative and normalised_structures_coincide(self.n_layers):
            # Two layers: every alpha structure is [[0, 1], [1, 0]] (a learned row is the softmax
            # of one logit), so the runs are identical; one canonical name makes them one run.
            fields["alpha"] = "uniform"
        drop: set[str] = set()
        if not self.is_collaborative:
            drop.update(_CFF_FIELDS)
        if self.variant == "bp":
            drop.update(_FF_FAMILY_FIELDS)
            drop.add("precision")   # the backprop reference always trains in fp32
        if self.variant == "f-cff" and fields.get("alpha") != "learned":
            drop.update(("gamma_lr", "gamma_optimizer"))
        if fields.get("alpha") != "distance":
            drop.add("alpha_decay")
        return {k: v for k, v in fields.items() if k not in drop}


def run_generators(seed: int) -> dict[str, torch.Generator]:
    """Independent CPU generators per purpose, derived from one run seed.

    Purposes: ``init`` (layer weights), ``negatives`` (wrong labels), ``batches`` (minibatch
    order), ``train_eval`` (the fixed train-accuracy subset). Deriving them with
    :class:`numpy.random.SeedSequence` means that one purpose drawing more numbers (e.g. a variant
    that redraws negatives) never shifts another purpose's stream, so variants with one seed pair.
    """
    purposes = ("init", "negatives", "batches", "train_eval")
    children = np.random.SeedSequence(int(seed)).spawn(len(purposes))
    return {name: torch.Generator().manual_seed(int(child.generate_state(1, np.uint64)[0] >> 1))
            for name, child in zip(purposes, children)}
