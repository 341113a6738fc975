"""The training variants as objects the engine calls: ``ff``, ``f-cff``, ``a-cff`` and ``bp``.

A :class:`Variant` says how its runs are trained. A layer-local (FF-family) variant builds, per
run, the :class:`~cffbench.ff.collaboration.LogitRule` that forms each layer's logit from its own
and (if it reads them) the other layers' goodness and that owns the extra parameters the variant
learns and their optimisers; the engines (:mod:`cffbench.ff.train`, :mod:`cffbench.ff.stacked`)
only call it. ``bp`` is trained end to end by :mod:`cffbench.ff.backprop` instead.

The engine looks variants up in :data:`VARIANTS` (the registry of :mod:`cffbench.extensions`) by ``TrainConfig.variant``; it does not branch
on their names.
"""

from __future__ import annotations

import torch

from cffbench import extensions
from cffbench.errors import ExtensionError
from cffbench.ff.alpha import normalised_structures_coincide
from cffbench.ff.collaboration import Collaboration, LogitRule, PlainLogits, SeedShape
from cffbench.ff.config import TrainConfig


class Variant:
    """One training method. ``name`` is its ``TrainConfig.variant``; ``end_to_end`` variants are
    trained by backprop through the whole network, the others layer by layer by the FF engine
    through :meth:`logit_rule`."""

    name: str
    end_to_end: bool = False
    #: The ``TrainConfig`` settings a plugin's logit rule is built for when the plugin is loaded
    #: and checked (:func:`cffbench.plugins.probe_variant`); a variant that needs, say, three
    #: layers sets ``{"hidden": (4, 4, 4)}``.
    probe_settings: dict = {"hidden": (4, 4)}

    def logit_rule(self, config: TrainConfig, device: torch.device,
                   seed_shape: SeedShape = ()) -> LogitRule:
        """The per-run logit rule and learned parameters (``seed_shape`` ``(S,)`` for S
        seed-stacked runs)."""
        raise NotImplementedError(f"variant {self.name} is not trained layer by layer")

    def notes(self, config: TrainConfig) -> list[str]:
        """Notes every run of ``config`` carries (things a reader of its result should know)."""
        return []


class PlainFF(Variant):
    """``ff``: each layer's logit is ``G^l − θ`` (Hinton 2022)."""

    name = "ff"

    def logit_rule(self, config, device, seed_shape=()):
        return PlainLogits(config, seed_shape)


class CollaborativeFF(Variant):
    """``f-cff`` (fixed γ) / ``a-cff`` (γ_l learned per layer): the collaborative logit
    ``G^l + γ_l Σ_{k≠l} α_lk G^k`` (θ per :data:`~cffbench.ff.config.TrainConfig.theta_placement`),
    α fixed or learned (:class:`~cffbench.ff.collaboration.Collaboration`)."""

    def __init__(self, name: str, learn_gamma: bool) -> None:
        self.name, self.learn_gamma = name, learn_gamma

    def logit_rule(self, config, device, seed_shape=()):
        return Collaboration(config, device, self.learn_gamma, seed_shape)

    def notes(self, config):
        notes = []
        if normalised_structures_coincide(config.n_layers):
            notes.append("with 2 hidden layers all normalised alpha structures coincide "
                         "(uniform = distance = learned = ones: alpha = [[0, 1], [1, 0]])")
        if self.learn_gamma and config.gamma == 0 and config.gamma_lr > 0:
            notes.append(f"{self.name} with gamma init 0: gamma receives gradient and moves away "
                         f"from 0")
        return notes


class Backprop(Variant):
    """``bp``: the same MLP with a linear head, trained end to end (:mod:`cffbench.ff.backprop`)."""

    name = "bp"
    end_to_end = True


for _variant in (PlainFF(), CollaborativeFF("f-cff", learn_gamma=False),
                 CollaborativeFF("a-cff", learn_gamma=True), Backprop()):
    extensions.VARIANTS.register(_variant, builtin=True)

#: Every registered variant by name: the four built-ins, then any a plugin registers
#: (:data:`cffbench.extensions.VARIANTS`).
VARIANTS = extensions.VARIANTS


def variant_of(config: TrainConfig) -> Variant:
    """The :class:`Variant` that trains ``config``."""
    return VARIANTS[config.variant]


def reads_other_layers(config: TrainConfig) -> bool:
    """Whether ``config``'s layer-local training runs the layers above each trained layer forward
    (its logit rule reads the other layers' goodness): what time and memory estimates count.
    False for end-to-end variants. Asked of the variant's own rule, so a plugin is counted right."""
    variant = variant_of(config)
    if variant.end_to_end:
        return False
    try:
        return bool(variant.logit_rule(config, torch.device("cpu")).reads_other_layers)
    except Exception as exc:   # a plugin's rule refusing this configuration: a user's error
        raise ExtensionError(f"variant {variant.name!r}: logit_rule() fails for this "
                             f"configuration: {type(exc).__name__}: "
                             f"{' '.join(str(exc).split())}") from None
