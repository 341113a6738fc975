"""Layer health from the stored curves (``cffbench.report.layer_health``), its table and warning,
and the report of a store whose layer went dead."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from bs4 import BeautifulSoup

from cffbench.report import build_report
from cffbench.report.context import dead_layers
from cffbench.report.layer_health import layer_health, run_layer_health
from cffbench.report.tables import layer_health_table
from conftest import html_table_rows
from test_report_store import write_synthetic_store

AXES = ["theta_placement"]
NAN = float("nan")


def _runs() -> pd.DataFrame:
    rows = [("a0", "a-cff", "per_term", 0, "ok", 2.0), ("a1", "a-cff", "per_term", 1, "ok", 2.0),
            ("a2", "a-cff", "per_term", 2, "diverged", 2.0), ("f0", "ff", None, 0, "ok", 4.0),
            ("b0", "bp", None, 0, "ok", NAN)]
    return pd.DataFrame([{"run_id": r, "dataset": "mnist", "variant": v, "theta_placement": t,
                          "seed": s, "status": st, "threshold": th}
                         for r, v, t, s, st, th in rows])


def _curves() -> pd.DataFrame:
    """Three logged epochs (1, 6, 11) per layer; goodness ``(G_pos, G_neg)`` per epoch."""
    healthy = [(4e-4, 4e-4), (1.0, 0.5), (2.0, 0.3)]
    per_layer = {
        ("a0", 1): healthy, ("a0", 2): [(7e-4, 7e-4), (1e-11, 3e-11), (0.1, 0.01)],   # dead once
        ("a1", 1): healthy, ("a1", 2): [(7e-4, 7e-4), (0.0, 1e-12), (0.0, 3e-20)],    # to the end
        ("a2", 1): healthy, ("a2", 2): [(0.0, 0.0)] * 3,                               # diverged
        ("f0", 1): healthy, ("f0", 2): [(7e-4, 7e-4), (3e-6, 1e-6), (1.0, 0.5)],  # θ = 4: dead
        ("b0", 0): [(NAN, NAN)] * 3,                                                   # bp
    }
    return pd.DataFrame([{"run_id": run, "layer": layer, "epoch": epoch, "loss": 0.5,
                          "g_pos": g_pos, "g_neg": g_neg, "gamma": NAN, "alpha_row": ""}
                         for (run, layer), points in per_layer.items()
                         for epoch, (g_pos, g_neg) in zip((1, 6, 11), points)])


def test_each_run_layer_counts_its_dead_logged_epochs_and_its_end():
    per_run = run_layer_health(_curves(), _runs(), AXES).set_index(["run_id", "layer"])
    assert "a2" not in per_run.index.get_level_values("run_id")          # only finished runs
    got = per_run[["seed", "logged", "dead_epochs", "dead_at_end"]].to_dict("index")
    assert got == {("a0", 1): {"seed": 0, "logged": 3, "dead_epochs": 0, "dead_at_end": False},
                   ("a0", 2): {"seed": 0, "logged": 3, "dead_epochs": 1, "dead_at_end": False},
                   ("a1", 1): {"seed": 1, "logged": 3, "dead_epochs": 0, "dead_at_end": False},
                   ("a1", 2): {"seed": 1, "logged": 3, "dead_epochs": 2, "dead_at_end": True},
                   ("f0", 1): {"seed": 0, "logged": 3, "dead_epochs": 0, "dead_at_end": False},
                   ("f0", 2): {"seed": 0, "logged": 3, "dead_epochs": 1, "dead_at_end": False},
                   ("b0", 0): {"seed": 0, "logged": 0, "dead_epochs": 0, "dead_at_end": False}}
    assert per_run.loc[("a0", 2), "lowest"] == 3e-11 and per_run.loc[("a1", 2), "lowest"] == 3e-20
    assert list(per_run.index.get_level_values("run_id").unique()) == ["a0", "a1", "f0", "b0"]


def test_condition_layer_health_sums_the_runs_of_a_condition():
    health = layer_health(run_layer_health(_curves(), _runs(), AXES), AXES)
    acff2 = health[(health["variant"] == "a-cff") & (health["layer"] == 2)].iloc[0]
    assert (acff2["runs"], acff2["runs_dead"], acff2["dead_epochs"], acff2["logged"],
            acff2["dead_at_end"], acff2["lowest"]) == (2, 2, 3, 6, 1, 3e-20)
    ff2 = health[(health["variant"] == "ff") & (health["layer"] == 2)].iloc[0]
    assert (ff2["runs"], ff2["runs_dead"], ff2["dead_epochs"], ff2["dead_at_end"]) == (1, 1, 1, 0)
    assert health.loc[health["layer"] == 1, "runs_dead"].eq(0).all()
    assert len(health) == 5                       # a-cff ×2 layers, ff ×2, bp ×1


def test_dead_layers_are_tabled_and_warned_about_per_condition_and_layer():
    per_run = run_layer_health(_curves(), _runs(), AXES)
    health = layer_health(per_run, AXES)
    table = layer_health_table(per_run, health, AXES)
    assert table.key == "layer_health" and len(table.columns) == 7
    assert table.rows == [
        ["mnist", "A-CFF (θ placement per_term)", "2", "2 of 2", "0: 1 of 3; 1: 2 of 3",
         "1 of 2 (seed 1)", "3e-20"],
        ["mnist", "FF", "2", "1 of 1", "0: 1 of 3", "0 of 1", "3e-06"]]
    warnings = dead_layers(health, AXES)
    assert warnings[0] == (
        "mnist, A-CFF (θ placement per_term): layer 2 went dead (max(G_pos, G_neg) ≤ 1e-06·θ: "
        "every unit (almost) off, no gradient) in 2 of 2 runs (3 of their 6 logged epochs) and "
        "was still dead at the end of its training in 1 of 2; see the layer health table.")
    assert len(warnings) == 2 and warnings[1].startswith("mnist, FF: layer 2 went dead")


def test_healthy_or_missing_curves_give_no_table_and_no_warning():
    curves = _curves()
    healthy = curves.assign(g_pos=curves["g_pos"].clip(lower=1e-4), g_neg=curves["g_neg"].clip(lower=1e-4))
    for frame in (healthy, pd.DataFrame()):
        per_run = run_layer_health(frame, _runs(), AXES)
        health = layer_health(per_run, AXES)
        assert layer_health_table(per_run, health, AXES) is None and dead_layers(health, AXES) == []


def _store_with_dead_layer(root):
    write_synthetic_store(root, datasets=("mnist",), variants=("ff", "a-cff"), seeds=range(3),
                          epochs=5, hidden=(50, 50))
    path = root / "curves" / "mnist-a-cff-uniform-1.parquet"
    curves = pd.read_parquet(path)
    second = curves["layer"] == curves["layer"].max()
    curves.loc[second, ["g_pos", "g_neg"]] = [0.0, 3e-20]       # the paper_mnist seed-1 state
    curves.to_parquet(path)
    return root


@pytest.mark.slow
def test_report_of_a_store_with_a_dead_layer_shows_it(tmp_path):
    root = _store_with_dead_layer(tmp_path / "r")
    written = build_report(root, out=tmp_path / "out", formats=("html", "latex"))
    soup = BeautifulSoup(written["html"].read_text(encoding="utf-8"), "html5lib")
    warnings = [li.get_text(" ", strip=True) for li in soup.select("#warnings li")]
    assert [w for w in warnings if "went dead" in w] == [
        "mnist, A-CFF: layer 1 went dead (max(G_pos, G_neg) ≤ 1e-06·θ: every unit (almost) off, "
        "no gradient) in 1 of 3 runs (5 of their 15 logged epochs) and was still dead at the end "
        "of its training in 1 of 3; see the layer health table."]
    table = soup.select_one("#warnings #tab-layer_health table")
    rows = html_table_rows(table)
    assert rows == [["mnist", "A-CFF", "1", "1 of 3", "1: 5 of 5", "1 of 3 (seed 1)", "3e-20"]]
    assert (written["latex"] / "layer_health.tex").read_text().count(r"\\") == 2   # header + row


@pytest.mark.slow
def test_report_of_a_store_without_dead_layers_has_no_layer_health(tmp_path):
    root = write_synthetic_store(tmp_path / "r", datasets=("mnist",), variants=("ff", "a-cff"),
                                 seeds=range(3), epochs=5, hidden=(50, 50))
    written = build_report(root, out=tmp_path / "out", formats=("html", "latex"))
    html = written["html"].read_text(encoding="utf-8")
    assert "layer_health" not in html and "went dead" not in html
    assert not (written["latex"] / "layer_health.tex").exists()
