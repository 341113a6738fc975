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
    assert "Pilot (the first 3 seeds" in block and "Seeds: 6 (0–5), each a complete block" in block
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


@pytest.fixture(scope="module")
def unfinished_store(tmp_path_factory):
    # the interim state of a study like paper_mnist: 7 seeds planned, seeds 0-3 complete, seed 4
    # without its two A-CFF runs, seeds 5 and 6 not started
    root = tmp_path_factory.mktemp("unfinished") / "synthetic-study"
    write_synthetic_store(root, datasets=("mnist",), variants=("ff", "f-cff", "a-cff"),
                          seeds=range(5), hidden=(20, 20), epochs=3, thetas=("per_term", "single"))
    for folder in ("runs", "curves"):
        for path in (root / folder).glob("mnist-a-cff-*-4-*.parquet"):
            path.unlink()
    study = root / "study.toml"
    study.write_text(study.read_text(encoding="utf-8").replace(
        "seeds = [0, 1, 2, 3, 4]", "seeds = [0, 1, 2, 3, 4, 5, 6]"), encoding="utf-8")
    return root


def test_an_unfinished_store_says_stored_of_planned_and_that_it_is_unfinished(unfinished_store):
    stored = len(list((unfinished_store / "runs").glob("*.parquet")))
    planned = 7 * 5          # seeds x (FF + F-CFF and A-CFF at both θ placements)
    assert stored == 23
    first = findings_block(unfinished_store).splitlines()[0]
    assert first.startswith(f"Study `synthetic-study`: {stored} of {planned} planned runs stored "
                            f"({stored} ok, 0 diverged, 0 failed). The study is unfinished: "
                            f"{planned - stored} planned runs are not stored yet, so every number "
                            "below is interim")


def test_a_complete_store_calls_every_seed_a_complete_block(theta_store):
    stored = len(list((theta_store / "runs").glob("*.parquet")))
    first = findings_block(theta_store).splitlines()[0]
    assert first.startswith(f"Study `synthetic-study`: {stored} of {stored} planned runs stored")
    assert "unfinished" not in first and "incomplete" not in first
    assert first.endswith("Seeds: 6 (0–5), each a complete block (every planned condition stored and ok).")


def test_incomplete_seeds_are_named_with_what_they_lack(unfinished_store):
    runs = _runs(unfinished_store)
    conditions = runs.groupby("seed").apply(
        lambda g: set(zip(g["variant"], g["theta_placement"].fillna(""))), include_groups=False)
    every = set().union(*conditions)
    complete = [s for s, held in conditions.items() if held == every]
    assert complete == [0, 1, 2, 3] and every - conditions[4] == {("a-cff", "per_term"), ("a-cff", "single")}
    first = findings_block(unfinished_store).splitlines()[0]
    assert ("Seeds: 7 planned (0–6); 4 complete blocks (seeds 0–3: every planned condition stored "
            "and ok); seed 4 incomplete (A-CFF (θ placement per_term), A-CFF (θ placement single) "
            "not stored yet); seeds 5, 6: no run stored yet. A contrast pairs the seeds both of "
            "its conditions have: an incomplete seed is left out of those with a condition it "
            "lacks and used in the others.") in first
    # ... and the contrasts do: A-CFF − FF pairs on the 4 complete seeds, F-CFF − FF on all 5
    rows = analyze_store(unfinished_store).contrasts
    assert set(rows.loc[rows["variant"] == "a-cff", "n"]) == {4}
    assert set(rows.loc[rows["variant"] == "f-cff", "n"]) == {5}


def test_a_diverged_or_failed_run_makes_its_seed_incomplete_and_says_why(tmp_path):
    root = tmp_path / "synthetic-study"
    write_synthetic_store(root, datasets=("mnist",), variants=("ff", "f-cff", "a-cff"),
                          seeds=range(6), hidden=(20, 20), epochs=3, failed=1, diverged=1)
    runs = _runs(root)
    bad = runs[runs["status"] != "ok"].set_index("status")["seed"]
    first = findings_block(root).splitlines()[0]
    assert f"({(runs['status'] == 'ok').sum()} ok, 1 diverged, 1 failed)" in first
    assert "The study is unfinished: 1 planned run failed" in first
    assert f"seed {bad['failed']} incomplete (A-CFF failed);" in first
    assert f"seed {bad['diverged']} incomplete (A-CFF diverged)." in first
    assert "Seeds: 6 planned (0–5); 4 complete blocks" in first


def test_dead_layers_are_listed_as_the_report_words_them(tmp_path):
    from cffbench.ff.goodness import is_dead_layer

    root = tmp_path / "synthetic-study"
    write_synthetic_store(root, datasets=("mnist",), variants=("ff", "f-cff", "a-cff"),
                          seeds=range(6), hidden=(20, 20), epochs=5)
    # A-CFF's second layer: seed 1 goes dead from epoch 2 to the end, seed 3 at epoch 0 only
    for seed, epochs in ((1, [2, 3, 4]), (3, [0])):
        path = root / "curves" / f"mnist-a-cff-uniform-{seed}.parquet"
        curves = pd.read_parquet(path)
        dead = (curves["layer"] == 1) & curves["epoch"].isin(epochs)
        curves.loc[dead, ["g_pos", "g_neg"]] = 0.0
        curves.to_parquet(path)
    curves = pd.concat(pd.read_parquet(p) for p in sorted((root / "curves").glob("*.parquet")))
    curves["seed"] = curves["run_id"].str.rsplit("-", n=1).str[-1].astype(int)
    acff = curves[curves["run_id"].str.startswith("mnist-a-cff") & (curves["layer"] == 1)]
    dead = acff[is_dead_layer(acff["g_pos"].to_numpy(), acff["g_neg"].to_numpy(), 2.0)]
    assert sorted(set(dead["seed"])) == [1, 3] and len(dead) == 4
    block = findings_block(root)
    assert "Layer health: layers that went dead during training:" in block
    assert (f"- mnist, A-CFF: layer 1 went dead (max(G_pos, G_neg) ≤ 1e-06·θ: every unit (almost) "
            f"off, no gradient) in 2 of 6 runs ({len(dead)} of their {len(acff)} logged epochs) and "
            "was still dead at the end of its training in 1 of 6; see the layer health table.") in block
    assert "| mnist | A-CFF | 1 | 2 of 6 | 1: 3 of 5; 3: 1 of 5 | 1 of 6 (seed 1) | 0 |" in block
    assert block.count(" went dead (") == 1               # FF, F-CFF and A-CFF layer 0 never were


def test_no_layer_health_section_when_no_layer_was_ever_dead(theta_store):
    block = findings_block(theta_store)
    assert "Layer health" not in block and "went dead" not in block


def test_the_exact_test_floor_is_stated_when_the_seeds_cannot_reach_alpha(unfinished_store, theta_store):
    from scipy.stats import wilcoxon

    # with 4 paired seeds all of one sign the exact two-sided Wilcoxon p is its floor 2/2^4
    runs = _ok(unfinished_store)
    ff = runs[runs["variant"] == "ff"].set_index("seed")["test_acc"]
    acff = runs[(runs["variant"] == "a-cff") & (runs["theta_placement"] == "per_term")]
    diff = (acff.set_index("seed")["test_acc"] - ff).dropna()
    assert diff.size == 4 and wilcoxon(diff, method="exact").pvalue == pytest.approx(2 / 2 ** 4)
    block = findings_block(unfinished_store)
    assert ("- mnist: with 4 seeds the exact Wilcoxon signed-rank and sign-flip p cannot go below "
            "2/2^4 = .125, so those tests (the sensitivity table, or the plan's test if it is one "
            "of them) cannot reject at .05.") in block
    # 6 seeds: 2/2^6 = .031 < .05, so no floor note
    assert "cannot go below" not in findings_block(theta_store)


def test_the_crossing_anova_says_which_runs_and_seeds_it_covers(theta_store, unfinished_store):
    runs = _runs(theta_store)
    crossed = runs["theta_placement"].notna()              # FF and BP set no θ placement
    assert sorted(runs.loc[crossed, "variant"].unique()) == ["a-cff", "f-cff"]
    block = findings_block(theta_store)
    table, note = block.split("ANOVA of variant × θ placement:", 1)[1].split("How the test was chosen: ", 1)
    assert "| variant | 1 |" in table                      # two variant levels: df1 = 1
    assert note.startswith(f"Analysis plan: two-way variant x theta_placement on {crossed.sum()} runs, "
                           "because the runs that set every factor form a crossing")
    assert "all 6 seeds occur in all 4 conditions" in note.splitlines()[0]
    # a seed without its A-CFF runs is dropped from the crossing, and the note names it
    interim = findings_block(unfinished_store).split("How the test was chosen: ", 1)[1].splitlines()[0]
    assert "within-subjects on 4 complete seeds, because dropped 1 of 5 seeds that miss a condition (4)" in interim


def test_a_store_without_a_study_file_counts_its_stored_conditions_and_says_so(tmp_path):
    root = tmp_path / "synthetic-study"
    write_synthetic_store(root, datasets=("mnist",), variants=("ff", "f-cff", "a-cff"),
                          seeds=range(4), hidden=(20, 20), epochs=3, diverged=1)
    (root / "study.toml").unlink()
    runs = _runs(root)
    seed = int(runs.loc[runs["status"] == "diverged", "seed"].iloc[0])
    assert seed == 0                 # the first A-CFF run diverges, so seeds 1-3 are complete
    first = findings_block(root).splitlines()[0]
    assert first.startswith(f"Study `synthetic-study` ({len(runs)} runs stored: {len(runs) - 1} ok, "
                            "1 diverged, 0 failed; planned count unknown).")
    assert "Seeds: 4 stored (0–3); 3 complete blocks (seeds 1–3: every stored condition ok)" in first
    assert f"seed {seed} incomplete (A-CFF diverged)." in first and "planned" not in first.split("Seeds:")[1]
