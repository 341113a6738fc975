"""The text of a :class:`~cffbench.analysis.PlanResult`: one cell formatter for every output.

The report's HTML and LaTeX tables, the findings page and the console summary all take their
cells from :func:`contrast_cells` and :func:`sensitivity_cells`, so a contrast reads the same
everywhere; nothing here computes a statistic.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from cffbench import fmt
from cffbench.stats.paired import TEST_LABEL, VERDICT_TABLE

#: Column headers of the contrast table (report and findings): the decision of each contrast.
CONTRAST_COLUMNS = ["comparison", "at", "n", "verdict", "difference [pp] (95 % CI)",
                    "simultaneous CI [pp]", "p", "p_adj", "decision", "p (Δ ≥ SESOI)", "p (TOST)"]
#: Column headers of the effect-size and power table (same rows, same order).
EFFECT_COLUMNS = ["comparison", "at", "n", "P(improvement) [95 % Wilson]", "d_z (corrected)",
                  "SD of diff. [pp]", "seeds needed [95 %]"]
SENSITIVITY_COLUMNS = ["comparison", "at", "test", "estimate [pp] (95 % CI)", "interval",
                       "p", "p_adj", "decision; verdict", "changes the decision"]


def _finite(x) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def pp_ci(estimate, low, high, defined: bool = True) -> str:
    """"+1.27 [−0.93, +3.47]" (fractions in, pp out); "[unbounded]" when a bound is missing
    (an inverted sign-flip interval at small n), "[CI undefined]" when the test is
    (``defined=False``: constant differences, whose interval is no zero-width certainty)."""
    if not _finite(estimate):
        return "undefined"
    if not defined:
        return fmt.pp(estimate) + " [CI undefined]"
    ci = f" [{fmt.pp(low)}, {fmt.pp(high)}]" if _finite(low) and _finite(high) else " [unbounded]"
    return fmt.pp(estimate) + ci


def p_cell(p) -> str:
    return fmt.p_cell(p) or "undefined"


def _count(x) -> str:
    return str(int(x)) if _finite(x) else "—"


def seeds_cell(r) -> str:
    """"76 [38–246]"; "(pilot)" when the SD comes from fewer than 10 seeds."""
    if not _finite(r["seeds_needed"]):
        return "undefined"
    text = f"{_count(r['seeds_needed'])} [{_count(r['seeds_low'])}–{_count(r['seeds_high'])}]"
    return text + (" (small pilot)" if bool(r["small_pilot"]) else "")


def contrast_cells(r) -> list[str]:
    """One contrast row (a record of ``PlanResult.contrasts``) as the cells of CONTRAST_COLUMNS."""
    primary = r["role"] == "primary"
    defined = not r.get("note")
    simultaneous = (pp_ci(r["estimate"], r["ci_adj_low"], r["ci_adj_high"], defined).split(" ", 1)[-1]
                    if _finite(r["estimate"]) else "undefined")
    difference = pp_ci(r["estimate"], r["ci_low"], r["ci_high"], defined)
    if _finite(r.get("ci_confidence")) and abs(r["ci_confidence"] - 0.95) > 5e-4:
        difference += f" ({fmt.pct(r['ci_confidence'], 1)} %)"   # e.g. Hodges–Lehmann at small n
    return [r["label"], r["scope"] or "—", str(int(r["n"])), r["verdict"] if primary else "(secondary)",
            difference, simultaneous,
            p_cell(r["p"]), p_cell(r["p_adj"]), r["decision"],
            p_cell(r["p_me"]) if primary else "—", p_cell(r["p_tost"]) if primary else "—"]


def effect_cells(r) -> list[str]:
    """The same contrast as the cells of EFFECT_COLUMNS."""
    pi = (f"{fmt.apa_decimal(r['prob_improvement'], 2)} [{fmt.apa_decimal(r['pi_low'], 2)}, "
          f"{fmt.apa_decimal(r['pi_high'], 2)}]" if _finite(r["prob_improvement"]) else "undefined")
    return [r["label"], r["scope"] or "—", str(int(r["n"])), pi, fmt.num(r["dz_corrected"]) or "undefined",
            fmt.num(100 * r["sd_diff"]) if _finite(r["sd_diff"]) else "undefined", seeds_cell(r)]


def sensitivity_cells(r) -> list[str]:
    """One (contrast, test) row of ``PlanResult.sensitivity`` as the cells of SENSITIVITY_COLUMNS."""
    interval = {"t": "t CI", "permutation": "inverted sign-flip CI",
                "wilcoxon": "Hodges–Lehmann"}[r["test"]]
    if _finite(r["confidence"]) and abs(r["confidence"] - 0.95) > 5e-4:
        interval += f" ({fmt.pct(r['confidence'], 1)} %)"
    if r["method"]:
        interval += f"; {r['method']}"
    test = TEST_LABEL[r["test"]] + (" (the plan's test)" if bool(r["primary_test"]) else "")
    return [r["label"], r["scope"] or "—", test,
            pp_ci(r["estimate"], r["ci_low"], r["ci_high"], r["decision"] != "undefined"),
            interval, p_cell(r["p"]),
            p_cell(r["p_adj"]), r["decision"] + (f"; {r['verdict']}" if r.get("verdict") else ""),
            "YES" if bool(r["changes_decision"]) else ""]


def secondary_pairs_text(plan) -> str:
    """Which pairs the plan's secondary family holds (:func:`cffbench.analysis.contrasts._pairs`):
    each other variant minus the reference and, with two or more primary variants, each later
    primary minus each earlier one; no other pair (e.g. A-CFF − F-CFF when only A-CFF is
    primary) is tested."""
    ref = plan.reference.upper()
    text = f"each other variant minus {ref}"
    if len(plan.primary) > 1:
        text += " and each pair of primary variants (" + ", ".join(
            f"{b.upper()} − {a.upper()}" for i, a in enumerate(plan.primary)
            for b in plan.primary[i + 1:]) + ")"
    return text + "; no other pair is tested"


def plan_sentence(plan) -> str:
    """The plan in one paragraph, with its hash."""
    adjust = {"holm": "Holm", "bonferroni": "Bonferroni", "none": "no adjustment"}[plan.adjust]
    return (f"Analysis plan {plan.hash} (the study file's [analysis]; documented "
            f"defaults where a key is absent). Primary contrasts: each of {', '.join(v.upper() for v in plan.primary)} "
            f"minus {plan.reference.upper()}, per dataset and per level of every other grid axis; "
            f"{adjust} over the primary contrasts of one dataset; secondary, in a family of its own: "
            f"{secondary_pairs_text(plan)}. Test: {TEST_LABEL[plan.test]}, two-sided, α = "
            f"{fmt.apa_decimal(plan.alpha, 2)}. Smallest effect of interest (SESOI) "
            f"{fmt.pct(plan.sesoi, 1)} pp ({plan.sesoi_source}); equivalence margin ±{fmt.pct(plan.margin, 1)} pp. "
            f"Minimum-effect test: H0 Δ ≥ SESOI; TOST: H0 |Δ| ≥ margin; each question adjusted over "
            f"the family separately; both are one-sided at α, so their decisions match a "
            f"{fmt.pct(1 - 2 * plan.alpha, 0)} % interval (1 − 2α, with Holm 1 − 2α/m), narrower than "
            f"the CIs shown. CIs: unadjusted 95 % (the test's own; a discrete test's attainable "
            f"level is printed where it differs) and simultaneous "
            f"(Bonferroni, 1 − α/m). Seeds needed: paired t at α/m, power {fmt.num(plan.power, 1)}, to detect "
            f"the SESOI, with a 95 % range from the χ² interval of the SD. P(improvement): the share "
            f"of seeds on which the first variant beats the second (ties count ½), with a Wilson "
            f"interval. d_z is bias-corrected by Hedges' J.")


def registration_lines(result) -> list[str]:
    """["", the sentence saying whether the plan was the one recorded before the runs] (nothing
    for runs analysed without a store)."""
    return ["", result.registration.text] if result.registration.text else []


def verdict_rules() -> list[str]:
    """The verdict table as lines "verdict: rule"."""
    return [f"{name}: {rule}" for name, rule in VERDICT_TABLE]


def verdict_lines(result) -> list[str]:
    """"mnist, A-CFF − FF (theta_placement = single): inconclusive — ..." per primary contrast."""
    out = []
    for r in result.primary.to_dict("records"):
        at = f" ({r['scope']})" if r["scope"] else ""
        out.append(f"{r['dataset']}, {r['label']}{at}: {r['verdict_text']}; "
                   f"Δ = {pp_ci(r['estimate'], r['ci_low'], r['ci_high'], not r.get('note'))} pp, "
                   f"{fmt.p_value(r['p_adj']).replace('p', 'p_adj', 1)}")
    return out


def plan_text(result) -> str:
    """The console / summary.txt rendering: plan, verdicts, contrast and sensitivity tables."""
    lines = [plan_sentence(result.plan), *registration_lines(result), "", "Verdicts (primary contrasts):"]
    lines += [f"  {v}" for v in verdict_lines(result)]
    for dataset in dict.fromkeys(result.contrasts["dataset"]):
        rows = result.contrasts[result.contrasts["dataset"] == dataset].to_dict("records")
        lines += ["", f"{dataset}: contrasts", _plain(CONTRAST_COLUMNS, [contrast_cells(r) for r in rows]),
                  "", f"{dataset}: effect sizes and seeds needed",
                  _plain(EFFECT_COLUMNS, [effect_cells(r) for r in rows])]
    flagged = result.sensitivity[result.sensitivity["changes_decision"]] if not result.sensitivity.empty \
        else result.sensitivity
    lines += ["", "Sensitivity tests that change a decision:" if len(flagged) else
              "No sensitivity test changes a decision."]
    lines += [f"  {r['dataset']}, {r['label']} ({r['scope'] or '—'}): {TEST_LABEL[r['test']]} "
              f"{fmt.p_value(r['p_adj']).replace('p', 'p_adj', 1)} ({r['decision']}"
              f"{'; ' + r['verdict'] if r.get('verdict') else ''})" for r in flagged.to_dict("records")]
    if result.notes:
        lines += ["", "Notes:"] + [f"  {n}" for n in result.notes]
    return "\n".join(lines)


def _plain(columns: list[str], rows: list[list[str]]) -> str:
    frame = pd.DataFrame(rows, columns=columns)
    return frame.to_string(index=False) if not frame.empty else "(none)"


def finite_or_nan(x) -> float:
    return float(x) if _finite(x) else np.nan
