"""Average ranks and Wilcoxon–Holm cliques (the critical-difference diagram), pinned to scipy's
Friedman statistic, scipy's exact Wilcoxon, statsmodels' Holm and a hand-built example."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from cffbench.stats import ranks as R


def _wide(seed=0, n=12, gains=(0.0, 0.002, 0.01, 0.03)):
    rng = np.random.default_rng(seed)
    base = rng.normal(0.8, 0.02, size=(n, 1))
    return pd.DataFrame(base + np.array(gains) + rng.normal(0, 0.004, size=(n, len(gains))),
                        columns=["a", "b", "c", "d"])


def test_average_ranks_give_scipys_friedman_statistic():
    wide = _wide()
    avg = R.average_ranks(wide)
    n, k = wide.shape
    # Friedman chi-square from the average ranks (no ties): 12 n / (k (k + 1)) sum (R_j - (k + 1) / 2)^2
    chi2 = 12 * n / (k * (k + 1)) * float(np.sum((avg.to_numpy() - (k + 1) / 2) ** 2))
    ref = sps.friedmanchisquare(*[wide[c] for c in wide.columns]).statistic
    assert chi2 == pytest.approx(ref, rel=1e-12)
    assert list(avg.index) == ["d", "c", "b", "a"]      # rank 1 = the highest accuracy


def test_pairs_are_exact_wilcoxon_with_holm_over_all_pairs():
    wide = _wide()
    pairs = R.wilcoxon_holm(wide)
    assert len(pairs) == 6 and pairs["exact"].all()
    for r in pairs.itertuples():
        assert r.p == pytest.approx(sps.wilcoxon(wide[r.b], wide[r.a], method="exact").pvalue, rel=1e-12)
    assert pairs["p_adj"].to_numpy() == pytest.approx(multipletests(pairs["p"], method="holm")[1], rel=1e-12)


def test_cliques_are_maximal_runs_without_a_significant_pair():
    order = ["a", "b", "c", "d"]
    pairs = pd.DataFrame([("a", "b", 0.5), ("a", "c", 0.01), ("a", "d", 0.01), ("b", "c", 0.5),
                          ("b", "d", 0.01), ("c", "d", 0.5)], columns=["a", "b", "p_adj"])
    # b-d is significant, so b, c, d is not one group: [a, b], [b, c], [c, d]
    assert R.cliques(order, pairs) == [["a", "b"], ["b", "c"], ["c", "d"]]
    none_significant = pairs.assign(p_adj=0.9)
    assert R.cliques(order, none_significant) == [order]


def test_pairs_with_ties_on_the_committed_store_match_r():
    # F-CFF vs A-CFF (theta single) over the 20 dataset x seed blocks of the committed replication
    # store, in test images: R 4.2.2
    #   wilcox.test(c(0, 13, 185, -61, 0, 4, 1, -3, 15, 0, 5, 10, -180, -13, 22, -7, -52, -106, -10, -30))
    # V = 61, p-value = 0.477536356531021 (zeros dropped, ties: normal approximation)
    from pathlib import Path

    runs = pd.read_parquet(Path(__file__).resolve().parents[1] / "results" / "replication_cpu" / "runs")
    single = runs[(runs["status"] == "ok") & (runs["theta_placement"] == "single")]
    wide = single.pivot_table(index=["dataset", "seed"], columns="variant", values="test_acc")
    assert np.round((wide["a-cff"] - wide["f-cff"]).to_numpy() * 10000).tolist() == [
        0, 13, 185, -61, 0, 4, 1, -3, 15, 0, 5, 10, -180, -13, 22, -7, -52, -106, -10, -30]
    pairs = R.wilcoxon_holm(wide[["f-cff", "a-cff"]])
    assert not pairs["exact"].iloc[0]
    assert pairs["p"].iloc[0] == pytest.approx(0.477536356531021, rel=1e-9)
