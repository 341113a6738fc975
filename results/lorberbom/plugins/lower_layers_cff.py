"""Collaboration with the layers below only: layer l's logit is ``G^l + Σ_{k<l} G^k − θ``, the other
layers' goodness detached (stop-gradient), one threshold on the sum.

This is cffbench's reading of the ``γ_{<t}`` variant of Lorberbom, Gat, Adi, Schwing & Hazan,
"Layer Collaboration in the Forward-Forward Algorithm" (AAAI 2024, arXiv 2305.12393): each layer
adds the (fixed-network) goodness of the layers before it, with weight 1, to its own before the
one threshold. It is not a port of their code (we found none published); we read their equations
from a secondary transcription, so check them against the paper before citing this file for them.

Their full variant, ``γ`` = every other layer's goodness, needs no plugin: it is the built-in
``f-cff`` with ``theta_placement = "single"``, ``alpha = "ones"``, ``gamma = 1`` (their paper
trains it with every layer updated in turn, cffbench's ``schedule = "alternating"``).
``studies/lorberbom.toml`` runs both against FF. Two differences from the paper stay ours, not
theirs: goodness is cffbench's mean of squares with θ = 2 (they write the squared norm, a sum,
and we could not read their θ), and the protocol is cffbench's small CPU one.

The layers above l are still run forward by the engine (``reads_other_layers`` asks for all of
them); this rule reads only the ones below, so it pays for goodness it ignores.
"""

__version__ = "1.0"

from cffbench.extensions import VARIANTS
from cffbench.ff.collaboration import LogitRule
from cffbench.ff.variants import Variant


class LowerLayers(LogitRule):
    """``logit_l = G^l + Σ_{k<l} G^k − θ``; nothing learned."""

    reads_other_layers = True

    def __init__(self, config, seed_shape=()):
        super().__init__(config.n_layers, seed_shape)
        self.threshold = config.threshold

    def logits(self, layer, own, others):   # own (..., M); others (..., L, M), detached
        return own + others[..., :layer, :].sum(dim=-2) - self.threshold


@VARIANTS.register
class LowerLayersCFF(Variant):
    name = "cff-lower"

    def logit_rule(self, config, device, seed_shape=()):
        return LowerLayers(config, seed_shape)
