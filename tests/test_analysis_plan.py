"""The [analysis] plan: declared in the study file, never in a run id, hashed into every output;
its contrasts, families and verdicts; degenerate designs say why instead of deciding."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from cffbench.analysis import analyze_runs, resolve_plan
from cffbench.errors import StudyError
from cffbench.study import expand, parse_study

REPO = Path(__file__).resolve().parents[1]
BASE = '''name = "p"
seeds = [0, 1, 2]
[data]
datasets = ["mnist"]
[grid]
variant = ["ff", "f-cff", "a-cff"]
theta_placement = ["per_term", "single"]
'''


def test_adding_an_analysis_section_changes_no_run_id():
    plain = parse_study(BASE)
    planned = parse_study(BASE + '[analysis]\ntest = "permutation"\nalpha = 0.01\nsesoi_pp = 2.0\n'
                                 'margin_pp = 0.5\nadjust = "bonferroni"\nprimary = ["a-cff"]\n')
    assert [t.run_id for t in expand(plain)] == [t.run_id for t in expand(planned)]
    assert planned.analysis.test == "permutation" and planned.analysis.primary == ["a-cff"]


def test_plan_defaults_come_from_the_paper_claim_and_are_documented():
    plan = resolve_plan(parse_study(BASE).analysis)
    assert plan.test == "t" and plan.adjust == "holm" and plan.alpha == 0.05
    assert plan.primary == ("f-cff", "a-cff") and plan.reference == "ff"
    assert plan.sesoi == pytest.approx(0.012) and plan.margin == plan.sesoi   # 93.8 − 92.6 %
    assert "93.8 − 92.6" in plan.sesoi_source


def test_plan_hash_is_stable_and_changes_with_any_key():
    a = resolve_plan(parse_study(BASE).analysis)
    assert a.hash == resolve_plan(parse_study(BASE).analysis).hash and len(a.hash) == 12
    b = resolve_plan(parse_study(BASE + "[analysis]\nmargin_pp = 0.6\n").analysis)
    assert a.hash != b.hash


def test_plan_hash_covers_the_decision_fields_and_no_prose():
    import dataclasses
    import hashlib
    import json

    plan = resolve_plan(parse_study(BASE).analysis)
    decided = {"reference": "ff", "primary": ["f-cff", "a-cff"], "adjust": "holm", "test": "t",
               "alpha": 0.05, "power": 0.8, "sesoi": 0.012, "margin": 0.012,
               "permutation_exact_max_n": 15, "permutation_resamples": 10000, "permutation_seed": 0}
    text = json.dumps(decided, sort_keys=True, separators=(",", ":"))
    assert plan.hash == hashlib.sha256(text.encode()).hexdigest()[:12]
    # rewording where the SESOI came from, or stating the default explicitly, is the same plan;
    # a pilot report decides nothing
    assert dataclasses.replace(plan, sesoi_source="reworded").hash == plan.hash
    assert resolve_plan(parse_study(BASE + "[analysis]\nsesoi_pp = 1.2\npilot_seeds = 2\n").analysis).hash == plan.hash
    for field, value in (("alpha", 0.01), ("test", "wilcoxon"), ("primary", ("a-cff",)), ("power", 0.9),
                         ("permutation_seed", 1), ("margin", 0.01)):
        assert dataclasses.replace(plan, **{field: value}).hash != plan.hash, field


def test_the_default_sesoi_label_says_where_the_number_comes_from_not_which_contrast_it_tests():
    study = BASE.replace('variant = ["ff", "f-cff", "a-cff"]', 'variant = ["ff", "f-cff", "a-cff", "bp"]')
    bp = resolve_plan(parse_study(study + '[analysis]\nprimary = ["bp"]\n').analysis)
    assert bp.sesoi == pytest.approx(0.012)
    assert bp.sesoi_source.startswith("default, from NetworkFF")
    assert "A-CFF − FF gain on MNIST (93.8 − 92.6 %)" in bp.sesoi_source
    assert "applied to every primary contrast" in bp.sesoi_source
    assert "claim being tested" not in bp.sesoi_source      # BP − FF on any dataset is not that claim


@pytest.mark.parametrize("extra, fragments", [
    ('[analysis]\ntests = "t"\n', ["unknown key 'tests' at [analysis]", "allowed: reference, primary"]),
    ('[analysis]\ntest = "anova"\n', ["[analysis] test", "'t', 'permutation' or 'wilcoxon'"]),
    ('[analysis]\nalpha = 0.7\n', ["[analysis] alpha", "less than 0.5"]),
    ('[analysis]\nprimary = ["ff"]\n', ["cannot also be a primary variant"]),
    ('[analysis]\nsesoi_pp = -1\n', ["[analysis] sesoi_pp", "greater than 0"]),
    # a plan naming a variant the grid never runs could only ever say "not yet run"
    ('[analysis]\nprimary = ["bp"]\n', ["[analysis] primary names 'bp', which the study does "
                                         "not run (its variants: ff, f-cff, a-cff)"]),
    ('[analysis]\nreference = "bp"\nsesoi_pp = 1.0\n', ["[analysis] reference names 'bp'"]),
    ('[analysis]\npilot_seeds = 50\n', ["pilot_seeds = 50 is more than the study's 3 seeds"]),
    # the default sesoi is the paper's gain over FF: another reference has none, and analyze
    # would be the first to fail
    ('[analysis]\nreference = "f-cff"\nprimary = ["a-cff"]\n',
     ["[analysis] sesoi_pp: no default for the reference 'f-cff'", "1.2 pp); set sesoi_pp"]),
    # strict types: a string or a boolean where a number belongs is not coerced
    ('[analysis]\nalpha = "0.05"\n', ["[analysis] alpha", "valid number"]),
    ('[analysis]\npermutation_exact_max_n = true\n', ["[analysis] permutation_exact_max_n",
                                                       "valid integer"]),
    ('[analysis]\npermutation_resamples = 1000000000\n', ["[analysis] permutation_resamples",
                                                           "less than or equal to 1000000"]),
])
def test_malformed_plan_is_a_one_line_study_error(tmp_path, extra, fragments):
    path = tmp_path / "study.toml"
    path.write_text(BASE + extra, encoding="utf-8")
    from cffbench.study import load_study

    with pytest.raises(StudyError) as info:
        load_study(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    for fragment in fragments:
        assert fragment in message


def _runs(seeds=range(6), drop=(), constant=False, rng_seed=1) -> pd.DataFrame:
    rng = np.random.default_rng(rng_seed)
    rows = []
    for seed in seeds:
        base = 0.9 + rng.normal(0, 0.01)
        rows.append({"dataset": "mnist", "variant": "ff", "seed": seed, "theta_placement": None,
                     "status": "ok", "test_acc": base})
        for variant, gain in (("f-cff", -0.02), ("a-cff", 0.004)):
            for theta in ("per_term", "single"):
                if (variant, theta) in drop:
                    continue
                acc = base + gain + (0.0 if constant else rng.normal(0, 0.01))
                rows.append({"dataset": "mnist", "variant": variant, "seed": seed,
                             "theta_placement": theta, "status": "ok", "test_acc": acc})
        rows.append({"dataset": "mnist", "variant": "bp", "seed": seed, "theta_placement": None,
                     "status": "ok", "test_acc": base + 0.05 + rng.normal(0, 0.002)})
    return pd.DataFrame(rows)


def test_primary_family_is_each_cff_variant_minus_ff_at_every_level_and_bp_is_secondary():
    result = analyze_runs(_runs())
    primary, secondary = result.primary, result.contrasts[result.contrasts["role"] == "secondary"]
    assert sorted(zip(primary["label"], primary["scope"])) == [
        ("A-CFF − FF", "theta_placement = per_term"), ("A-CFF − FF", "theta_placement = single"),
        ("F-CFF − FF", "theta_placement = per_term"), ("F-CFF − FF", "theta_placement = single")]
    assert (primary["family_size"] == 4).all()
    assert set(secondary["label"]) == {"BP − FF", "A-CFF − F-CFF"} and (secondary["verdict"] == "").all()
    # each primary contrast is the paired t of its own differences (scipy), Holm over the four
    runs = _runs()
    ff = runs[runs["variant"] == "ff"].set_index("seed")["test_acc"]
    for r in primary.itertuples():
        theta = r.scope.split(" = ")[1]
        cff = runs[(runs["variant"] == r.variant) & (runs["theta_placement"] == theta)].set_index("seed")["test_acc"]
        ref = sps.ttest_rel(cff.sort_index(), ff.sort_index())
        assert r.p == pytest.approx(ref.pvalue, rel=1e-10)
        assert (r.ci_low, r.ci_high) == pytest.approx(tuple(ref.confidence_interval()), rel=1e-10)


def test_every_test_appears_in_the_sensitivity_table_and_a_changed_decision_is_flagged():
    result = analyze_runs(_runs())
    counts = result.sensitivity.groupby("contrast_id")["test"].nunique()
    assert (counts == 3).all()
    flagged = result.sensitivity[result.sensitivity["changes_decision"]]
    for r in flagged.itertuples():
        main = result.contrasts.set_index("contrast_id").loc[r.contrast_id]
        assert r.decision != main["decision"] and main["sensitivity"]


def test_replication_store_primary_family_gives_the_audits_holm_p():
    # audit: "Holm over the 4 MNIST CFF − FF contrasts with t gives .137" for A-CFF per-term
    runs = pd.read_parquet(REPO / "results" / "replication_cpu" / "runs")
    result = analyze_runs(runs)
    row = result.primary[(result.primary["dataset"] == "mnist") & (result.primary["label"] == "A-CFF − FF")
                         & (result.primary["scope"] == "theta_placement = per_term")].iloc[0]
    assert row["p"] == pytest.approx(0.0457, abs=5e-5) and row["p_adj"] == pytest.approx(0.137, abs=5e-4)
    assert row["estimate"] == pytest.approx(-0.01471, abs=5e-6)


def test_one_seed_gives_undefined_not_a_verdict():
    result = analyze_runs(_runs(seeds=[0]))
    assert (result.primary["verdict"] == "undefined").all()
    assert result.primary["p"].isna().all() and not (result.contrasts["p"] == 0).any()
    assert all("one seed only" in t for t in result.primary["verdict_text"])


def test_constant_differences_give_undefined_not_p_zero():
    result = analyze_runs(_runs(constant=True))
    cff = result.primary
    assert (cff["verdict"] == "undefined").all() and cff["p_adj"].isna().all()
    assert all("do not vary" in t for t in cff["verdict_text"])
    assert not (result.sensitivity["p"] == 0).any()
    # no zero-width interval that claims a certainty the data cannot give
    assert cff[["ci_low", "ci_high", "ci_adj_low", "ci_adj_high"]].isna().all().all()
    sens = result.sensitivity[result.sensitivity["role"] == "primary"]   # BP - FF is not constant
    assert len(sens) and sens[["ci_low", "ci_high"]].isna().all().all()


def test_missing_cell_is_named_and_reported_not_yet_run():
    result = analyze_runs(_runs(drop=[("a-cff", "single")]))
    row = result.primary[(result.primary["label"] == "A-CFF − FF")
                         & (result.primary["scope"] == "theta_placement = single")].iloc[0]
    assert row["verdict"] == "not yet run" and row["decision"] == "not yet run"
    assert row["verdict_text"] == "not yet run: no a-cff runs at this level"
    assert row["n"] == 0 and math.isnan(row["p"])
    # the declared family of four keeps its size: the untestable contrast counts as a p of 1
    # would (statsmodels' Holm over the three p values and a 1), never making the others milder
    from statsmodels.stats.multitest import multipletests

    assert set(result.primary["family_size"]) == {4}
    defined = result.primary[result.primary["verdict"] != "not yet run"]
    want = multipletests([*defined["p"], 1.0], method="holm")[1][:3]
    assert defined["p_adj"].to_numpy() == pytest.approx(want, rel=1e-12)


PAPER_LIKE = """name = "paper-like"
seeds = [0, 1, 2, 3]
[data]
datasets = ["mnist"]
[grid]
variant = ["ff", "f-cff", "a-cff"]
theta_placement = ["per_term", "single"]
[analysis]
primary = ["a-cff"]
"""


def test_the_planned_family_comes_from_the_study_even_when_a_level_has_no_runs_yet():
    # the primary variant has runs at one theta placement only (as a study part-way through its
    # first seeds): the study plans A-CFF − FF at both, so the Holm family is 2, fixed by the plan
    from statsmodels.stats.multitest import multipletests

    from cffbench.analysis.planned import planned_runs

    study = parse_study(PAPER_LIKE)
    runs = _runs(seeds=range(4), drop=[("a-cff", "single"), ("f-cff", "single")])
    runs = runs[runs["variant"] != "bp"]
    plan = resolve_plan(study.analysis)
    result = analyze_runs(runs, plan, planned=planned_runs(study))
    primary = result.primary.set_index("scope")
    assert list(primary.index) == ["theta_placement = per_term", "theta_placement = single"]
    assert set(primary["family_size"]) == {2}
    assert primary.loc["theta_placement = single", "verdict"] == "not yet run"
    ff = runs[runs["variant"] == "ff"].set_index("seed")["test_acc"].sort_index()
    acff = runs[(runs["variant"] == "a-cff")].set_index("seed")["test_acc"].sort_index()
    p = sps.ttest_rel(acff, ff).pvalue
    assert primary.loc["theta_placement = per_term", "p_adj"] == pytest.approx(
        multipletests([p, 1.0], method="holm")[1][0], rel=1e-12)
    # the secondary contrasts at the level without runs are reported too, never dropped
    secondary = result.contrasts[result.contrasts["role"] == "secondary"]
    assert sorted(zip(secondary["label"], secondary["scope"], secondary["decision"])) == [
        ("F-CFF − FF", "theta_placement = per_term", "significant"),
        ("F-CFF − FF", "theta_placement = single", "not yet run")]
    assert set(secondary["family_size"]) == {2}
    # formed from the stored runs alone, the family would have shrunk to 1
    assert set(analyze_runs(runs, plan).primary["family_size"]) == {1}


def test_the_committed_paper_store_already_has_its_family_of_two():
    from cffbench.analysis import analyze_store

    result = analyze_store(REPO / "results" / "paper_mnist")
    assert list(result.primary["scope"]) == ["theta_placement = per_term", "theta_placement = single"]
    assert set(result.primary["family_size"]) == {2}


def test_inconclusive_verdict_names_the_seeds_that_would_decide_it():
    result = analyze_runs(_runs(seeds=range(4)))
    inconclusive = result.primary[result.primary["verdict"] == "inconclusive"]
    assert len(inconclusive)
    for r in inconclusive.itertuples():
        assert f"about {int(r.seeds_needed)} seeds would decide it" in r.verdict_text
        assert r.seeds_low <= r.seeds_needed <= r.seeds_high and r.small_pilot


def test_a_wilcoxon_plan_reports_hodges_lehmann_and_flags_what_the_t_test_would_change():
    from cffbench.analysis.plan import resolve_plan as resolve
    from cffbench.stats import paired as P

    plan = resolve(parse_study(BASE + '[analysis]\ntest = "wilcoxon"\n').analysis)
    runs = _runs(seeds=range(8))
    result = analyze_runs(runs, plan)
    assert (result.contrasts["test"] == "wilcoxon").all()
    ff = runs[runs["variant"] == "ff"].set_index("seed")["test_acc"]
    for r in result.primary.itertuples():
        theta = r.scope.split(" = ")[1]
        cff = runs[(runs["variant"] == r.variant) & (runs["theta_placement"] == theta)].set_index("seed")["test_acc"]
        d = (cff - ff).sort_index().to_numpy()
        est, low, high, _ = P.hodges_lehmann(d)
        assert (r.estimate, r.ci_low, r.ci_high) == pytest.approx((est, low, high), rel=1e-12)
        # oracle for the p: scipy's exact signed-rank test
        assert r.p == pytest.approx(sps.wilcoxon(d, method="exact").pvalue, rel=1e-12)
        assert r.test_method == "exact"
    sens = result.sensitivity
    assert set(sens.loc[sens["primary_test"], "test"]) == {"wilcoxon"}
    assert plan.hash != resolve_plan(parse_study(BASE).analysis).hash


def test_cli_analyze_uses_the_stored_plan_and_writes_its_hash(tmp_path):
    import json

    from cffbench.cli import main

    root = tmp_path / "results"
    (root / "runs").mkdir(parents=True)
    runs = _runs(seeds=range(16))
    for i, row in enumerate(runs.to_dict("records")):
        frame = pd.DataFrame([{**row, "run_id": f"r{i:03d}", "study": "p"}])
        frame["theta_placement"] = frame["theta_placement"].astype("object")
        frame.to_parquet(root / "runs" / f"r{i:03d}.parquet", index=False)
    (root / "study.toml").write_text(BASE + '[analysis]\ntest = "permutation"\npermutation_resamples = 2000\n',
                                     encoding="utf-8")
    main(["analyze", str(root)])
    meta = json.loads((root / "analysis" / "plan.json").read_text(encoding="utf-8"))
    assert meta["plan"]["test"] == "permutation" and len(meta["plan_hash"]) == 12
    contrasts = pd.read_parquet(root / "analysis" / "contrasts.parquet")
    # 16 seeds > 15: Monte Carlo with the plan's seed, and the method says so
    assert contrasts["test_method"].str.startswith("Monte Carlo (2000 sign flips, seed 0)").all()
    summary = (root / "analysis" / "summary.txt").read_text(encoding="utf-8")
    assert meta["plan_hash"] in summary and "sign-flip permutation" in summary


def test_a_confirmed_gain_smaller_than_the_claim_says_so():
    from cffbench.analysis.verdicts import verdict_text

    assert verdict_text("confirmed", 10, 5, 20, 10, smaller_than_claimed=True).startswith(
        "confirmed, but smaller than the claimed size")
    assert verdict_text("confirmed", 10, 5, 20, 10) == "confirmed"
    # never "about 7 seeds would decide it" to a study that has 10 and is still undecided
    text = verdict_text("inconclusive", 7, 5, 17, 10)
    assert "would decide" not in text and "with 10 seeds, at least the 7" in text
    assert verdict_text("inconclusive", 54, 27, 174, 10).startswith(
        "inconclusive — about 54 seeds would decide it (95 %: 27–174; this study has 10")
    # a tiny, very consistent gain: better than FF and significantly below the 1.2 pp claim
    rows = []
    for seed in range(10):
        rows.append({"dataset": "mnist", "variant": "ff", "seed": seed, "status": "ok", "test_acc": 0.9 + 0.001 * seed})
        rows.append({"dataset": "mnist", "variant": "a-cff", "seed": seed, "status": "ok",
                     "test_acc": 0.9 + 0.001 * seed + 0.002 + 0.0002 * (-1) ** seed})
    primary = analyze_runs(pd.DataFrame(rows)).primary.set_index("variant")
    assert "no f-cff runs" in primary.loc["f-cff", "verdict_text"]   # a missing variant: not yet run
    row = primary.loc["a-cff"]
    assert row["verdict"] == "confirmed" and "smaller than the claimed size" in row["verdict_text"]


def test_the_default_plan_hash_is_the_one_the_committed_evidence_was_decided_by():
    import json

    # a change to any default changes this hash, and then the committed evidence must be rebuilt
    assert resolve_plan().hash == "901d5d142d66"
    for study in ("replication_cpu", "alpha_ablation"):
        meta = json.loads((REPO / "results" / study / "analysis" / "plan.json").read_text(encoding="utf-8"))
        assert meta["plan_hash"] == resolve_plan().hash


def test_the_shipped_paper_study_declares_its_plan_and_keeps_its_run_ids():
    from cffbench.study import load_study

    study = load_study(REPO / "studies" / "paper_table1.toml")
    without = parse_study(study.text.split("\n[analysis]")[0].rsplit("\n# The analysis plan", 1)[0] + "\n",
                          "paper_table1.toml")
    assert [t.run_id for t in expand(study)] == [t.run_id for t in expand(without)]
    plan = resolve_plan(study.analysis)
    assert plan.sesoi == pytest.approx(0.012) and plan.test == "t" and plan.adjust == "holm"
    assert plan.sesoi_source == "the study's [analysis] sesoi_pp"


def test_verdicts_use_the_holm_adjusted_minimum_effect_and_equivalence_p_values():
    """The minimum-effect and TOST p values are adjusted over the family like the two-sided one
    (statsmodels' Holm), and the verdict reads the adjusted ones: a contrast whose unadjusted
    minimum-effect p is below alpha but whose adjusted one is not is not 'ruled out'."""
    from statsmodels.stats.multitest import multipletests

    bites = 0
    for rng_seed in range(1, 20):
        primary = analyze_runs(_runs(rng_seed=rng_seed)).primary
        for column in ("p_me", "p_tost"):
            want = multipletests(primary[column], method="holm")[1]
            assert primary[f"{column}_adj"].to_numpy() == pytest.approx(want, rel=1e-12)
        for r in primary.itertuples():
            if r.verdict == "claimed size ruled out":
                assert r.p_me_adj < 0.05 and r.p_adj >= 0.05
            if r.verdict == "equivalent to FF":
                assert r.p_tost_adj < 0.05 and r.p_adj >= 0.05
            if r.verdict == "inconclusive":
                assert min(r.p_adj, r.p_me_adj, r.p_tost_adj) >= 0.05
            if r.p_adj >= 0.05 and (r.p_me < 0.05 <= r.p_me_adj) and r.p_tost_adj >= 0.05:
                assert r.verdict == "inconclusive"
                bites += 1
    assert bites > 0   # the data above do contain such a contrast, so the check can fail


def test_discrete_test_plan_never_asks_for_fewer_seeds_than_it_needs_to_reject_at_all():
    """A sign-flip test's smallest two-sided p is 2 / 2^n (enumerated here): with 5 seeds and a
    Holm family of 4 it cannot reject (4 · 2/32 = .25), so 'seeds needed' is at least the first n
    with 4 · 2 / 2^n < .05, i.e. 8, and the verdict says why."""
    import itertools

    smallest_p = {n: min(sum(1 for s in itertools.product((1, -1), repeat=n)
                             if abs(sum(s)) >= n) / 2 ** n, 1.0) for n in (5, 7, 8)}
    assert smallest_p == {5: 2 / 32, 7: 2 / 128, 8: 2 / 256}
    first = min(n for n in smallest_p if 4 * smallest_p[n] < 0.05)
    plan = resolve_plan(parse_study(BASE + '[analysis]\ntest = "permutation"\n').analysis)
    primary = analyze_runs(_runs(seeds=range(5)), plan).primary
    assert (primary["n"] == 5).all() and (primary["family_size"] == 4).all()
    assert (primary["p_adj"] >= 0.05).all()
    assert (primary["seeds_needed"] >= first).all() and (primary["seeds_low"] >= first).all()
    undecided = primary[primary["verdict"] == "inconclusive"]
    assert len(undecided) and all(
        f"cannot reject with fewer than {first} seeds" in t for t in undecided["verdict_text"])


def test_contrast_table_prints_a_discrete_interval_at_its_attainable_level():
    """With 3 seeds the widest Hodges–Lehmann interval, [min, max] of the Walsh averages, covers
    1 − 2 / 2^3 = 75 %, not 95 %: the contrast table says so beside the interval."""
    from cffbench.analysis.render import contrast_cells

    plan = resolve_plan(parse_study(BASE + '[analysis]\ntest = "wilcoxon"\n').analysis)
    primary = analyze_runs(_runs(seeds=range(3)), plan).primary
    for r in primary.to_dict("records"):
        assert r["ci_confidence"] == pytest.approx(0.75)
        assert contrast_cells(r)[4].endswith("(75.0 %)")


def test_a_verdict_that_another_test_would_not_reach_is_flagged_not_only_a_decision():
    # 5 seeds, F-CFF = FF + noise of SD 0.15 pp: the t TOST says "equivalent"; a sign-flip or
    # signed-rank TOST at n = 5 cannot go below 1/32 one-sided (x2 under Holm), so neither can
    rng = np.random.default_rng(3)
    rows = []
    for seed in range(5):
        base = 0.9 + 0.01 * seed
        rows.append({"dataset": "mnist", "variant": "ff", "seed": seed, "status": "ok", "test_acc": base})
        for variant in ("f-cff", "a-cff"):
            rows.append({"dataset": "mnist", "variant": variant, "seed": seed, "status": "ok",
                         "test_acc": base + rng.normal(0, 0.0015)})
    result = analyze_runs(pd.DataFrame(rows))
    row = result.primary.set_index("variant").loc["f-cff"]
    assert row["verdict"] == "equivalent to FF" and row["decision"] == "not significant"
    sens = result.sensitivity.set_index(["label", "test"])
    for test in ("permutation", "wilcoxon"):
        other = sens.loc[("F-CFF − FF", test)]
        assert other["decision"] == "not significant"          # the same two-sided decision
        assert other["verdict"] == "inconclusive" and bool(other["changes_decision"])
    assert "sign-flip" in row["sensitivity"] and "inconclusive" in row["sensitivity"]


def test_a_signed_rank_interval_that_cannot_reach_the_simultaneous_level_is_unbounded():
    # n = 5: the exact signed-rank interval is at most 93.75 %; the simultaneous level of a
    # family of 2 at alpha .05 is 97.5 %, so no bounded interval at that level exists
    from cffbench.analysis.plan import resolve_plan

    study = parse_study(BASE.replace("seeds = [0, 1, 2]", "seeds = [0, 1, 2, 3, 4]")
                        .replace('theta_placement = ["per_term", "single"]\n', "")
                        + '[analysis]\ntest = "wilcoxon"\n')
    runs = _runs(seeds=range(5))
    result = analyze_runs(runs[runs["theta_placement"].ne("single") & runs["variant"].ne("bp")],
                          resolve_plan(study.analysis))
    row = result.primary.iloc[0]
    assert row["ci_confidence"] == pytest.approx(0.9375)
    assert (row["ci_adj_low"], row["ci_adj_high"]) == (-math.inf, math.inf)
