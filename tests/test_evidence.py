"""The committed release evidence regenerates from its committed Parquet stores:
report tables (LaTeX), the HTML report's text and tables, the analysis CSVs and plan, byte for
byte, and the numbers of docs/findings.md (scripts/evidence.sh is the one command that rebuilds
them all). Figures are compared by what they show (the tables and numbers beside them), not by
SVG bytes, which change with any matplotlib or seaborn release."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cffbench.report import build_report
from cffbench.report.findings import embedded_blocks, findings_block
from cffbench.report.store import load_inputs, runs_end_epoch
from cffbench.analysis import analyze_results

REPO = Path(__file__).resolve().parents[1]
STUDIES = ("paper_mnist", "replication_cpu", "alpha_ablation", "goodness_plugins", "lorberbom")


_SVG = re.compile(rb"<svg\b.*?</svg>", re.S)


def _without_figures(html: bytes) -> bytes:
    """The HTML with every inline SVG replaced by a marker (its caption stays)."""
    return _SVG.sub(b"<svg/>", html)


def _files(root: Path, pattern: str) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob(pattern))}


@pytest.mark.slow
@pytest.mark.parametrize("study", STUDIES)
def test_committed_report_regenerates_byte_for_byte(study, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)                       # the report names its results folder as given
    results = Path("results") / study
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(runs_end_epoch(load_inputs(results).runs)))
    written = build_report(results, out=tmp_path / study, formats="html,latex")
    committed = REPO / "reports" / study
    tables = _files(committed / "tables", "*.tex")
    assert tables, f"reports/{study}/tables holds no LaTeX table"
    assert _files(written["latex"], "*.tex") == tables
    assert _without_figures(written["html"].read_bytes()) == _without_figures(
        (committed / "report.html").read_bytes())
    assert sorted(p.name for p in (written["figures"]).glob("*.svg")) == sorted(
        p.name for p in (committed / "figures").glob("*.svg"))
    assert (committed / "report.pdf").read_bytes().startswith(b"%PDF")


@pytest.mark.slow
@pytest.mark.parametrize("study", STUDIES)
def test_committed_analysis_tables_regenerate_byte_for_byte(study, tmp_path):
    results = REPO / "results" / study
    analyze_results(results, out=tmp_path / "analysis")
    committed = _files(results / "analysis", "**/*.csv")
    assert committed, f"results/{study}/analysis holds no table"
    assert _files(tmp_path / "analysis", "**/*.csv") == committed
    assert (tmp_path / "analysis" / "plan.json").read_bytes() == (results / "analysis" / "plan.json").read_bytes()


def test_committed_findings_equal_a_fresh_computation_from_the_committed_stores():
    # Nothing in docs/findings.md is stated without the number behind it: its generated blocks
    # are recomputed here from results/<study>/ (the committed Parquet) and must match exactly.
    page = (REPO / "docs" / "findings.md").read_text(encoding="utf-8")
    blocks = embedded_blocks(page)
    assert {"paper_mnist", "replication_cpu", "alpha_ablation"} <= set(blocks)
    for study, text in blocks.items():
        assert text == findings_block(REPO / "results" / study), study
