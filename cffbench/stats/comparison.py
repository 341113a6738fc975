"""The result types of :func:`cffbench.stats.compare.compare`: the decision trail, the power line,
and the :class:`Comparison` the report renders (one result, several renderings)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import pandas as pd


class Decision(NamedTuple):
    """One step of the decision trail: what was decided, the choice made, and why."""

    step: str
    choice: str
    reason: str


@dataclass
class PowerLine:
    """Seeds needed to detect ``delta`` with ``power`` (two-sided t-test at ``alpha``: paired when
    the design is within-subjects, two-sample with equal n per condition when it is between).

    ``diff_sd`` is the observed SD of paired differences (root mean square over ``basis`` pairs;
    for unpaired designs sqrt(s_A^2 + s_B^2)); ``seeds_needed`` is NaN when undefined;
    ``n_seeds`` is the number of seeds (complete blocks) this study has; ``text`` is a sentence.
    """

    delta: float
    power: float
    alpha: float
    diff_sd: float
    seeds_needed: float
    n_seeds: int
    basis: str
    text: str


@dataclass
class Comparison:
    """Everything ``compare`` found, ready to render.

    Attributes
    ----------
    dv : the dependent variable analysed.
    factors : the design factors actually analysed (after dropping constant ones or combining
        an incomplete crossing into one ``condition`` factor).
    subject : the blocking column (``seed``) or None.
    design : ``"within"`` (paired by subject), ``"between"`` or ``"none"`` (one condition).
    path : the omnibus route taken: ``rm_anova``, ``friedman``, ``welch_anova``, ``anova``,
        ``kruskal`` or ``describe``.
    n_blocks : complete blocks used (within) or the smallest group size (between).
    decisions : ordered (step, choice, reason) records.
    tables : name -> DataFrame; names among ``descriptives``, ``assumptions``, ``rm_anova``,
        ``friedman``, ``anova``, ``welch_anova``, ``kruskal``, ``posthoc``, ``tukey``, ``power``.
    apa : APA-style sentences (omnibus first, then post-hoc pairs).
    warnings : things the reader must know (undefined tests, too few seeds, dropped data).
    power : the :class:`PowerLine`, or None when no difference can be formed.
    alpha : significance level used for every decision.
    scale, unit : how ``dv`` differences are rendered (accuracy: 100 and " pp").
    """

    dv: str
    factors: list[str]
    subject: str | None
    design: str
    path: str
    n_blocks: int
    decisions: list[Decision] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    apa: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    power: PowerLine | None = None
    alpha: float = 0.05
    scale: float = 1.0
    unit: str = ""

    def decide(self, step: str, choice: str, reason: str) -> None:
        """Append one record to the decision trail."""
        self.decisions.append(Decision(step, choice, reason))

    def decisions_frame(self) -> pd.DataFrame:
        """The decision trail as a DataFrame ``step, choice, reason``."""
        return pd.DataFrame(self.decisions, columns=list(Decision._fields))

    def to_text(self) -> str:
        """Plain-text rendering (decision trail, sentences, warnings, power, tables)."""
        from cffbench.stats.render import comparison_text

        return comparison_text(self)

    def to_html(self) -> str:
        """An HTML fragment (``<section>``) with the same content as :meth:`to_text`."""
        from cffbench.stats.render import comparison_html

        return comparison_html(self)

    def to_latex(self) -> str:
        """LaTeX source (itemised decisions and sentences, ``tabular`` tables)."""
        from cffbench.stats.render import comparison_latex

        return comparison_latex(self)


def is_reference(level: str, reference: str) -> bool:
    """``level`` is the reference condition (``"ff"``, or a combined label starting ``"ff /"``)."""
    return level == reference or level.startswith(f"{reference} /")
