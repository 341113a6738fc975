"""The LaTeX tables fit the page: as they are when they fit, wrapped (text) and stacked (numbers)
when not, turned when even that would need unreadable scaling; checked by compiling where
pdflatex is installed (tables of the interim paper_mnist report, 23 of 35 runs)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from cffbench.report.latex import TEXT_WIDTH_PT, fit, layout, to_latex
from cffbench.report.tables import Table
from test_report_tables import check_latex

GUARD = r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%"


def _narrow() -> Table:
    return Table("ablation", "Test accuracy [%] by θ placement",
                 ["Dataset", "Variant", "θ placement = per_term", "θ placement = single"],
                 [["mnist", "F-CFF", "93.46 ± 0.51 (5)", "92.41 ± 0.37 (5)"],
                  ["mnist", "A-CFF", "91.14 ± 0.25 (4)", "92.12 ± 0.32 (4)"]], bold={(0, 2)})


def _effects() -> Table:
    rows = [["A-CFF − FF", f"theta_placement = {t}", n, p, d, sd, seeds]
            for t, n, p, d, sd, seeds in (
                ("per_term", "4", ".00 [.00, .49]", "−4.85", "0.23", "3 [3–8] (small pilot)"),
                ("single", "4", ".00 [.00, .49]", "−1.54", "0.27", "4 [3–10] (small pilot)"),
                ("per_term", "5", ".80 [.38, .96]", "0.99", "0.59", "6 [4–22] (small pilot)"))]
    return Table("effects", "mnist: effect sizes and seeds needed",
                 ["comparison", "at", "n", "P(improvement) [95 % Wilson]", "d_z (corrected)",
                  "SD of diff. [pp]", "seeds needed [95 %]"], rows, note="Plan 646445919ec8.")


def _contrasts() -> Table:
    rows = [["A-CFF − FF", f"theta_placement = {t}", "4", verdict, diff, sim, p, p_adj, decision,
             ".001", ".972"]
            for t, verdict, diff, sim, p, p_adj, decision in (
                ("per_term", "worse than FF", "−1.55 [−1.92, −1.18]", "[−2.03, −1.07]",
                 "< .001", ".002", "significant"),
                ("single", "(secondary)", "+0.73 [+0.00, +1.47]", "[−0.19, +1.65]", ".049", ".099",
                 "not significant"))]
    return Table("contrasts", "mnist: contrasts of the analysis plan",
                 ["comparison", "at", "n", "verdict", "difference [pp] (95 % CI)",
                  "simultaneous CI [pp]", "p", "p_adj", "decision", "p (Δ ≥ SESOI)", "p (TOST)"],
                 rows, note="Plan 646445919ec8.", label_columns=4, text_columns=frozenset({8}))


def _tabular_spec(text: str) -> str:
    return re.search(r"\\begin\{tabular\}\{((?:[^{}]|\{[^{}]*\})*)\}", text).group(1)


def test_a_table_that_fits_is_set_as_it_is():
    text = to_latex(_narrow())
    assert _tabular_spec(text) == "llrr"
    assert r"\small" in text and r"\tabcolsep" not in text and r"\rotatebox" not in text
    # the guard scales only a table wider than the line
    assert GUARD in text and r"\textbf{93.46 $\pm$ 0.51 (5)}" in text
    assert check_latex(text) == []


def test_a_wide_table_wraps_its_text_and_stacks_a_number_only_before_its_interval():
    lay = layout(_effects())
    assert not lay.turned and lay.width_pt <= TEXT_WIDTH_PT
    text = to_latex(_effects())
    spec = _tabular_spec(text)
    assert re.fullmatch(r"lp\{[\d.]+em\}rrrrr", spec), spec       # the "at" column wraps
    assert r"\setlength{\tabcolsep}{4pt}" in text
    # "3 [3–8] (small pilot)" breaks before its bracket, never inside "3 [3--8]"
    assert r"\begin{tabular}[t]{@{}r@{}}3 [3--8]\tabularnewline{}(small pilot)\end{tabular}" in text
    assert r"\raggedright theta\_placement = per\_term" in text
    assert text.count(r"\\") == 1 + len(_effects().rows)      # each "\\" ends a row: header + rows
    assert check_latex(text) == []


def test_a_wrapped_label_never_breaks_a_difference_or_before_a_percent():
    label = "A-CFF (α uniform, θ placement per_term) − FF, a share of 95 % of the seeds"
    table = Table("t", "c", ["comparison", *(f"value {k}" for k in range(6))],
                  [[label, *["−1.55 [−1.92, −1.18]"] * 6]], label_columns=1)
    text = to_latex(table)
    assert _tabular_spec(text).startswith("p{")
    assert r"per\_term)~$-$~FF" in text and r"95~\%" in text
    assert check_latex(text) == []


def test_a_table_too_wide_to_read_upright_is_turned_onto_its_own_page():
    table = _contrasts()
    upright_scale = TEXT_WIDTH_PT / fit(table, TEXT_WIDTH_PT).width_pt
    assert upright_scale < 0.85                                  # upright: under 6.8 pt type
    text = to_latex(table)
    assert text.startswith("\\begin{table}[p]")
    assert r"\rotatebox{90}{\begin{minipage}{0.99\textheight}" in text
    assert r"\caption{mnist: contrasts of the analysis plan}" in text
    assert check_latex(text) == []


def _compile(tmp_path, name: str, body: str, options: str = "") -> subprocess.CompletedProcess:
    (tmp_path / f"{name}.tex").write_text(
        f"\\documentclass{options}{{article}}\n\\usepackage{{booktabs}}\n\\usepackage{{graphicx}}\n"
        f"\\pagestyle{{empty}}\n\\begin{{document}}\n{body}\n\\end{{document}}\n", encoding="ascii")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", f"{name}.tex"],
                          cwd=tmp_path, capture_output=True, text=True, errors="replace", timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
    return done


@pytest.mark.skipif(shutil.which("pdflatex") is None or shutil.which("pdftotext") is None,
                    reason="needs pdflatex and pdftotext")
@pytest.mark.parametrize("options", ["", "[a4paper]", "[twocolumn]"])
def test_every_table_stays_inside_the_text_block_when_compiled(tmp_path, options):
    # "L" and "R" mark the text block's edges; every word of every page must lie between them
    tables = [_narrow(), _effects(), _contrasts()]
    body = "\\noindent L\\hfill R\\par\n" + "\n\\clearpage\n".join(to_latex(t) for t in tables)
    _compile(tmp_path, "doc", body, options)
    bbox = subprocess.run(["pdftotext", "-bbox", "doc.pdf", "-"], cwd=tmp_path, capture_output=True,
                          text=True, check=True).stdout
    words = re.findall(r'xMin="([\d.]+)" yMin="[\d.]+" xMax="([\d.]+)" yMax="[\d.]+">([^<]*)<', bbox)
    left = next(float(x0) for x0, _, w in words if w == "L")
    right = next(float(x1) for _, x1, w in words if w == "R")
    outside = [w for x0, x1, w in words if float(x0) < left - 0.5 or float(x1) > right + 0.5]
    assert outside == []
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert "Overfull" not in log and "Float too large" not in log


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="needs pdflatex")
def test_the_width_estimate_holds_so_a_fitted_table_is_barely_scaled(tmp_path):
    # the tabulars measured unscaled: within 3 % of the text width (upright) or height (turned)
    tables = [_narrow(), _effects(), _contrasts()]
    body = []
    for table in tables:
        text = to_latex(table).replace(GUARD + "\n\\begin{tabular}", "\\sbox0{%\n\\begin{tabular}")
        text = text.replace("\\end{tabular}}\n", "\\end{tabular}}"
                            f"\\typeout{{WIDTH {table.key} \\the\\wd0}}\\usebox0\n")
        body.append(text)
    log = _compile(tmp_path, "measure", "\n\\clearpage\n".join(body)).stdout
    widths = {k: float(w) for k, w in re.findall(r"WIDTH (\w+) ([\d.]+)pt", log)}
    assert set(widths) == {"ablation", "effects", "contrasts"}
    for table in tables:
        room = 0.99 * 550.0 if layout(table).turned else TEXT_WIDTH_PT
        assert widths[table.key] <= 1.03 * room, (table.key, widths[table.key])
