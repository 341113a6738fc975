"""Which run-row columns are analysis factors: computed from ``TrainConfig``, never listed by hand.

Every ``TrainConfig`` field whose :class:`~cffbench.ff.config.Setting` has a ``factor`` tier is a
factor (``seed`` has none: it is the pairing unit), and so is the data's ``n_train`` (a
``[data]`` setting, tier :data:`~cffbench.ff.config.FACTOR_TIER_DATA_SCALE`). Factors sort by tier,
then by ``TrainConfig``'s declaration order:

- tier 0, the treatment: ``variant``;
- tiers 1-3, the ablations in the order the analyses cross them: ``alpha``, ``theta_placement``,
  ``schedule``;
- tier 4, the network's scale (``hidden``, ``epochs_per_layer``), then tier 5, the data's
  (``n_train``);
- tier 6, every other setting.

The order is what the analyses see (the first varying factor leads a two-way crossing) and what
the saved analysis' run fingerprint is taken over, so it is part of the stored evidence.
"""

from __future__ import annotations

import pandas as pd

from cffbench.ff.config import FACTOR_TIER_DATA_SCALE, TrainConfig, settings


def _factor_columns() -> tuple[str, ...]:
    tiers = {name: s.factor for name, s in settings().items() if s.factor is not None}
    tiers["n_train"] = FACTOR_TIER_DATA_SCALE   # after the training fields of lower tiers
    order = {name: i for i, name in enumerate(tiers)}
    return tuple(sorted(tiers, key=lambda name: (tiers[name], order[name])))


#: Run-row columns that are candidate factors of an analysis (those that vary are used).
FACTOR_COLUMNS: tuple[str, ...] = _factor_columns()
#: The factors a study may vary besides ``variant`` (its grid axes, and ``n_train``).
AXIS_COLUMNS: tuple[str, ...] = tuple(c for c in FACTOR_COLUMNS if c != "variant")


def fingerprint_axes(frame: pd.DataFrame) -> list[str]:
    """The :data:`AXIS_COLUMNS` of ``frame`` a fingerprint of its runs or conditions is taken
    over: without a setting added later (``identity_omits_default``, e.g. ``goodness``) that every
    row holds at its default (or lacks), as run ids leave it out, so fingerprints saved before it
    existed still match."""
    def added_at_default(column: str) -> bool:
        setting = settings().get(column)
        return (setting is not None and setting.identity_omits_default
                and set(frame[column].dropna()) <= {TrainConfig.model_fields[column].default})

    return [c for c in AXIS_COLUMNS if c in frame.columns and not added_at_default(c)]
