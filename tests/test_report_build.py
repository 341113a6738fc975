"""End-to-end report builds on synthetic run stores: HTML, PDF and LaTeX outputs, degenerate
studies, and the CLI's one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import re

import matplotlib.image as plt_image
import pandas as pd
import pytest
from bs4 import BeautifulSoup
from scipy import stats as sps

from cffbench.report import build_report
from conftest import html_table_rows
from test_report_store import write_synthetic_store
from test_report_tables import check_latex

PYTHON = sys.executable


def _soup(path: Path) -> BeautifulSoup:
    return BeautifulSoup(path.read_text(encoding="utf-8"), "html5lib")


def _table_rows(soup: BeautifulSoup, key: str) -> list[list[str]]:
    return html_table_rows(soup.find(id=f"tab-{key}").find("table"))


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    """Two datasets, four variants, 5 seeds, α ∈ {uniform, learned} at depth 2, one failed and
    one diverged A-CFF run; all three formats."""
    root = tmp_path_factory.mktemp("results")
    write_synthetic_store(root, seeds=range(5), alphas=("uniform", "learned"), hidden=(50, 50),
                          failed=1, diverged=1, epochs=12)
    out = root.parent / "report"
    return root, build_report(root, out=out)


@pytest.mark.slow
def test_build_report_writes_every_format(full_report):
    _, written = full_report
    assert written["html"].name == "report.html" and written["pdf"].name == "report.pdf"
    assert sorted(p.name for p in written["latex"].glob("*.tex"))
    svgs = sorted(written["figures"].glob("*.svg"))
    assert svgs and len(svgs) == len(list(written["figures"].glob("*.png")))


@pytest.mark.slow
def test_html_parses_and_embeds_every_figure_as_inline_svg(full_report):
    _, written = full_report
    soup = _soup(written["html"])
    figures = soup.select("figure.plot")
    assert len(figures) == len(list(written["figures"].glob("*.svg")))
    for figure in figures:
        svg = figure.find("svg")
        assert svg is not None and len(svg.find_all(["path", "use", "rect"])) > 10, figure.get("id")
    assert not soup.find_all(src=True), "report must not load external files"
    assert not soup.find_all("link", rel="stylesheet")
    ids = [tag["id"] for tag in soup.find_all(id=True)]
    assert len(ids) == len(set(ids)), "inline SVGs must not share element ids"


@pytest.mark.slow
def test_paper_table_matches_the_stored_runs_and_the_published_values(full_report):
    root, written = full_report
    runs = pd.concat([pd.read_parquet(p) for p in (root / "runs").glob("*.parquet")])
    ff = runs[(runs.dataset == "mnist") & (runs.variant == "ff") & (runs.status == "ok")]["test_acc"]
    low, high = sps.t.interval(0.95, len(ff) - 1, loc=ff.mean(), scale=sps.sem(ff))
    rows = {(r[0], r[1]): r for r in _table_rows(_soup(written["html"]), "paper")}
    assert rows[("mnist", "FF")][2] == f"{100 * ff.mean():.2f} ± {100 * ff.std():.2f} ({len(ff)})"
    assert rows[("mnist", "FF")][3] == f"[{100 * low:.2f}, {100 * high:.2f}]"
    assert rows[("mnist", "FF")][4] == "92.60"
    assert rows[("mnist", "FF")][5] == f"{100 * ff.mean() - 92.6:+.2f}".replace("-", "\u2212")
    assert rows[("mnist", "FF")][6] == ("yes" if low <= 0.926 <= high else "no")
    assert rows[("mnist", "A-CFF")][4] == "93.80"
    assert all(r[4] == "" for k, r in rows.items() if k not in {("mnist", "FF"), ("mnist", "A-CFF")})


@pytest.mark.slow
def test_pairwise_difference_reads_later_minus_earlier_variant(full_report):
    root, written = full_report
    runs = pd.concat([pd.read_parquet(p) for p in (root / "runs").glob("*.parquet")])
    ok = runs[(runs.dataset == "fashion-mnist") & (runs.status == "ok")
              & (runs.alpha.isna() | (runs.alpha == "uniform"))]
    wide = ok.pivot(index="seed", columns="variant", values="test_acc").dropna()
    expected = 100 * (wide["a-cff"] - wide["ff"]).mean()
    rows = {(r[0], r[1]): r for r in _table_rows(_soup(written["html"]), "contrasts_fashion_mnist")}
    assert rows[("A-CFF − FF", "alpha = uniform")][4].startswith(f"{expected:+.2f} [".replace("-", "\u2212"))


@pytest.mark.slow
def test_report_warns_about_depth_two_alpha_diverged_and_failed_runs(full_report):
    _, written = full_report
    soup = _soup(written["html"])
    warnings = soup.find(id="warnings").get_text(" ", strip=True)
    assert "Two hidden layers make the normalised α structures identical" in warnings
    assert "1 diverged run(s) are excluded" in warnings
    assert "1 run(s) failed" in warnings
    appendix = soup.find(id="appendix").get_text(" ", strip=True)
    assert "CUDA out of memory (synthetic)" in appendix and "diverged" in appendix


@pytest.mark.slow
def test_report_leads_with_verdicts_and_keeps_omnibus_tests_as_diagnostics(full_report):
    _, written = full_report
    soup = _soup(written["html"])
    first = soup.find("section", id=True)
    assert first["id"] in ("warnings", "verdicts")
    verdicts = soup.find(id="verdicts").get_text(" ", strip=True)
    assert "Analysis plan" in verdicts and "A-CFF − FF" in verdicts
    stats_text = soup.find(id="statistics").get_text(" ", strip=True)
    assert "How the tests were chosen." in stats_text and "normality (diagnostic only)" in stats_text.lower()
    assert soup.find(id="tab-omnibus_fashion-mnist") is not None
    assert "you need" not in stats_text and "p_holm" not in stats_text   # no second answer for a pair
    for row in _table_rows(soup, "contrasts_fashion_mnist"):
        for p_cell in row[6:8]:
            assert re.fullmatch(r"< \.001|\.\d{3}|> \.999|undefined", p_cell), p_cell


@pytest.mark.slow
def test_alpha_ablation_has_two_way_table_test_and_interaction_plot(full_report):
    _, written = full_report
    soup = _soup(written["html"])
    ablation = soup.find(id="ablations")
    assert ablation.find(id="tab-ablation_alpha") is not None
    assert ablation.find(id="fig-interaction_alpha").find("svg") is not None
    assert "variant × α structure" in ablation.get_text()


@pytest.mark.slow
def test_png_figures_are_not_blank(full_report):
    _, written = full_report
    for path in written["figures"].glob("*.png"):
        pixels = plt_image.imread(path)[..., :3]
        assert (pixels < 0.5).mean() > 0.005, f"{path.name} is (almost) empty"


@pytest.mark.slow
def test_pdf_pages_hold_the_tables_as_text(full_report):
    _, written = full_report
    info = subprocess.run(["pdfinfo", str(written["pdf"])], capture_output=True, text=True,
                          check=True).stdout
    pages = int(next(line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")))
    assert 3 <= pages <= 24   # the plan's contrast, effect and sensitivity tables per dataset
    text = subprocess.run(["pdftotext", "-layout", str(written["pdf"]), "-"], capture_output=True,
                          text=True, check=True).stdout
    assert "Test accuracy per dataset and variant" in text
    assert "92.60" in text and "93.80" in text
    assert "contrasts of the analysis plan" in text
    assert f"page {pages} of {pages}" in text


@pytest.mark.slow
def test_pdf_keeps_each_table_on_one_page(full_report):
    _, written = full_report
    soup = _soup(written["html"])
    for key in ("paper", "contrasts_mnist", "ablation_alpha"):
        caption = soup.find(id=f"tab-{key}").find("figcaption").get_text(strip=True)
        cells = [r[2] for r in _table_rows(soup, key)]
        pages = [p for p in _pdf_pages(written["pdf"])
                 if re.search(rf"^\s*{re.escape(caption)}", p, re.MULTILINE)]
        assert len(pages) == 1, key
        assert all(cell in pages[0] for cell in cells), f"{key} is split across pages"


@pytest.mark.slow
def test_pdf_shows_every_cell_of_the_sensitivity_tables(full_report):
    # its text columns ("inverted sign-flip CI; exact (all 2^5 sign flips)", "not significant;
    # inconclusive", YES) once sat in no-wrap number cells and ran off the A4 page, unprinted
    _, written = full_report
    soup = _soup(written["html"])
    text = " ".join(_pdf_pages(written["pdf"]))
    words = set(text.split())
    for key in ("sensitivity_mnist", "sensitivity_fashion_mnist"):
        table = soup.find(id=f"tab-{key}").find("table")
        headers = [th.get_text(strip=True) for th in table.find_all("th")]
        assert headers[-1] == "changes the decision"
        first = table.find("tbody").find("tr").find_all("td")
        assert [headers[j] for j, td in enumerate(first) if "num" in (td.get("class") or [])] == [
            "estimate [pp] (95 % CI)", "p", "p_adj"]
        for row in _table_rows(soup, key):
            for cell in row[-3:]:
                missing = [w for w in cell.split() if w not in words]
                assert not missing, f"{key}: {cell!r} not printed in the PDF ({missing})"


def _pdf_pages(path: Path) -> list[str]:
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True,
                          text=True, check=True).stdout
    return text.split("\f")


@pytest.mark.slow
def test_latex_tables_are_balanced_booktabs(full_report):
    _, written = full_report
    files = sorted(written["latex"].glob("*.tex"))
    assert {"paper.tex", "ablation_alpha.tex"} <= {f.name for f in files}
    for path in files:
        text = path.read_text()
        assert check_latex(text) == [], path.name
        assert r"\toprule" in text and r"\bottomrule" in text and "siunitx" not in text


@pytest.mark.slow
def test_one_variant_study_reports_that_nothing_can_be_compared(tmp_path):
    root = write_synthetic_store(tmp_path / "r", datasets=("mnist",), variants=("ff",),
                                 seeds=range(3), epochs=5)
    written = build_report(root, out=tmp_path / "out", formats="html")
    text = _soup(written["html"]).get_text(" ", strip=True)
    assert "only one variant finished, so no comparison is possible" in text
    assert "92.60" in text  # the paper's FF value still sits beside ours


@pytest.mark.slow
def test_one_seed_study_reports_undefined_spread_and_tests(tmp_path):
    root = write_synthetic_store(tmp_path / "r", datasets=("mnist",), variants=("ff", "a-cff"),
                                 seeds=range(1), epochs=5)
    written = build_report(root, out=tmp_path / "out", formats=("html", "latex"))
    soup = _soup(written["html"])
    assert "a variant has a single seed, so std, CI and every test are undefined" in soup.get_text()
    rows = _table_rows(soup, "paper")
    assert all(r[3] == "" and "±" not in r[2] for r in rows)


@pytest.mark.slow
def test_study_where_every_run_failed_still_gives_a_report(tmp_path):
    root = write_synthetic_store(tmp_path / "r", datasets=("mnist",), variants=("a-cff",),
                                 seeds=range(2), failed=2, epochs=5)
    written = build_report(root, out=tmp_path / "out", formats=("html", "pdf", "latex"))
    text = _soup(written["html"]).get_text(" ", strip=True)
    assert "No run finished" in text and "CUDA out of memory" in text
    assert written["pdf"].stat().st_size > 1000


def _cli_in_process(capsys, *args: str) -> tuple[int, str]:
    from cffbench.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return exit_info.value.code, capsys.readouterr().err


def test_cli_report_on_missing_results_dir_is_one_line_exit_2(tmp_path):
    proc = subprocess.run([PYTHON, "-m", "cffbench", "report", str(tmp_path / "results")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("cffbench: error: ") and proc.stderr.count("\n") == 1
    assert "does not exist" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("make", ["empty", "no-runs", "no-curves-no-study"])
def test_cli_report_on_unusable_results_dir_is_one_line_exit_2(tmp_path, capsys, make):
    target = tmp_path / "results"
    target.mkdir()
    if make != "empty":
        (target / "runs").mkdir()
    if make == "no-curves-no-study":
        (target / "runs" / "x.parquet").write_bytes(b"not parquet")
    code, err = _cli_in_process(capsys, "report", str(target), "--out", str(tmp_path / "out"))
    assert code == 2
    assert err.startswith("cffbench: error: ") and err.count("\n") == 1
    assert str(target) in err


def test_cli_rejects_an_unknown_format_naming_the_allowed_ones(tmp_path, capsys, monkeypatch):
    root = write_synthetic_store(tmp_path / "r", datasets=("mnist",), variants=("ff",),
                                 seeds=range(2), epochs=3)
    monkeypatch.chdir(tmp_path)
    code, err = _cli_in_process(capsys, "report", str(root), "--format", "html,docx")
    assert code == 2
    assert "docx" in err and "html, pdf, latex" in err
    assert not (tmp_path / "reports").exists()


@pytest.mark.slow
def test_cli_report_writes_to_reports_study_name_by_default(tmp_path, capsys, monkeypatch):
    root = write_synthetic_store(tmp_path / "r", datasets=("mnist",), variants=("ff", "bp"),
                                 seeds=range(3), epochs=3, name="tiny")
    monkeypatch.chdir(tmp_path)
    from cffbench.cli import main

    main(["report", str(root), "--format", "latex"])
    out = capsys.readouterr().out
    assert f"latex: {Path('reports') / 'tiny' / 'tables'}" in out
    assert (tmp_path / "reports" / "tiny" / "tables" / "paper.tex").is_file()
    assert not (tmp_path / "reports" / "tiny" / "report.html").exists()


def test_same_store_and_source_date_epoch_rebuild_identical_html_and_latex(tmp_path, monkeypatch):
    # Committed evidence (reports/<study>/) must regenerate byte for byte from its Parquet store.
    root = tmp_path / "results"
    write_synthetic_store(root, seeds=range(3), hidden=(20, 20), epochs=4)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    first = build_report(root, out=tmp_path / "a", formats="html,latex")
    second = build_report(root, out=tmp_path / "b", formats="html,latex")
    html_a = first["html"].read_text(encoding="utf-8")
    assert "2023-11-14 22:13 UTC" in html_a          # the stamp comes from SOURCE_DATE_EPOCH
    assert html_a == second["html"].read_text(encoding="utf-8")
    tex_a = sorted(first["latex"].glob("*.tex"))
    assert tex_a and [p.name for p in tex_a] == sorted(p.name for p in second["latex"].glob("*.tex"))
    for path in tex_a:
        assert path.read_bytes() == (second["latex"] / path.name).read_bytes()


def test_each_theta_placement_is_tested_against_the_same_ff_runs(tmp_path):
    # The replication must show both θ placements against FF, not only the main (per-term) one.
    root = tmp_path / "results"
    write_synthetic_store(root, datasets=("mnist",), variants=("ff", "f-cff", "a-cff"),
                          seeds=range(6), hidden=(20, 20), epochs=4,
                          thetas=("per_term", "single"), single_theta_gain=0.02)
    written = build_report(root, out=tmp_path / "report", formats="html,latex")
    soup = _soup(written["html"])
    runs = pd.concat(pd.read_parquet(p) for p in sorted((root / "runs").glob("*.parquet")))
    ff = runs[runs["variant"] == "ff"].set_index("seed")["test_acc"]
    rows = {(r[0], r[1]): r for r in _table_rows(soup, "contrasts_mnist")}
    for theta in ("per_term", "single"):
        fcff = runs[(runs["variant"] == "f-cff") & (runs["theta_placement"] == theta)]
        expected = 100 * (fcff.set_index("seed")["test_acc"] - ff).mean()
        shown = float(rows[("F-CFF − FF", f"theta_placement = {theta}")][4].split()[0].replace("−", "-"))
        assert shown == pytest.approx(expected, abs=0.006)   # shown with two decimals
    assert (written["latex"] / "contrasts_mnist.tex").is_file()
    # the figures show each θ placement on its own, and say which one they show
    captions = {f.get("id"): f.find("figcaption").get_text(" ", strip=True)
                for f in soup.select("figure.plot")}
    assert "at the main configuration (θ placement = per_term)" in captions["fig-curves_mnist"]
    assert "at θ placement = single" in captions["fig-curves_mnist_theta_placement-single"]
    assert "at the main configuration" in captions["fig-accuracy_distribution"]
    assert "one panel per dataset × θ placement" in captions["fig-gamma_trajectories"]


def test_gamma_panels_never_pool_two_conditions():
    # γ under θ per_term and θ single follow different courses: one band over both would show
    # a γ that neither condition had
    from cffbench.report.figures import gamma_bands

    runs = pd.DataFrame([{"run_id": f"{theta}-{seed}", "dataset": "mnist", "variant": "a-cff",
                          "theta_placement": theta, "seed": seed}
                         for theta in ("per_term", "single") for seed in range(3)]
                        + [{"run_id": "ff-0", "dataset": "mnist", "variant": "ff",
                            "theta_placement": None, "seed": 0}])
    gamma_of = {"per_term": 1.0, "single": 3.0}
    curves = pd.DataFrame([{"run_id": r.run_id, "layer": layer, "epoch": epoch,
                            "gamma": gamma_of[r.theta_placement] + 0.01 * r.seed}
                           for r in runs[runs.variant == "a-cff"].itertuples()
                           for layer in (1, 2) for epoch in range(1, 6)])
    panels = gamma_bands(curves, runs)
    assert [(dataset, levels) for dataset, levels, _ in panels] == [
        ("mnist", {"theta_placement": "per_term"}), ("mnist", {"theta_placement": "single"})]
    for (_, levels, band), expected in zip(panels, (1.01, 3.01)):
        assert band["n"].eq(3).all() and len(band) == 10         # 2 layers × 5 epochs, 3 seeds
        assert band["mean"].to_numpy() == pytest.approx(expected)
    # one condition only: one panel per dataset, no axis named
    (single,) = gamma_bands(curves, runs[runs.theta_placement != "single"])
    assert single[1] == {} and single[2]["mean"].to_numpy() == pytest.approx(1.01)


def test_gamma_panels_for_an_initial_gamma_axis_and_for_levels_some_runs_do_not_set():
    from cffbench.report.figures import gamma_bands

    # γ₀ as a grid axis: the runs' "gamma" column is the axis, the curves' is the trajectory
    runs = pd.DataFrame([{"run_id": f"g{g0}-{seed}", "dataset": "mnist", "variant": "a-cff",
                          "gamma": g0, "seed": seed} for g0 in (0.5, 1.0) for seed in range(2)])
    curves = pd.DataFrame([{"run_id": r.run_id, "layer": 1, "epoch": e, "gamma": 2 * r.gamma}
                           for r in runs.itertuples() for e in (1, 2)])
    panels = gamma_bands(curves, runs)
    assert [(levels, list(band["mean"])) for _, levels, band in panels] == [
        ({"gamma": 0.5}, [1.0, 1.0]), ({"gamma": 1.0}, [2.0, 2.0])]
    # alpha_decay is stored only for α = distance: the other α's runs (NaN decay) keep a panel
    runs = pd.DataFrame([{"run_id": f"{a}{d}-{s}", "dataset": "mnist", "variant": "a-cff",
                          "alpha": a, "alpha_decay": d, "seed": s}
                         for a, d in (("uniform", None), ("distance", 0.3), ("distance", 0.7))
                         for s in range(2)])
    curves = pd.DataFrame([{"run_id": r, "layer": 1, "epoch": 1, "gamma": 1.0}
                           for r in runs["run_id"]])
    assert sorted(str(levels) for _, levels, _ in gamma_bands(curves, runs)) == sorted([
        str({"alpha": "distance", "alpha_decay": 0.3}), str({"alpha": "distance", "alpha_decay": 0.7}),
        str({"alpha": "uniform"})])


def test_figure_file_names_of_two_levels_never_collide():
    from cffbench.report.figures import level_slug

    assert level_slug({"theta_placement": "single"}) == "_theta_placement-single"
    assert level_slug({"x": "per term"}) != level_slug({"x": "per-term"})
    assert level_slug({"x": "a.b"}) != level_slug({"x": "a-b"})
