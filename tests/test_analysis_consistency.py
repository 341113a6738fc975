"""One analysis, computed once: each primary contrast's estimate, CI, p and decision are the same
in the saved analysis (analysis/contrasts.parquet), the HTML report, the LaTeX tables and the
findings text, and the plan's hash is printed in every one of them."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from bs4 import BeautifulSoup
from scipy import stats as sps

from cffbench import fmt
from cffbench.analysis import analyze_store, load
from cffbench.analysis.render import contrast_cells, verdict_lines
from cffbench.report import build_report
from cffbench.report.findings import findings_block
from cffbench.analysis import analyze_results
from test_report_store import write_synthetic_store


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("consistency") / "synthetic-study"
    write_synthetic_store(root, datasets=("mnist", "fashion-mnist"), variants=("ff", "f-cff", "a-cff", "bp"),
                          seeds=range(6), hidden=(20, 20), epochs=3, sd=0.006,
                          thetas=("per_term", "single"), single_theta_gain=0.01)
    analyze_results(root)                                  # cffbench analyze: saves the one analysis
    written = build_report(root, out=root.parent / "report", formats="html,latex")
    return root, written, findings_block(root)


def _html_rows(soup, key):
    table = soup.find(id=f"tab-{key}").find("table")
    return [[td.get_text(strip=True) for td in tr.find_all("td")] for tr in table.find_all("tr")[1:]]


def test_saved_analysis_is_the_analysis_of_the_store(outputs):
    root, _, _ = outputs
    saved = load(root / "analysis")
    fresh = analyze_store(root)
    pd.testing.assert_frame_equal(saved.contrasts, fresh.contrasts)
    pd.testing.assert_frame_equal(saved.sensitivity, fresh.sensitivity)
    assert json.loads((root / "analysis" / "plan.json").read_text())["plan_hash"] == fresh.plan.hash


def test_each_primary_contrast_reads_the_same_in_every_output(outputs):
    root, written, block = outputs
    saved = load(root / "analysis")
    soup = BeautifulSoup(written["html"].read_text(encoding="utf-8"), "html5lib")
    runs = pd.read_parquet(root / "runs")
    runs = runs[runs["status"] == "ok"]
    for dataset in ("mnist", "fashion-mnist"):
        key = dataset.replace("-", "_")
        html_rows = _html_rows(soup, f"contrasts_{key}")
        tex = (written["latex"] / f"contrasts_{key}.tex").read_text(encoding="utf-8")
        primary = saved.primary[saved.primary["dataset"] == dataset]
        assert len(primary) == 4
        for r in primary.to_dict("records"):
            cells = contrast_cells(r)
            label, scope, n, verdict, diff, simultaneous, p, p_adj, decision = cells[:9]
            # the cells are the saved numbers, formatted once
            assert diff == f"{fmt.pp(r['estimate'])} [{fmt.pp(r['ci_low'])}, {fmt.pp(r['ci_high'])}]"
            assert (p, p_adj) == (fmt.p_cell(r["p"]), fmt.p_cell(r["p_adj"]))
            # ... and the saved p is the paired t of the stored runs (scipy)
            theta = scope.split(" = ")[1]
            ff = runs[(runs["dataset"] == dataset) & (runs["variant"] == "ff")].set_index("seed")["test_acc"]
            cff = runs[(runs["dataset"] == dataset) & (runs["variant"] == r["variant"])
                       & (runs["theta_placement"] == theta)].set_index("seed")["test_acc"]
            assert r["p"] == pytest.approx(sps.ttest_rel(cff.sort_index(), ff.sort_index()).pvalue, rel=1e-10)
            assert cells in html_rows                                           # HTML
            assert " & ".join(fmt.latex_escape(c) for c in cells) + r" \\" in tex  # LaTeX
            assert "| " + " | ".join(cells) + " |" in block                      # findings
        assert saved.plan.hash in tex
    verdicts = [li.get_text(strip=True) for li in soup.select("#verdicts ul.verdicts li")]
    assert verdicts == verdict_lines(saved)
    for line in verdict_lines(saved):
        assert f"- {line}" in block
    assert saved.plan.hash in soup.get_text() and saved.plan.hash in block
    assert saved.plan.hash in (root / "analysis" / "summary.txt").read_text(encoding="utf-8")


def test_the_plan_hash_is_in_every_saved_table(outputs):
    root, _, _ = outputs
    saved = load(root / "analysis")
    for name in ("contrasts", "sensitivity"):
        frame = pd.read_csv(root / "analysis" / f"{name}.csv")
        assert set(frame["plan_hash"]) == {saved.plan.hash}


def test_a_stale_saved_analysis_is_never_rendered(outputs, tmp_path):
    import shutil

    from cffbench.analysis import load_or_analyze

    root, _, _ = outputs
    copy = tmp_path / "synthetic-study"
    shutil.copytree(root, copy)
    saved_hash = load(copy / "analysis").plan.hash
    assert load_or_analyze(copy).plan.hash == saved_hash            # fresh: the saved object
    study = copy / "study.toml"
    study.write_text(study.read_text(encoding="utf-8") + '\n[analysis]\nmargin_pp = 0.5\n', encoding="utf-8")
    changed = load_or_analyze(copy)                                   # another plan: recomputed
    assert changed.plan.hash != saved_hash and changed.plan.margin == pytest.approx(0.005)
    study.write_text(study.read_text(encoding="utf-8").replace("margin_pp = 0.5", ""), encoding="utf-8")
    first = sorted((copy / "runs").glob("*.parquet"))[0]
    first.unlink()                                                    # other runs: recomputed
    assert load_or_analyze(copy).runs_hash != load(copy / "analysis").runs_hash
