"""How the report words and lays out what it prints: numbers that never break, text columns that
may, the plan's secondary family as the analysis forms it, and the CD diagram's floor."""

from __future__ import annotations

import pandas as pd
from bs4 import BeautifulSoup

from cffbench.analysis import contrasts
from cffbench.analysis.plan import resolve_plan
from cffbench.analysis.render import secondary_pairs_text
from cffbench.study.spec import AnalysisSection
from cffbench.report.figures import _cd_floor_note
from cffbench.report.render import unbroken_numbers
from cffbench.report.tables import Table


def test_numbers_in_running_text_are_kept_whole_and_the_text_is_escaped():
    html = str(unbroken_numbers("p_adj = .024; p < .001 & Δ = −1.55 pp <b>"))
    spans = [s.get_text() for s in BeautifulSoup(html, "html.parser").find_all("span", class_="nobr")]
    assert spans == ["= .024", "< .001", "= −1.55"]
    assert "<b>" not in html and "&lt;b&gt;" in html and "&amp;" in html


def test_text_columns_of_a_table_are_not_number_cells():
    table = Table("t", "c", ["label", "p", "decision; verdict"], [["a", ".024", "significant"]],
                  label_columns=1, text_columns=frozenset({2}))
    assert [table.is_number(j) for j in range(3)] == [False, True, False]


def test_the_plan_names_exactly_the_secondary_pairs_the_analysis_forms():
    # _pairs forms each other variant − reference and each pair of primaries, nothing else
    planned = pd.DataFrame({"variant": ["ff", "f-cff", "a-cff", "bp"], "dataset": "mnist"})
    runs = planned.assign(seed=0, test_acc=0.9)
    for primary, text in ((["a-cff"], "each other variant minus FF; no other pair is tested"),
                          (["f-cff", "a-cff"], "each other variant minus FF and each pair of "
                           "primary variants (A-CFF − F-CFF); no other pair is tested")):
        plan = resolve_plan(AnalysisSection(primary=primary))
        assert secondary_pairs_text(plan) == text
        secondary = {(p["variant"], p["minus"]) for p in contrasts._pairs(planned, runs, plan, [])
                     if p["role"] == "secondary"}
        expected = {(v, "ff") for v in ("f-cff", "a-cff", "bp") if v not in primary}
        if len(primary) > 1:
            expected.add(("a-cff", "f-cff"))
        assert secondary == expected


def test_the_cd_diagram_says_when_no_pair_can_be_significant():
    # exact signed-rank p >= 2/2^n; Holm's first step over 10 pairs: 10 * 2/2^7 = .156 > .05,
    # 10 * 2/2^9 = .039 < .05
    note = _cd_floor_note(7, 10)
    assert "10 · 2/2^7 = .156" in note and "9 blocks are needed" in note
    assert _cd_floor_note(9, 10) == ""
