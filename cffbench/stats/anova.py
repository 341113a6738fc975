"""ANOVA family: repeated measures (AnovaRM + sphericity), between-subjects (ols/anova_lm), Welch.

All functions take long-format data and return one row per effect. ``source`` names a factor
exactly as the caller named it; interactions are joined with ``:`` (``variant:alpha``).
A test whose statistic is undefined (zero error variance, too few observations) gets NaN
``F``/``p`` and a ``note`` saying why; it is never reported as p = 0.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps
from scipy.linalg import null_space
from statsmodels.formula.api import ols
from statsmodels.stats.anova import AnovaRM, anova_lm
from statsmodels.stats.oneway import anova_oneway

from cffbench.errors import StatsError
from cffbench.stats.assumptions import RELATIVE_ZERO, is_constant, sphericity
from cffbench.stats.inputs import as_factor_list, check_frame, level_labels, ordered_levels

RM_COLUMNS = ["source", "ddof1", "ddof2", "F", "p_unc", "np2", "eps", "p_gg", "eps_hf", "p_hf",
              "W_mauchly", "p_mauchly", "SS", "SS_error", "note"]


def huynh_feldt(eps_gg: float, n: int, p: int) -> float:
    """Huynh–Feldt epsilon from the Greenhouse–Geisser one, capped at 1:
    (n p eps - 2) / (p (n - 1 - p eps)) for n subjects and p numerator df (Huynh & Feldt 1976;
    R ``stats:::sphericity``, pingouin ``epsilon(correction="hf")``)."""
    if not np.isfinite(eps_gg) or n < 2:
        return np.nan
    den = p * (n - 1 - p * eps_gg)
    return 1.0 if den <= 0 else float(min(1.0, (n * p * eps_gg - 2) / den))
ANOVA_COLUMNS = ["source", "SS", "DF", "MS", "F", "p_unc", "np2", "omega2", "note"]


def _effect_contrasts(level_counts: Sequence[int], effect: Sequence[int]) -> np.ndarray:
    """Orthonormal contrasts (cells, p) of one effect over a full factorial in row-major order.

    A factor in the effect contributes its (k, k-1) orthonormal contrasts (null space of 1_k);
    a factor outside it contributes the normalised mean 1_k / sqrt(k).
    """
    matrix = np.ones((1, 1))
    for index, k in enumerate(level_counts):
        part = null_space(np.ones((1, k))) if index in effect else np.ones((k, 1)) / np.sqrt(k)
        matrix = np.kron(matrix, part)
    return matrix


def rm_anova(data: pd.DataFrame, dv: str, within: str | Sequence[str], subject: str) -> pd.DataFrame:
    """Repeated-measures ANOVA with one or two within-subject factors.

    F, df and p come from ``statsmodels.stats.anova.AnovaRM``. For each effect with orthonormal
    contrasts C (cells, p) and contrast scores Z = Y C (n, p):

    - SS = n ||mean(Z)||^2, SS_error = (n - 1) tr(cov Z), F = (SS / p) / (SS_error / ((n-1) p));
    - ``np2`` (partial eta squared) = SS / (SS + SS_error) = F ddof1 / (F ddof1 + ddof2);
    - ``eps`` = Greenhouse-Geisser epsilon, ``p_gg`` = p of F on (eps ddof1, eps ddof2);
    - ``eps_hf`` = Huynh-Feldt epsilon (:func:`huynh_feldt`), ``p_hf`` likewise;
    - ``W_mauchly``, ``p_mauchly``: Mauchly's sphericity test (see :func:`sphericity`).

    Parameters
    ----------
    data : long format, one row per subject x cell (every subject in every cell).
    dv, within, subject : column names; ``within`` is one name or a list of one or two names.

    Returns
    -------
    DataFrame with columns ``source, ddof1, ddof2, F, p_unc, np2, eps, p_gg, eps_hf, p_hf,
    W_mauchly, p_mauchly, SS, SS_error, note``; one row per main effect and interaction.

    Raises
    ------
    StatsError
        Missing column, a factor with one level, a duplicated subject x cell, or a subject missing
        from some cell (use :func:`~cffbench.stats.inputs.complete_blocks` or :func:`compare`).
    """
    factors = as_factor_list(within, "within")
    if not 1 <= len(factors) <= 2:
        raise StatsError(f"rm_anova takes one or two within factors, got {factors}")
    frame = check_frame(data, dv, [*factors, subject])
    for f in factors:
        frame[f] = level_labels(frame[f])
    levels = [ordered_levels(frame[f]) for f in factors]
    for f, lv in zip(factors, levels):
        if len(lv) < 2:
            raise StatsError(f"within factor {f!r} has one level ({lv[0]!r}); it needs at least 2")
    if frame.duplicated([subject, *factors]).any():
        raise StatsError(f"some {subject!r} has more than one row in a cell of {factors}; "
                         f"average replicates first or add the varying column as a factor")
    cells = list(itertools.product(*levels))
    frame = frame.astype({f: str for f in factors})  # level order is kept in ``levels``
    wide = frame.pivot_table(index=subject, columns=factors, values=dv, aggfunc="first")
    wide = wide.reindex(columns=pd.MultiIndex.from_tuples(cells) if len(factors) > 1 else
                        pd.Index([c[0] for c in cells]))
    incomplete = wide.isna().any(axis=1)
    if incomplete.any():
        raise StatsError(
            f"{int(incomplete.sum())} of {len(wide)} {subject!r} values miss some cell of {factors}; "
            f"keep complete blocks (cffbench.stats.inputs.complete_blocks) or use compare()")
    y = wide.to_numpy(dtype=float)
    n = y.shape[0]
    scale = float(np.mean(np.abs(y))) or 1.0
    aov = None
    if n >= 2 and not is_constant(y.ravel()):
        aov = AnovaRM(frame, dv, subject, within=factors).fit().anova_table
    rows = []
    effects = [e for r in range(1, len(factors) + 1) for e in itertools.combinations(range(len(factors)), r)]
    for effect in effects:
        source = ":".join(factors[i] for i in effect)
        scores = y @ _effect_contrasts([len(lv) for lv in levels], effect)
        p = scores.shape[1]
        ss = n * float(np.sum(scores.mean(axis=0) ** 2))
        ss_err = (n - 1) * float(np.trace(np.atleast_2d(np.cov(scores, rowvar=False)))) if n > 1 else 0.0
        sph = sphericity(scores)
        row = dict(source=source, ddof1=float(p), ddof2=float((n - 1) * p), F=np.nan, p_unc=np.nan,
                   np2=np.nan, eps=sph["eps"], p_gg=np.nan,
                   eps_hf=huynh_feldt(sph["eps"], n, p) if p > 1 else sph["eps"], p_hf=np.nan,
                   W_mauchly=sph["W"],
                   p_mauchly=sph["p"], SS=ss, SS_error=ss_err, note="")
        tiny = RELATIVE_ZERO * scale**2 * n * p
        if n < 2:
            row["note"] = f"undefined: one {subject} gives no error term"
        elif ss_err <= tiny:
            row["note"] = ("undefined: no variance at all" if ss <= tiny else
                           f"undefined: zero error variance (the effect is identical for every {subject}, F would be infinite)")
        else:
            f_value = float(aov.loc[source, "F Value"])
            row.update(F=f_value, p_unc=float(aov.loc[source, "Pr > F"]),
                       np2=ss / (ss + ss_err))
            if np.isfinite(sph["eps"]):
                row["p_gg"] = float(sps.f.sf(f_value, sph["eps"] * p, sph["eps"] * (n - 1) * p))
            if np.isfinite(row["eps_hf"]):
                row["p_hf"] = float(sps.f.sf(f_value, row["eps_hf"] * p, row["eps_hf"] * (n - 1) * p))
        rows.append(row)
    return pd.DataFrame(rows, columns=RM_COLUMNS)


def anova(data: pd.DataFrame, dv: str, between: str | Sequence[str], typ: int = 2) -> pd.DataFrame:
    """Between-subjects ANOVA with all interactions (``ols`` + ``anova_lm``, sum-to-zero coding).

    Effect sizes, with SS_r / MS_r the residual sum of squares / mean square and SS_t the total:

    - ``np2`` = SS / (SS + SS_r) (partial eta squared);
    - ``omega2`` = (SS - DF MS_r) / (SS_t + MS_r) (omega squared, Olejnik & Algina 2003).

    Returns
    -------
    DataFrame ``source, SS, DF, MS, F, p_unc, np2, omega2, note``: one row per effect, then a
    ``Residual`` row. F and p are NaN (with a note) when the residual variance is zero or there are
    no residual degrees of freedom.

    Raises
    ------
    StatsError
        Missing column, a factor with one level, ``typ`` not in 1, 2, 3, or an empty cell in the
        crossing of two or more factors.
    """
    factors = as_factor_list(between, "between")
    if not factors:
        raise StatsError("anova needs at least one between factor")
    if typ not in (1, 2, 3):
        raise StatsError(f"typ must be 1, 2 or 3, got {typ!r}")
    frame = check_frame(data, dv, factors)
    safe = pd.DataFrame({"y": frame[dv].to_numpy(dtype=float)})
    for i, f in enumerate(factors):
        safe[f"f{i}"] = level_labels(frame[f]).to_numpy()
        if safe[f"f{i}"].nunique() < 2:
            raise StatsError(f"between factor {f!r} has one level; it needs at least 2")
    if len(factors) > 1:
        observed = safe.groupby([f"f{i}" for i in range(len(factors))]).size()
        expected = int(np.prod([safe[f"f{i}"].nunique() for i in range(len(factors))]))
        if len(observed) < expected:
            raise StatsError(f"the crossing of {factors} has {expected - len(observed)} empty cell(s); "
                             f"analyse the observed cells as one factor instead")
    n_cells = safe.groupby([f"f{i}" for i in range(len(factors))]).ngroups
    if len(safe) - n_cells < 1:  # anova_lm raises on a saturated model: check before calling it
        return _no_residual_df_table(safe, factors)
    formula = "y ~ " + " * ".join(f"C(f{i}, Sum)" for i in range(len(factors)))
    table = anova_lm(ols(formula, data=safe).fit(), typ=typ)
    table = table.drop(index=[i for i in table.index if i == "Intercept"])
    names = {f"C(f{i}, Sum)": f for i, f in enumerate(factors)}
    sources = [":".join(names.get(t, t) for t in str(term).split(":")) for term in table.index]
    ss = table["sum_sq"].to_numpy(dtype=float)
    dof = table["df"].to_numpy(dtype=float)
    ss_res, df_res = ss[-1], dof[-1]
    ms = ss / np.where(dof > 0, dof, np.nan)
    ms_res = ms[-1]
    ss_total = float(np.sum((safe["y"] - safe["y"].mean()) ** 2))
    out = pd.DataFrame({"source": sources, "SS": ss, "DF": dof, "MS": ms})
    out["F"] = np.nan
    out["p_unc"] = np.nan
    out["np2"] = ss / (ss + ss_res)
    out["omega2"] = (ss - dof * ms_res) / (ss_total + ms_res)
    out["note"] = ""
    effects = out.index[:-1]
    if df_res < 1:
        out.loc[effects, "note"] = "undefined: no residual degrees of freedom"
    elif ss_res <= RELATIVE_ZERO * max(ss_total, 1e-300) or ss_total == 0:
        out.loc[effects, "note"] = "undefined: zero residual variance (F would be infinite or 0/0)"
    else:
        out.loc[effects, "F"] = table["F"].to_numpy(dtype=float)[:-1]
        out.loc[effects, "p_unc"] = table["PR(>F)"].to_numpy(dtype=float)[:-1]
    out.loc[out.index[-1], ["np2", "omega2"]] = np.nan
    return out[ANOVA_COLUMNS]


def _no_residual_df_table(safe: pd.DataFrame, factors: list[str]) -> pd.DataFrame:
    """The ANOVA table of a saturated design (one run per cell): DF per effect, F and p NaN.

    Effect DF = prod(k_f - 1) over the effect's factors; the residual row has DF 0, SS 0. With
    one factor the effect SS is the total SS (every run is its own cell mean); with more, the
    type II SS are left NaN (no residual, nothing to test them against).
    """
    counts = [safe[f"f{i}"].nunique() for i in range(len(factors))]
    ss_total = float(np.sum((safe["y"] - safe["y"].mean()) ** 2))
    rows = []
    for r in range(1, len(factors) + 1):
        for effect in itertools.combinations(range(len(factors)), r):
            rows.append({"source": ":".join(factors[i] for i in effect),
                         "DF": float(np.prod([counts[i] - 1 for i in effect])),
                         "SS": ss_total if len(factors) == 1 else np.nan})
    out = pd.DataFrame(rows + [{"source": "Residual", "DF": 0.0, "SS": 0.0}])
    out["MS"] = out["SS"] / out["DF"].where(out["DF"] > 0)
    for column in ("F", "p_unc", "np2", "omega2"):
        out[column] = np.nan
    out["note"] = ["undefined: no residual degrees of freedom (one run per cell)"] * (len(out) - 1) + [""]
    return out[ANOVA_COLUMNS]


def welch_anova(data: pd.DataFrame, dv: str, between: str) -> pd.DataFrame:
    """Welch's one-way ANOVA for unequal variances (``anova_oneway(use_var="unequal")``).

    With w_i = n_i / s_i^2, the weighted mean m_w, k groups and
    Lam = sum (1 - w_i / sum w)^2 / (n_i - 1):
    F = [sum w_i (m_i - m_w)^2 / (k - 1)] / [1 + 2 (k - 2) Lam / (k^2 - 1)],
    ddof1 = k - 1, ddof2 = (k^2 - 1) / (3 Lam)   (Welch 1951).

    Returns
    -------
    One-row DataFrame ``source, ddof1, ddof2, F, p_unc, note``. Undefined (NaN, with note) when a
    group has fewer than 2 values or zero variance (its weight would be infinite).
    """
    frame = check_frame(data, dv, [between])
    labels = level_labels(frame[between])
    levels = ordered_levels(labels)
    if len(levels) < 2:
        raise StatsError(f"welch_anova needs at least 2 levels of {between!r}, got {levels}")
    groups = [frame.loc[labels == lv, dv].to_numpy(dtype=float) for lv in levels]
    row = dict(source=between, ddof1=float(len(levels) - 1), ddof2=np.nan, F=np.nan, p_unc=np.nan, note="")
    if min(g.size for g in groups) < 2:
        row["note"] = "undefined: a group has fewer than 2 values"
    elif any(is_constant(g) for g in groups):
        row["note"] = "undefined: a group has zero variance (Welch weights n/s^2 are infinite)"
    else:
        res = anova_oneway(groups, use_var="unequal", welch_correction=True)
        row.update(ddof2=float(res.df_denom), F=float(res.statistic), p_unc=float(res.pvalue))
    return pd.DataFrame([row], columns=["source", "ddof1", "ddof2", "F", "p_unc", "note"])
