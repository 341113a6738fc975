"""One analysis, the same answer everywhere, and that answer right: every number of every output
(the saved analysis, the HTML report, the LaTeX tables, the findings text, summary.txt) is
checked against a recomputation from the raw stored accuracies that shares no code with cffbench:
pandas for the pairing and the descriptives, scipy's ttest_rel / ttest_1samp / wilcoxon /
permutation_test, statsmodels' multipletests (Holm), ttost_paired and TTestPower, and a formatter
written here from the APA rules the outputs follow."""

from __future__ import annotations

import re

import math

import numpy as np
import pandas as pd
import pytest
from bs4 import BeautifulSoup
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import ttost_paired

from cffbench.analysis import analyze_results, load
from cffbench.report import build_report
from cffbench.report.findings import findings_block
from conftest import html_table_rows
from test_report_store import write_synthetic_store

ALPHA, SESOI, MARGIN, POWER = 0.05, 0.012, 0.012, 0.8   # the default plan
DATASETS = ("mnist", "fashion-mnist")
THETAS = ("per_term", "single")


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("consistency") / "synthetic-study"
    write_synthetic_store(root, datasets=DATASETS, variants=("ff", "f-cff", "a-cff", "bp"),
                          seeds=range(6), hidden=(20, 20), epochs=3, sd=0.006,
                          thetas=THETAS, single_theta_gain=0.01)
    analyze_results(root)                                  # cffbench analyze: saves the one analysis
    written = build_report(root, out=root.parent / "report", formats="html,latex")
    html = BeautifulSoup(written["html"].read_text(encoding="utf-8"), "html5lib")
    return root, written, html, findings_block(root)


# -- the independent recomputation ------------------------------------------------------------

def _raw(root) -> pd.DataFrame:
    runs = pd.concat(pd.read_parquet(p) for p in sorted((root / "runs").glob("*.parquet")))
    return runs[runs["status"] == "ok"]


def _seeds(sd: float, n: int, m: int) -> tuple[int, int, int]:
    """Seeds a paired t at alpha/m needs for power .8 at the SESOI (statsmodels), for the SD and
    the ends of its chi-square 95 % interval."""
    df = n - 1
    sds = (sd, sd * math.sqrt(df / sps.chi2.isf(0.025, df)), sd * math.sqrt(df / sps.chi2.ppf(0.025, df)))
    out = []
    for s in sds:
        k = 2
        while TTestPower().power(effect_size=SESOI / s, nobs=k, alpha=ALPHA / m) < POWER:
            k += 1
        out.append(k)
    return tuple(out)


def truth(root) -> pd.DataFrame:
    """Every primary contrast (each CFF variant − FF at each θ placement, per dataset) with its
    test, CIs, Holm over the dataset's four, minimum-effect, TOST, verdict and seeds needed."""
    runs = _raw(root)
    rows = []
    for dataset in DATASETS:
        part = runs[runs["dataset"] == dataset]
        ff = part[part["variant"] == "ff"].set_index("seed")["test_acc"].sort_index()
        family = []
        for variant in ("f-cff", "a-cff"):
            for theta in THETAS:
                cff = part[(part["variant"] == variant) & (part["theta_placement"] == theta)]
                cff = cff.set_index("seed")["test_acc"].sort_index()
                d = (cff - ff).to_numpy()
                test = sps.ttest_rel(cff, ff)
                ci, sim = test.confidence_interval(0.95), test.confidence_interval(1 - ALPHA / 4)
                family.append({
                    "dataset": dataset, "variant": variant, "label": f"{variant.upper()} − FF",
                    "scope": f"theta_placement = {theta}", "n": len(d), "estimate": d.mean(),
                    "ci_low": ci.low, "ci_high": ci.high, "sim_low": sim.low, "sim_high": sim.high,
                    "p": test.pvalue, "p_me": sps.ttest_1samp(d, SESOI, alternative="less").pvalue,
                    "p_tost": ttost_paired(cff.to_numpy(), ff.to_numpy(), -MARGIN, MARGIN)[0],
                    "sd": d.std(ddof=1),
                    "wilcoxon_p": sps.wilcoxon(d, method="exact").pvalue,
                    "flip_p": sps.permutation_test((d,), np.mean, permutation_type="samples",
                                                   n_resamples=np.inf).pvalue})
        for column in ("p", "p_me", "p_tost"):
            adjusted = multipletests([r[column] for r in family], method="holm")[1]
            for r, value in zip(family, adjusted):
                r[f"{column}_adj"] = value
        for r in family:
            significant = r["p_adj"] < ALPHA
            r["decision"] = "significant" if significant else "not significant"
            if significant:
                r["verdict"] = "confirmed" if r["estimate"] > 0 else "worse than FF"
            elif r["p_tost_adj"] < ALPHA:
                r["verdict"] = "equivalent to FF"
            elif r["p_me_adj"] < ALPHA:
                r["verdict"] = "claimed size ruled out"
            else:
                r["verdict"] = "inconclusive"
            r["seeds"] = _seeds(r["sd"], r["n"], 4)
        rows += family
    return pd.DataFrame(rows)


def pp(x: float) -> str:
    text = f"{100 * x:+.2f}"
    return ("+0.00" if text in ("-0.00", "+0.00") else text).replace("-", "\u2212")


def apa_p(p: float) -> str:
    """APA table cell: no leading zero, three decimals, < .001, > .999."""
    if p < 0.001:
        return "< .001"
    if p > 0.999:
        return "> .999"
    return f"{p:.3f}".lstrip("0")


def cells(t) -> list[str]:
    """The contrast-table row (comparison, at, n, verdict, difference (CI), simultaneous CI, p,
    p_adj, decision, p (Δ ≥ SESOI), p (TOST)) the outputs must show for ``t``."""
    return [t.label, t.scope, str(t.n), t.verdict, f"{pp(t.estimate)} [{pp(t.ci_low)}, {pp(t.ci_high)}]",
            f"[{pp(t.sim_low)}, {pp(t.sim_high)}]", apa_p(t.p), apa_p(t.p_adj), t.decision,
            apa_p(t.p_me), apa_p(t.p_tost)]


def verdict_line(t) -> str:
    text = t.verdict
    if t.verdict == "confirmed" and t.p_me_adj < ALPHA:
        text = "confirmed, but smaller than the claimed size (minimum-effect test rejects)"
    if t.verdict == "inconclusive":
        needed, low, high = t.seeds
        text = f"inconclusive — about {needed} seeds would decide it (95 %: {low}–{high}; this study has {t.n})"
    p_adj = apa_p(t.p_adj)
    p_adj = f"p_adj {p_adj}" if p_adj[0] in "<>" else f"p_adj = {p_adj}"
    return (f"{t.dataset}, {t.label} ({t.scope}): {text}; Δ = {pp(t.estimate)} "
            f"[{pp(t.ci_low)}, {pp(t.ci_high)}] pp, {p_adj}")


def latex(cell: str) -> str:
    """The few characters of these cells in LaTeX."""
    return (cell.replace("_", r"\_").replace("\u2212", "$-$").replace("<", "$<$").replace(">", "$>$"))


@pytest.fixture(scope="module")
def expected(outputs):
    return truth(outputs[0])


# -- the checks ----------------------------------------------------------------------------

def _html_rows(soup, key):
    return html_table_rows(soup.find(id=f"tab-{key}").find("table"))


def test_the_saved_analysis_holds_the_independent_numbers(outputs, expected):
    saved = load(outputs[0] / "analysis")
    primary = saved.primary.set_index(["dataset", "label", "scope"])
    assert len(primary) == len(expected) == 8
    for t in expected.itertuples():
        r = primary.loc[(t.dataset, t.label, t.scope)]
        for ours, theirs in (("estimate", "estimate"), ("ci_low", "ci_low"), ("ci_high", "ci_high"),
                             ("ci_adj_low", "sim_low"), ("ci_adj_high", "sim_high"), ("p", "p"),
                             ("p_adj", "p_adj"), ("p_me", "p_me"), ("p_me_adj", "p_me_adj"),
                             ("p_tost", "p_tost"), ("p_tost_adj", "p_tost_adj"), ("sd_diff", "sd")):
            assert r[ours] == pytest.approx(getattr(t, theirs), rel=1e-9, abs=1e-15), ours
        assert (r["family_size"], r["decision"], r["verdict"]) == (4, t.decision, t.verdict)
        assert (r["seeds_needed"], r["seeds_low"], r["seeds_high"]) == t.seeds
    sensitivity = saved.sensitivity.set_index(["dataset", "label", "scope", "test"])
    for t in expected.itertuples():
        assert sensitivity.loc[(t.dataset, t.label, t.scope, "wilcoxon"), "p"] == pytest.approx(t.wilcoxon_p, rel=1e-12)
        assert sensitivity.loc[(t.dataset, t.label, t.scope, "permutation"), "p"] == pytest.approx(t.flip_p, rel=1e-12)


def _tex_cells_as_text(tex: str) -> str:
    """The LaTeX table with its layout markup taken out of the cells (cffbench.report.latex wraps
    text cells ragged-right and stacks an interval under its estimate in a one-column tabular),
    so a row reads as its cells joined by " & "."""
    tex = re.sub(r"\\begin\{tabular\}\[t\]\{@\{\}[lrc]@\{\}\}(.*?)\\tabularnewline\{\}(.*?)\\end\{tabular\}",
                 r"\1 \2", tex)
    return tex.replace("\\raggedright ", "")


def test_every_output_shows_the_independent_contrast_rows(outputs, expected):
    root, written, html, block = outputs
    for dataset in DATASETS:
        key = dataset.replace("-", "_")
        html_rows = _html_rows(html, f"contrasts_{key}")
        tex = _tex_cells_as_text((written["latex"] / f"contrasts_{key}.tex").read_text(encoding="utf-8"))
        for t in expected[expected["dataset"] == dataset].itertuples():
            row = cells(t)
            assert row in html_rows                                        # HTML
            assert " & ".join(latex(c) for c in row) + r" \\" in tex       # LaTeX
            assert "| " + " | ".join(row) + " |" in block                  # findings
    summary = (root / "analysis" / "summary.txt").read_text(encoding="utf-8")
    lines = [verdict_line(t) for t in expected.itertuples()]
    assert [" ".join(li.get_text().split()) for li in html.select("#verdicts ul.verdicts li")] == lines
    for line in lines:
        assert f"- {line}" in block and f"  {line}" in summary


def test_every_output_shows_the_independent_descriptives(outputs):
    root, written, html, block = outputs
    runs = _raw(root)
    paper = _html_rows(html, "paper")
    tex = (written["latex"] / "paper.tex").read_text(encoding="utf-8")
    labels = {"ff": "FF", "f-cff": "F-CFF", "a-cff": "A-CFF", "bp": "BP"}
    for (dataset, variant, theta), group in runs.groupby(
            ["dataset", "variant", runs["theta_placement"].fillna("—")]):
        acc = group["test_acc"]
        mean, sd, n = 100 * acc.mean(), 100 * acc.std(ddof=1), len(acc)
        half = sps.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
        condition = labels[variant] + ("" if theta == "—" else f" (θ placement {theta})")
        row = f"| {dataset} | {condition} | {mean:.2f} ± {sd:.2f} | [{mean - half:.2f}, {mean + half:.2f}] | {n} |"
        assert row in block                                                 # findings
        if theta in ("—", "per_term"):                                     # the main configuration
            cell = f"{mean:.2f} ± {sd:.2f} ({n})"
            assert [dataset, labels[variant], cell, f"[{mean - half:.2f}, {mean + half:.2f}]"] in \
                [r[:4] for r in paper]                                     # HTML
            tex_cell = cell.replace("±", r"$\pm$")
            assert f"{dataset} & {labels[variant]} & {tex_cell} & " in tex          # LaTeX


def test_the_plan_hash_is_in_every_output(outputs):
    root, written, html, block = outputs
    plan_hash = load(root / "analysis").plan.hash
    for name in ("contrasts", "sensitivity"):
        assert set(pd.read_csv(root / "analysis" / f"{name}.csv")["plan_hash"]) == {plan_hash}
    assert plan_hash in html.get_text() and plan_hash in block
    assert plan_hash in (root / "analysis" / "summary.txt").read_text(encoding="utf-8")
    for dataset in DATASETS:
        assert plan_hash in (written["latex"] / f"contrasts_{dataset.replace('-', '_')}.tex").read_text()


def test_a_stale_saved_analysis_is_never_rendered(outputs, tmp_path):
    import shutil

    from cffbench.analysis import load_or_analyze

    root = outputs[0]
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
