"""Average ranks and Wilcoxon–Holm cliques of many configurations: the critical-difference diagram.

Demšar (2006, JMLR 7:1) ranks k configurations within each block (here a dataset × seed: the
runs that share initial weights, data subset and negatives) and plots their average ranks; the
bars join configurations that are not significantly different. Following the current convention
(Benavoli et al. 2016, JMLR 17:5; Ismail Fawaz et al. 2019) the bars come from pairwise Wilcoxon
signed-rank tests over the blocks with Holm's correction, not from the Nemenyi critical
difference. This is an exploratory summary beside the analysis plan, never a decision of it.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy import stats as sps

from cffbench.errors import StatsError
from cffbench.stats import paired as P


def average_ranks(wide: pd.DataFrame) -> pd.Series:
    """Average rank of each column over the rows of ``wide`` (blocks x configurations), rank 1 the
    highest value, ties sharing the mean rank; sorted best first."""
    if wide.shape[0] < 1 or wide.shape[1] < 2:
        raise StatsError("ranking needs at least one block and two configurations")
    ranks = np.vstack([sps.rankdata(-row) for row in wide.to_numpy(dtype=float)])
    return pd.Series(ranks.mean(axis=0), index=wide.columns, name="avg_rank").sort_values(kind="stable")


def wilcoxon_holm(wide: pd.DataFrame) -> pd.DataFrame:
    """Every pair of columns: two-sided Wilcoxon signed-rank p over the blocks (zeros dropped; exact
    without ties, else the normal approximation: :func:`cffbench.stats.paired.wilcoxon_test`) and
    Holm over all k(k − 1)/2 pairs. Columns ``a, b, p, p_adj, exact``."""
    rows = []
    for a, b in itertools.combinations(wide.columns, 2):
        res = P.wilcoxon_test(wide[b].to_numpy(dtype=float) - wide[a].to_numpy(dtype=float))
        rows.append({"a": a, "b": b, "p": res.p, "exact": res.exact})
    out = pd.DataFrame(rows, columns=["a", "b", "p", "exact"])
    out.insert(3, "p_adj", P.adjust(out["p"].to_numpy(dtype=float), "holm"))
    return out


def cliques(order: list[str], pairs: pd.DataFrame, alpha: float = 0.05) -> list[list[str]]:
    """Maximal runs of consecutive configurations (in rank ``order``) with no significant pair
    among them (p_adj >= alpha or undefined), each of at least two; runs inside another dropped."""
    significant = set()
    for r in pairs.itertuples(index=False):
        if np.isfinite(r.p_adj) and r.p_adj < alpha:
            significant |= {(r.a, r.b), (r.b, r.a)}
    spans = []
    for i in range(len(order)):
        j = i
        while j + 1 < len(order) and all((order[m], order[j + 1]) not in significant for m in range(i, j + 1)):
            j += 1
        if j > i:
            spans.append((i, j))
    maximal = [s for s in spans if not any(o != s and o[0] <= s[0] and s[1] <= o[1] for o in spans)]
    return [order[i:j + 1] for i, j in maximal]
