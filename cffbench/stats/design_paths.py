"""The two branches of :func:`~cffbench.stats.compare.compare`: within-subjects and between-subjects,
plus the power line. Each fills the ``Comparison`` it is given (tables, decisions, sentences)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from cffbench.stats import apa
from cffbench.stats.anova import anova, rm_anova, welch_anova
from cffbench.stats.assumptions import is_constant, levene_check, shapiro_check
from cffbench.stats.nonparametric import friedman, kruskal
from cffbench.stats.inputs import ordered_levels
from cffbench.stats.multiplicity import adjust
from cffbench.stats.pairwise import pairwise, tukey
from cffbench.stats.comparison import PowerLine, is_reference
from cffbench.stats.power import seeds_needed

# Girden (1992): Greenhouse-Geisser when its epsilon is below .75, Huynh-Feldt otherwise; Mauchly's
# test is reported as a diagnostic and does not choose (a corrected F is always used for p > 1 df).
GG_THRESHOLD = 0.75


def _normality_verdict(check: dict, alpha: float, result, pretest: bool = True) -> bool:
    """Record the normality decision; True when the parametric path may be taken.

    ``pretest=False``: the check is recorded as a diagnostic and the parametric path is kept."""
    if not pretest:
        if check["note"]:
            text = f"{check['on']}: {check['note']}"
        else:
            text = (f"Shapiro–Wilk on the {check['on']}: W = {apa.fmt_unit(check['stat'], 3)}, "
                    f"{apa.fmt_p(check['p'])}")
        result.decide("normality (diagnostic only)", "parametric path (fixed in advance)",
                      text + "; the check does not choose the test")
        return True
    if check["note"]:
        result.decide("normality", "assumed (not checkable)", f"{check['on']}: {check['note']}")
        result.warnings.append(f"normality not checkable ({check['note']}); parametric path kept")
        return True
    text = f"Shapiro–Wilk on the {check['on']}: W = {apa.fmt_unit(check['stat'], 3)}, {apa.fmt_p(check['p'])}"
    if check["p"] < alpha:
        result.decide("normality", "violated", f"{text} < {apa.fmt_unit(alpha)}")
        return False
    result.decide("normality", "not rejected", f"{text} ≥ {apa.fmt_unit(alpha)}")
    return True


def _sphericity_choice(row: dict, threshold: float, alpha: float) -> tuple[str, str]:
    """(correction, reason) by Girden's (1992) rule: ``"gg"`` when the Greenhouse–Geisser epsilon is
    below ``threshold``, else ``"hf"`` (Huynh–Feldt); ``"none"`` when epsilon is undefined.
    Mauchly's test is quoted as a diagnostic only."""
    eps = row["eps"]
    if not np.isfinite(eps):
        return "none", "ε undefined"
    p_mauchly = row["p_mauchly"]
    mauchly_text = ("Mauchly undefined" if not np.isfinite(p_mauchly) else
                    f"Mauchly W = {apa.fmt_unit(row['W_mauchly'], 3)}, {apa.fmt_p(p_mauchly)}, a diagnostic")
    if eps < threshold:
        return "gg", f"GG ε = {apa.fmt_unit(eps)} < {apa.fmt_unit(threshold)} (Girden 1992; {mauchly_text})"
    return "hf", (f"GG ε = {apa.fmt_unit(eps)} ≥ {apa.fmt_unit(threshold)}, so Huynh–Feldt ε = "
                  f"{apa.fmt_unit(row['eps_hf'])} (Girden 1992; {mauchly_text})")


def _sentences(result, posthoc: pd.DataFrame) -> None:
    for row in posthoc.to_dict("records"):
        result.apa.append(apa.pair_sentence(row, result.scale, result.unit, "holm"))


def _simple_effect_family(frame, dv, factor, within_levels_of, **kw) -> pd.DataFrame:
    """Pairs of ``factor`` within each level of ``within_levels_of``, Holm over all of them."""
    parts = []
    for level in ordered_levels(frame[within_levels_of]):
        part = frame[frame[within_levels_of] == level]
        if part[factor].nunique() < 2:
            continue
        table = pairwise(part, dv, padjust="none", **{kw["key"]: factor}, subject=kw.get("subject"),
                         parametric=kw.get("parametric", True))
        table.insert(1, "contrast_at", f"{within_levels_of} = {level}")
        parts.append(table)
    out = pd.concat(parts, ignore_index=True)
    out["p_adj"] = adjust(out["p_unc"].to_numpy(), "holm")
    return out


def _simple_effects(frame, dv, factors, result, p_interaction, both: bool = False, **kw) -> pd.DataFrame:
    """Simple effects when the interaction is significant, else main-effect pairs per factor.

    Simple effects: pairs of the first factor within each level of the second (one Holm family);
    with ``both``, also pairs of the second factor within each level of the first, as a second Holm
    family (one family per factor). Without a significant interaction: main-effect pairs of each
    factor on marginal means (Holm within factor).
    """
    first, second = factors
    subject = kw.get("subject")
    if np.isfinite(p_interaction) and p_interaction < result.alpha:
        families = [(first, second), (second, first)] if both else [(first, second)]
        out = pd.concat([_simple_effect_family(frame, dv, a, b, **kw) for a, b in families], ignore_index=True)
        sizes = [int((out["contrast"] == a).sum()) for a, _ in families]
        choice = f"simple effects of {first} within each level of {second} (Holm over {sizes[0]})"
        if both:
            choice += f" and of {second} within each level of {first} (Holm over {sizes[1]})"
        result.decide("post-hoc", choice,
                      f"{first}:{second} interaction significant ({apa.fmt_p(p_interaction)})"
                      + ("; both factors' simple effects, one Holm family per factor" if both else ""))
        return out
    parts = []
    for factor in factors:
        data = frame.groupby([subject, factor], as_index=False)[dv].mean() if subject else frame
        table = pairwise(data, dv, **{kw["key"]: factor}, subject=subject, parametric=kw.get("parametric", True))
        table.insert(1, "contrast_at", "")
        parts.append(table)
    reason = ("interaction undefined" if not np.isfinite(p_interaction)
              else f"{first}:{second} interaction not significant ({apa.fmt_p(p_interaction)})")
    if both:
        reason += "; both factors' pairs are tested, one Holm family per factor"
    result.decide("post-hoc", "main-effect pairs of each factor (Holm within factor)"
                  + (", on per-subject marginal means" if subject else ""), reason)
    return pd.concat(parts, ignore_index=True)


def smallest_adjusted_wilcoxon_p(n: int, n_pairs: int) -> float:
    """Smallest Holm-adjusted exact two-sided Wilcoxon signed-rank p with ``n`` pairs.

    The exact two-sided p is at least 2 / 2^n (all n differences of one sign); Holm multiplies the
    smallest p of a family of m tests by m, so the floor is min(1, m * 2 / 2^n).
    """
    return min(1.0, max(n_pairs, 1) * 2.0 / 2.0**n)


def _family_size(cells: list[str], reference: str | None) -> int:
    """Pairs in the post-hoc Holm family: k - 1 with a reference level among ``cells``, else k(k-1)/2."""
    k = len(cells)
    n_ref = sum(is_reference(c, reference) for c in cells) if reference is not None else 0
    return n_ref * (k - n_ref) if n_ref else k * (k - 1) // 2


def reference_family(posthoc: pd.DataFrame, reference: str | None, result) -> pd.DataFrame:
    """Keep the pairs "condition − reference" and Holm-adjust over those k − 1 pairs only."""
    if reference is None:
        return posthoc
    keep = (posthoc["A"].astype(str).map(lambda a: is_reference(a, reference))
            & ~posthoc["B"].astype(str).map(lambda b: is_reference(b, reference)))
    if not keep.any():
        result.decide("post-hoc family", "all pairs (Holm over all)", f"no {reference} condition among the levels")
        return posthoc
    out = posthoc[keep].reset_index(drop=True)
    out["p_adj"] = adjust(out["p_unc"].to_numpy(), "holm")
    result.decide("post-hoc family", f"the {len(out)} comparison(s) with {reference} (Holm over {len(out)})",
                  f"the question is each condition against {reference}; pairs among the other conditions "
                  f"are not tested, so the Holm family is k − 1 = {len(out)}, not all {len(posthoc)} pairs")
    return out


def within_path(frame: pd.DataFrame, dv: str, factors: list[str], subject: str, result, *,
                reference: str | None = None, both_simple_effects: bool = False,
                pretest: bool = True) -> None:
    """RM-ANOVA (+ GG) and paired t post-hoc, or Friedman + Wilcoxon when normality fails.

    ``reference``: with one factor, post-hoc pairs are only "condition − reference" (Holm over
    k − 1); None: all pairs. ``both_simple_effects``: see :func:`_simple_effects`.
    """
    wide = frame.pivot(index=subject, columns="cell", values=dv)
    n, k = wide.shape
    result.design, result.n_blocks = "within", n
    normality = residual_normality(wide.to_numpy(dtype=float))
    checks = [normality]
    parametric = _normality_verdict(normality, result.alpha, result, pretest)
    n_pairs = _family_size([str(c) for c in wide.columns], reference if len(factors) == 1 else None)
    floor = smallest_adjusted_wilcoxon_p(n, n_pairs)
    if not parametric and floor >= result.alpha:
        # Switching would turn a possibly significant result into a certainly non-significant one.
        why = (f"non-parametric tests cannot reach significance with {n} seeds: the smallest Holm-adjusted "
               f"exact Wilcoxon p over {n_pairs} pair(s) is {n_pairs} × 2/2^{n} = {floor:.4f} ≥ "
               f"{apa.fmt_unit(result.alpha)}; normality doubtful: interpret with care")
        result.decide("non-parametric fallback", "not taken: parametric path kept", why)
        result.warnings.append(f"normality rejected ({apa.fmt_p(normality['p'])}) but {why}")
    if parametric or floor >= result.alpha:
        result.path = "rm_anova"
        table = rm_anova(frame, dv, factors, subject)
        result.tables["rm_anova"] = table
        p_used = {}
        for row in table.to_dict("records"):
            if row["ddof1"] > 1:
                checks.append({"check": "sphericity (Mauchly)", "on": row["source"], "stat": row["W_mauchly"],
                               "p": row["p_mauchly"], "note": f"GG ε = {apa.fmt_unit(row['eps'])}"})
            correction, why = _sphericity_choice(row, GG_THRESHOLD, result.alpha)
            if row["ddof1"] <= 1:
                correction = "none"
            else:
                result.decide(f"sphericity: {row['source']}",
                              {"gg": "Greenhouse–Geisser correction", "hf": "Huynh–Feldt correction",
                               "none": "uncorrected"}[correction], why)
            p_used[row["source"]] = {"gg": row["p_gg"], "hf": row["p_hf"]}.get(correction, row["p_unc"])
            eps_used = {"gg": row["eps"], "hf": row["eps_hf"]}.get(correction)
            result.apa.append(apa.f_sentence(row["source"], row["ddof1"], row["ddof2"], row["F"],
                                             p_used[row["source"]], row["np2"], eps_used,
                                             row["note"], correction="Huynh–Feldt" if correction == "hf"
                                             else "Greenhouse–Geisser"))
        result.decide("omnibus", "repeated-measures ANOVA" + (" (two-way)" if len(factors) == 2 else ""),
                      f"{n} complete block(s), " + ("the parametric path fixed in advance" if not pretest else
                                                    "normality not checkable" if normality["note"] else
                                                    "normality not rejected" if parametric else
                                                    "normality rejected but no attainable non-parametric alternative"))
        if len(factors) == 1:
            posthoc = pairwise(frame, dv, within=factors[0], subject=subject)
            result.decide("post-hoc", "paired t-tests, Holm", "seeds pair the runs")
            posthoc = reference_family(posthoc, reference, result)
        else:
            posthoc = _simple_effects(frame, dv, factors, result, p_used[":".join(factors)],
                                      both=both_simple_effects, key="within", subject=subject)
    else:
        result.path = "friedman"
        label = ":".join(factors)
        if k >= 3:
            table = friedman(frame, dv, "cell", subject)
            table["source"] = label
            result.tables["friedman"] = table
            row = table.iloc[0]
            result.apa.append(apa.chi2_sentence(label, row["ddof"], row["Q"], row["p_unc"], row["kendall_w"], row["note"]))
            result.decide("omnibus", "Friedman test" + (" over all cells" if len(factors) == 2 else ""),
                          "normality violated; ranks within each seed need no normality")
        else:
            result.decide("omnibus", "Wilcoxon signed-rank test", "normality violated; two conditions")
        posthoc = pairwise(frame, dv, within="cell", subject=subject, parametric=False)
        posthoc["contrast"] = label
        result.decide("post-hoc", "Wilcoxon signed-rank tests, Holm", "normality violated")
        if len(factors) == 1:
            posthoc = reference_family(posthoc, reference, result)
        if floor >= result.alpha:  # kept for completeness: the fallback above normally prevents it
            result.warnings.append(
                f"too few seeds for the non-parametric path to reach p < {result.alpha}: with n = {n} and "
                f"{n_pairs} Holm-adjusted pair(s) the smallest attainable adjusted Wilcoxon p is {floor:.4f}")
    result.tables["assumptions"] = pd.DataFrame(checks)
    result.tables["posthoc"] = posthoc
    _sentences(result, posthoc)


def between_path(frame: pd.DataFrame, dv: str, factors: list[str], result, *,
                 reference: str | None = None, both_simple_effects: bool = False,
                 pretest: bool = True) -> None:
    """Welch ANOVA / Kruskal-Wallis (one factor) or two-way ANOVA (two), with post-hoc tests.

    ``reference`` and ``both_simple_effects`` as in :func:`within_path`.
    """
    groups = [g[dv].to_numpy(dtype=float) for _, g in frame.groupby("cell", observed=True)]
    result.design, result.n_blocks = "between", int(min(g.size for g in groups))
    resid = frame[dv] - frame.groupby("cell", observed=True)[dv].transform("mean")
    normality = shapiro_check(resid.to_numpy(dtype=float), "residuals of the cell-means model",
                              scale=float(np.max(np.abs(frame[dv].to_numpy(dtype=float)))))
    levene = levene_check(groups, "cells")
    result.tables["assumptions"] = pd.DataFrame([normality, levene])
    parametric = _normality_verdict(normality, result.alpha, result, pretest)
    equal_var = not levene["note"] and levene["p"] >= result.alpha
    if len(factors) == 1:
        factor = factors[0]
        result.tables["anova"] = anova(frame, dv, factor)
        if parametric:
            result.path = "welch_anova"
            table = welch_anova(frame, dv, factor)
            result.tables["welch_anova"] = table
            row = table.iloc[0]
            result.apa.append(apa.f_sentence(f"{factor} (Welch's ANOVA)", row["ddof1"], row["ddof2"], row["F"],
                                                          row["p_unc"], None, None, row["note"]))
            result.decide("omnibus", "Welch's ANOVA", "unpaired groups; Welch does not assume equal variances")
            if equal_var:
                result.tables["tukey"] = tukey(frame, dv, factor)
                result.decide("tukey", "Tukey HSD added", f"Levene {apa.fmt_p(levene['p'])}: equal variances not rejected")
        else:
            result.path = "kruskal"
            table = kruskal(frame, dv, factor)
            result.tables["kruskal"] = table
            row = table.iloc[0]
            result.apa.append(apa.h_sentence(factor, row["ddof"], row["H"], row["p_unc"], row["note"]))
            result.decide("omnibus", "Kruskal–Wallis test", "unpaired groups, normality violated")
        posthoc = pairwise(frame, dv, between=factor, parametric=parametric)
        result.decide("post-hoc", ("Welch t-tests" if parametric else "Mann–Whitney U tests") + ", Holm",
                      "unpaired groups")
        posthoc = reference_family(posthoc, reference, result)
    else:
        result.path = "anova"
        table = anova(frame, dv, factors, typ=2)
        result.tables["anova"] = table
        ss_res = table.iloc[-1]
        for row in table.iloc[:-1].to_dict("records"):
            result.apa.append(apa.f_sentence(row["source"], row["DF"], ss_res["DF"], row["F"], row["p_unc"],
                                             row["np2"], None, row["note"]))
        result.decide("omnibus", "two-way ANOVA with interaction (type II SS)", "unpaired runs, complete crossing")
        if not parametric:
            result.warnings.append("residuals not normal: the two-way ANOVA is kept (no rank test for interactions here); read it with care")
        p_inter = float(table.loc[table["source"] == ":".join(factors), "p_unc"].iloc[0])
        posthoc = _simple_effects(frame, dv, factors, result, p_inter, both=both_simple_effects, key="between",
                                  parametric=parametric)
    result.tables["posthoc"] = posthoc
    _sentences(result, posthoc)


def power_line(frame: pd.DataFrame, dv: str, subject: str | None, delta: float, power: float,
               alpha: float, reference: str | None, result):
    """Seeds needed to detect ``delta`` from the observed SD of paired differences."""
    if subject is not None:
        wide = frame.pivot(index=subject, columns="cell", values=dv)
        columns = {c: wide[c].to_numpy(dtype=float) for c in wide.columns}
        n_seeds = len(wide)
    else:
        columns = {c: g[dv].to_numpy(dtype=float) for c, g in frame.groupby("cell", observed=True)}
        n_seeds = int(min(v.size for v in columns.values()))
    pairs = list(itertools.combinations(sorted(columns), 2))
    ref_cells = [c for c in columns if reference is not None and is_reference(c, reference)]
    if ref_cells:  # reference as A: the pairs read "condition − reference"
        pairs = [(b, a) if b in ref_cells else (a, b) for a, b in pairs if (a in ref_cells) != (b in ref_cells)]
    rows = []
    for a, b in pairs:
        if subject is not None:
            diffs = columns[b] - columns[a]
            scale = float(np.max(np.abs(np.concatenate([columns[a], columns[b]]))))
            sd = (0.0 if is_constant(diffs, scale) else float(np.std(diffs, ddof=1))) if n_seeds > 1 else math.nan
        else:
            va, vb = (np.var(columns[c], ddof=1) if columns[c].size > 1 else math.nan for c in (a, b))
            sd = float(np.sqrt(va + vb))
        rows.append({"A": a, "B": b, "n": n_seeds, "diff_sd": sd,
                     "seeds_needed": seeds_needed(sd, delta, alpha, power, paired=subject is not None)})
    table = pd.DataFrame(rows, columns=["A", "B", "n", "diff_sd", "seeds_needed"])
    result.tables["power"] = table
    sds = table["diff_sd"].to_numpy(dtype=float)
    diff_sd = float(np.sqrt(np.mean(sds**2))) if len(sds) and np.isfinite(sds).all() else math.nan
    needed = seeds_needed(diff_sd, delta, alpha, power, paired=subject is not None)
    kind = "paired differences" if subject is not None else "differences of independent runs (unpaired design)"
    basis = f"SD of {kind}, root mean square over {len(pairs)} pair(s)" + (f" with {reference}" if ref_cells else "")
    test = "two-sided paired t" if subject is not None else "two-sided two-sample t, seeds per condition"
    head = (f"Seeds needed to detect {apa.fmt_num(delta * result.scale)}{result.unit} with power "
            f"{apa.fmt_unit(power)} ({test}, α = {apa.fmt_unit(alpha)})")
    if math.isnan(needed):
        why = "needs at least 2 seeds" if n_seeds < 2 else (
            "the differences have zero SD" if diff_sd == 0 else "SD not finite")
        text = f"{head}: undefined ({why}); this study has {n_seeds}."
    else:
        text = (f"{head}: {int(needed)}, from the observed SD of the {kind}, "
                f"{apa.fmt_num(diff_sd * result.scale)}{result.unit} (root mean square over {len(pairs)} "
                f"pair(s){' with ' + reference if ref_cells else ''}); this study has {n_seeds}.")
    return PowerLine(delta=delta, power=power, alpha=alpha, diff_sd=diff_sd, seeds_needed=needed,
                     n_seeds=n_seeds, basis=basis, text=text)


def residual_normality(wide: np.ndarray) -> dict:
    """Shapiro-Wilk on paired differences (2 cells) or on subject + cell model residuals.

    ``wide`` has shape (n_subjects, n_cells); residual_ij = y_ij - ybar_i. - ybar_.j + ybar_..
    Constancy is judged against the raw data's scale max |y_ij|, so identical gains in every seed
    (residuals = float noise) count as "not checkable", not as a normality violation.
    """
    scale = float(np.max(np.abs(wide))) if wide.size else None
    if wide.shape[1] == 2:
        return shapiro_check(wide[:, 1] - wide[:, 0], "paired differences", scale=scale)
    resid = wide - wide.mean(axis=1, keepdims=True) - wide.mean(axis=0, keepdims=True) + wide.mean()
    return shapiro_check(resid.ravel(), "residuals of the subject + condition model", scale=scale)
