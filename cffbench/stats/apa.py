"""APA-style number formatting and result sentences (e.g. "F(2, 8) = 12.31, p = .004, ηp² = .75")."""

from __future__ import annotations

import math

from cffbench import fmt


def _finite(x) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def fmt_p(p: float, name: str = "p") -> str:
    """``p = .004`` / ``p < .001`` / ``p > .999`` (:func:`cffbench.fmt.p_value`); an undefined p
    is written as such, never as 0."""
    text = fmt.p_value(p)
    return text if name == "p" else name + text[1:]


def fmt_unit(x: float, digits: int = 2) -> str:
    """A statistic bounded by 1 (ηp², ε, W): no leading zero, e.g. ``.75``."""
    return fmt.apa_decimal(x, digits) if _finite(x) else "undefined"


def fmt_num(x: float, digits: int = 2) -> str:
    """A number with a true minus sign (e.g. ``−4.06``)."""
    return fmt.num(x, digits) if _finite(x) else "undefined"


def fmt_df(x: float) -> str:
    """Degrees of freedom (:func:`cffbench.fmt.df`): integers plain, corrected (fractional) df
    with two decimals; "undefined" when not finite."""
    return fmt.df(x) or "undefined"


def _why(note: str) -> str:
    return (note or "not computable").removeprefix("undefined: ")


def f_sentence(label: str, ddof1: float, ddof2: float, f_value: float, p: float, np2: float,
               eps: float | None = None, note: str = "", correction: str = "Greenhouse–Geisser") -> str:
    """``label: F(ddof1, ddof2) = F, p = …, ηp² = …``; with ``eps`` the df are corrected by
    ``correction`` (Greenhouse–Geisser or Huynh–Feldt)."""
    if not _finite(f_value) or not _finite(p):
        return f"{label}: F undefined ({_why(note)})"
    gg = eps is not None and _finite(eps)
    d1, d2 = (ddof1 * eps, ddof2 * eps) if gg else (ddof1, ddof2)
    text = f"{label}: F({fmt_df(d1)}, {fmt_df(d2)}) = {fmt_num(f_value)}, {fmt_p(p)}"
    if gg:
        text += f", {correction} ε = {fmt_unit(eps)}"
    if np2 is not None:
        text += f", ηp² = {fmt_unit(np2)}"
    return text


def chi2_sentence(label: str, ddof: float, q: float, p: float, kendall_w: float, note: str = "") -> str:
    """``label: χ²(df) = Q, p = …, Kendall's W = …`` (Friedman)."""
    if not _finite(q) or not _finite(p):
        return f"{label}: χ² undefined ({_why(note)})"
    return f"{label}: χ²({fmt_df(ddof)}) = {fmt_num(q)}, {fmt_p(p)}, Kendall's W = {fmt_unit(kendall_w)}"


def h_sentence(label: str, ddof: float, h: float, p: float, note: str = "") -> str:
    """``label: H(df) = …, p = …`` (Kruskal-Wallis)."""
    if not _finite(h) or not _finite(p):
        return f"{label}: H undefined ({_why(note)})"
    return f"{label}: H({fmt_df(ddof)}) = {fmt_num(h)}, {fmt_p(p)}"


def pair_sentence(row: dict, scale: float, unit: str, padjust: str) -> str:
    """One pairwise comparison: difference with CI, test, adjusted p, effect size with CI."""
    es_name, es_label = ("cohen_dz", "d_z") if "cohen_dz" in row else ("hedges_g", "g")
    head = f"{row['B']} − {row['A']}"
    if "contrast_at" in row and row["contrast_at"]:
        head += f" (at {row['contrast_at']})"
    diff = f"{'+' if _finite(row['diff']) and row['diff'] >= 0 else ''}{fmt_num(row['diff'] * scale)}{unit}"
    text = f"{head} = {diff}"
    if _finite(row["ci_low"]):
        text += f", 95% CI [{fmt_num(row['ci_low'] * scale)}, {fmt_num(row['ci_high'] * scale)}]"
    if not _finite(row["p_unc"]):
        return f"{text}; test undefined ({_why(row['note'])})"
    test = row["test"]
    if test.endswith(" t"):
        stat = f"t({fmt_df(row['dof'])}) = {fmt_num(row['stat'])}"
    elif test.startswith("Wilcoxon"):
        stat = f"W = {fmt_num(row['stat'], 1)}"
    else:
        stat = f"U = {fmt_num(row['stat'], 1)}"
    adj = fmt_p(row["p_adj"], f"p_{padjust}") if padjust != "none" else fmt_p(row["p_unc"])
    es = row[es_name]
    es_text = (f"{es_label} = {fmt_num(es)}, 95% CI [{fmt_num(row['es_ci_low'])}, {fmt_num(row['es_ci_high'])}]"
               if _finite(es) else f"{es_label} undefined")
    return f"{text}; {test}: {stat}, {adj}; {es_text}"
