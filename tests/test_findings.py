"""The numbers behind docs/findings.md: computed from run stores by cffbench.report.findings, and
the committed page must equal a fresh computation from the committed Parquet."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cffbench.analysis import analyze_store
from cffbench.report.findings import BEGIN, embedded_blocks, findings_block, main, update_page
from cffbench.stats import seeds_needed
from test_report_store import write_synthetic_store



@pytest.fixture(scope="module")
def theta_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("findings") / "synthetic-study"
    write_synthetic_store(root, datasets=("mnist",), variants=("ff", "f-cff", "a-cff", "bp"),
                          seeds=range(6), hidden=(20, 20), epochs=3,
                          thetas=("per_term", "single"), single_theta_gain=0.02)
    study = root / "study.toml"     # the plan declares its pilot: the first 3 seeds
    study.write_text(study.read_text(encoding="utf-8") + "\n[analysis]\npilot_seeds = 3\n", encoding="utf-8")
    return root


def _runs(root: Path) -> pd.DataFrame:
    return pd.concat(pd.read_parquet(p) for p in sorted((root / "runs").glob("*.parquet")))


def test_each_contrast_is_the_paired_difference_with_its_seeds_needed(theta_store):
    runs = _runs(theta_store)
    ff = runs[runs["variant"] == "ff"].set_index("seed")["test_acc"]
    rows = analyze_store(theta_store).contrasts
    # FF and BP do not depend on θ: BP − FF once; each CFF variant at both θ placements
    assert sorted(rows.loc[rows["minus"] == "ff", "variant"]) == ["a-cff", "a-cff", "bp", "f-cff", "f-cff"]
    for r in rows[rows["minus"] == "ff"].itertuples(index=False):
        theta = "single" if "single" in r.scope else "per_term"
        other = runs[(runs["variant"] == r.variant)
                     & (runs["theta_placement"].isna() | (runs["theta_placement"] == theta))]
        diff = other.set_index("seed")["test_acc"] - ff
        assert r.estimate == pytest.approx(diff.mean(), abs=1e-12)
        assert r.n == 6 and r.sd_diff == pytest.approx(diff.std(ddof=1), abs=1e-12)
        alpha = 0.05 / r.family_size                       # the worst Holm step of its family
        assert r.seeds_needed == seeds_needed(diff.std(ddof=1), 0.012, alpha)
        assert 0 <= r.p_adj <= 1 and r.ci_low < r.estimate < r.ci_high


def _ok(root: Path) -> pd.DataFrame:
    runs = _runs(root)
    return runs[runs["status"] == "ok"]


def test_each_contrast_uses_the_seeds_both_of_its_conditions_have(tmp_path):
    # A diverged A-CFF run takes its seed out of the A-CFF contrasts only: n, the SD of the
    # differences and the seeds needed come from the seeds that pair
    root = tmp_path / "synthetic-study"
    write_synthetic_store(root, datasets=("mnist",), variants=("ff", "f-cff", "a-cff"),
                          seeds=range(6), hidden=(20, 20), epochs=3, diverged=1)
    ok = _ok(root)
    dropped = set(range(6)) - set(ok.loc[ok["variant"] == "a-cff", "seed"])
    assert len(dropped) == 1
    ff = ok[ok["variant"] == "ff"].set_index("seed")["test_acc"]
    rows = analyze_store(root).primary
    assert sorted(rows["variant"]) == ["a-cff", "f-cff"]
    for r in rows.itertuples(index=False):
        diff = (ok[ok["variant"] == r.variant].set_index("seed")["test_acc"] - ff).dropna()
        assert r.n == (5 if r.variant == "a-cff" else 6) == diff.size
        assert r.sd_diff == pytest.approx(diff.std(ddof=1), abs=1e-12)
        assert r.estimate == pytest.approx(diff.mean(), abs=1e-12)


def test_two_paired_seeds_still_pair_and_d_z_is_undefined_below_three(tmp_path):
    root = tmp_path / "synthetic-study"
    write_synthetic_store(root, datasets=("mnist",), variants=("ff", "f-cff", "a-cff"),
                          seeds=range(3), hidden=(20, 20), epochs=3, diverged=1)
    rows = analyze_store(root).primary.set_index("variant")
    assert rows.loc["a-cff", "n"] == 2 and rows.loc["a-cff", "test"] == "t"
    assert pd.isna(rows.loc["a-cff", "dz_corrected"]) and rows.loc["a-cff", "small_pilot"]


def test_block_lists_every_condition_and_the_pilot(theta_store):
    block = findings_block(theta_store)
    assert "| mnist | F-CFF (θ placement single) |" in block
    assert "| F-CFF − FF | theta_placement = single |" in block
    assert "| BP − FF | — |" in block and "BP (θ placement" not in block
    assert "Pilot (the first 3 seeds" in block and "6 seeds" in block
    # the pilot rows: the SD of the first 3 seeds' differences (pandas) and the seeds a paired t
    # at .05/4 needs for power .8 at 1.2 pp with that SD (statsmodels)
    from statsmodels.stats.power import TTestPower

    ok = _ok(theta_store)
    first = ok[ok["seed"] < 3]
    ff = first[first["variant"] == "ff"].set_index("seed")["test_acc"]
    for variant in ("f-cff", "a-cff"):
        for theta in ("per_term", "single"):
            cff = first[(first["variant"] == variant) & (first["theta_placement"] == theta)]
            sd = (cff.set_index("seed")["test_acc"] - ff).std(ddof=1)
            n = 2
            while TTestPower().power(effect_size=0.012 / sd, nobs=n, alpha=0.05 / 4) < 0.8:
                n += 1
            row = (f"| mnist | {variant.upper()} − FF | theta_placement = {theta} | {100 * sd:.2f} | {n} [")
            assert row in block and "(small pilot) | 3 |" in block.split(row, 1)[1].splitlines()[0]


def test_update_rewrites_only_the_generated_blocks_of_a_page(theta_store, tmp_path, capsys):
    assert main([str(theta_store)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(BEGIN.format(study="synthetic-study"))
    stale = printed.replace("| mnist |", "| stale |")
    page = tmp_path / "findings.md"
    page.write_text(f"# Findings\n\nprose stays\n{stale}\nmore prose\n", encoding="utf-8")
    assert update_page(page, theta_store.parent) == ["synthetic-study"]
    text = page.read_text(encoding="utf-8")
    assert text == f"# Findings\n\nprose stays\n{printed}\nmore prose\n"
    assert embedded_blocks(text) == {"synthetic-study": findings_block(theta_store)}


def test_a_store_without_runs_is_a_one_line_error(tmp_path, capsys):
    assert main([str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1


def test_accuracy_table_gives_the_mean_final_gamma_of_the_cff_runs(theta_store):
    # write_synthetic_store ends A-CFF at γ = 1.2 and leaves the others without a learned γ
    block = findings_block(theta_store)
    acff = [line for line in block.splitlines() if line.startswith("| mnist | A-CFF (θ placement ")
            and "− FF" not in line]
    assert len(acff) == 2 and all(line.endswith("| 1.20 |") for line in acff)
    ff = [line for line in block.splitlines() if line.startswith("| mnist | FF |")]
    assert ff and ff[0].endswith("|  |")


def test_notes_are_listed_only_when_some_runs_of_a_condition_carry_them():
    import json

    from cffbench.report.findings import note_rows

    rows = []
    for seed in range(4):
        notes = ["depth-2 remark"] + (["layer 2 collapsed"] if seed in (1, 3) else [])
        rows.append({"dataset": "mnist", "variant": "f-cff", "seed": seed, "alpha": "uniform",
                     "theta_placement": "single", "notes": json.dumps(notes)})
        rows.append({"dataset": "mnist", "variant": "ff", "seed": seed, "alpha": None,
                     "theta_placement": None, "notes": json.dumps([])})
    assert note_rows(pd.DataFrame(rows)) == [
        ["layer 2 collapsed", "mnist", "F-CFF", "2 of 4", "1, 3"]]
