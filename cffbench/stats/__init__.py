"""Statistics engine: long-format DataFrames in, tidy DataFrames (and a decision trail) out.

Public API: :func:`describe`, :func:`rm_anova`, :func:`anova`, :func:`welch_anova`,
:func:`friedman`, :func:`pairwise`, :func:`tukey`, :func:`seeds_needed`, :func:`compare` (returns a
:class:`Comparison`), and :mod:`cffbench.stats.paired` (one paired contrast decided by one
pre-specified test). Nothing here reads the run store: :mod:`cffbench.analysis` does, above it.
"""

from cffbench.stats.anova import anova, rm_anova, welch_anova
from cffbench.stats.compare import Comparison, Decision, PowerLine, compare
from cffbench.stats.descriptives import describe
from cffbench.stats.inputs import complete_blocks
from cffbench.stats.nonparametric import friedman, kruskal
from cffbench.stats.pairwise import pairwise, tukey
from cffbench.stats.power import detectable_difference, seeds_needed

__all__ = ["Comparison", "Decision", "PowerLine", "anova", "compare",
           "complete_blocks", "describe", "detectable_difference", "friedman", "kruskal", "pairwise", "rm_anova", "seeds_needed",
           "tukey", "welch_anova"]
