"""The report's first statistics: the analysis plan's verdicts, contrasts and sensitivity tests.

Everything comes from the saved :class:`~cffbench.analysis.PlanResult` (``cffbench analyze``);
cells are :mod:`cffbench.analysis.render`'s, so the report, the findings and the analysis files
print a contrast identically.
"""

from __future__ import annotations

import re

from cffbench import fmt
from cffbench.analysis import PlanResult
from cffbench.analysis import render as plan_render
from cffbench.report.tables import Table


def _key(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", text)


def _rows(result: PlanResult, dataset: str) -> list[dict]:
    return result.contrasts[result.contrasts["dataset"] == dataset].to_dict("records")


def contrast_table(result: PlanResult, dataset: str) -> Table:
    rows = [plan_render.contrast_cells(r) for r in _rows(result, dataset)]
    deviation = f"{result.registration.text} " if result.registration.deviation else ""
    note = (f"{deviation}Plan {result.plan.hash}. Difference = first minus second variant, with the primary "
            "test's own 95 % CI, unadjusted; simultaneous CI: 1 − α/m over the family (Bonferroni); "
            "p_adj: adjusted over the family (the primary contrasts of this dataset, or its "
            "secondary pairs); p (Δ ≥ SESOI): minimum-effect test; p (TOST): equivalence within "
            "±margin (both unadjusted here; the verdict uses their adjusted values).")
    return Table(f"contrasts_{_key(dataset)}", f"{dataset}: contrasts of the analysis plan",
                 plan_render.CONTRAST_COLUMNS, rows, note=note, label_columns=4,
                 text_columns=frozenset({plan_render.CONTRAST_COLUMNS.index("decision")}))


def effect_table(result: PlanResult, dataset: str) -> Table:
    rows = [plan_render.effect_cells(r) for r in _rows(result, dataset)]
    note = (f"Plan {result.plan.hash}. P(improvement): share of seeds on which the first "
            "variant beats the second (ties ½), "
            "Wilson 95 % interval. d_z: mean / SD of the differences times Hedges' J(n − 1). Seeds "
            f"needed: paired t at α/m with power {fmt.num(result.plan.power, 1)} to detect the SESOI "
            f"({fmt.pct(result.plan.sesoi, 1)} pp), 95 % range from the χ² interval of the SD; "
            "from fewer than 10 seeds (small pilot) an order of magnitude only.")
    return Table(f"effects_{_key(dataset)}", f"{dataset}: effect sizes and seeds needed",
                 plan_render.EFFECT_COLUMNS, rows, note=note, label_columns=2)


def sensitivity_table(result: PlanResult, dataset: str) -> Table:
    frame = result.sensitivity
    rows = [plan_render.sensitivity_cells(r) for r in frame[frame["dataset"] == dataset].to_dict("records")]
    note = (f"Plan {result.plan.hash}. Every test on every contrast, each with the interval that "
            "belongs to it, its two-sided decision and, for a primary contrast, the verdict its own "
            "minimum-effect and TOST p values would give. YES marks a sensitivity test whose "
            "decision or verdict differs from the primary test's. Wilcoxon drops zero differences "
            "and is exact only without ties.")
    return Table(f"sensitivity_{_key(dataset)}", f"{dataset}: sensitivity of each decision to the test",
                 plan_render.SENSITIVITY_COLUMNS, rows, note=note, label_columns=3,
                 text_columns=frozenset(plan_render.SENSITIVITY_COLUMNS.index(c) for c in
                                        ("interval", "decision; verdict", "changes the decision")))


def plan_section(result: PlanResult) -> dict:
    """``sentence, hash, registration, deviation, rules, verdicts, notes, datasets`` (each: name,
    contrasts, sensitivity, flagged) for the template."""
    datasets = []
    for dataset in dict.fromkeys(result.contrasts["dataset"]):
        sens = result.sensitivity[result.sensitivity["dataset"] == dataset]
        datasets.append({"name": dataset, "contrasts": contrast_table(result, dataset),
                         "effects": effect_table(result, dataset),
                         "sensitivity": sensitivity_table(result, dataset),
                         "flagged": int(sens["changes_decision"].sum())})
    return {"sentence": plan_render.plan_sentence(result.plan), "hash": result.plan.hash,
            "registration": result.registration.text, "deviation": result.registration.deviation,
            "rules": plan_render.verdict_rules(), "verdicts": plan_render.verdict_lines(result),
            "notes": result.notes, "datasets": datasets}
