"""When a store's plan was declared: cffbench run records each [analysis] table it sees, with the
time and the runs already stored; every analysis output says whether the plan analysed is the one
recorded before the runs, and a change made after runs existed is reported as a deviation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import make_synthetic_splits
from cffbench.analysis import analyze_results, analyze_store, load, resolve_plan
from cffbench.analysis.registration import assess
from cffbench.study import parse_study, run_study
from cffbench.study.plan_record import PLAN_RECORD, declared_analysis, read_plan_record

torch.set_num_threads(1)

STUDY = '''\
name = "registered"
seeds = [0, 1, 2]
[data]
datasets = ["mnist"]
n_train = 200
[train]
hidden = [16, 16]
epochs_per_layer = 2
train_eval_size = 100
[grid]
variant = ["ff", "f-cff"]
[analysis]
primary = ["f-cff"]
'''


def _load(name, root, n_train=None, seed=0):
    return make_synthetic_splits(n_train=n_train or 200, n_eval=100, n_features=32, seed=seed)


def _run(study_file: Path, results: Path):
    (results.parent / "dataroot").mkdir(exist_ok=True)
    return run_study(study_file, results, executor="serial", load_fn=_load,
                     data_root=results.parent / "dataroot")


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    root = tmp_path_factory.mktemp("registration")
    study_file = root / "registered.toml"
    study_file.write_text(STUDY, encoding="utf-8")
    results = root / "results"
    _run(study_file, results)
    return study_file, results


def test_a_plan_declared_before_the_runs_is_pre_registered(registered):
    study_file, results = registered
    [entry] = read_plan_record(results)
    assert entry["runs_stored"] == [] and entry["first_seen"].endswith("Z")
    assert entry["analysis"] == declared_analysis(parse_study(STUDY))
    registration = analyze_store(results).registration
    plan = resolve_plan(parse_study(STUDY).analysis)
    assert registration.status == "pre-registered"
    assert registration.text.startswith(f"Plan {plan.hash} was pre-registered: first recorded {entry['first_seen']}")


def test_a_prose_edit_records_nothing_and_a_plan_change_after_the_runs_is_a_deviation(registered, tmp_path):
    from bs4 import BeautifulSoup

    from cffbench.report import build_report
    from cffbench.report.findings import findings_block

    study_file, original = registered
    results = tmp_path / "results"
    shutil.copytree(original, results)
    study_file = tmp_path / "registered.toml"
    study_file.write_text(STUDY + "# a comment: not a new plan\n", encoding="utf-8")
    _run(study_file, results)
    assert len(read_plan_record(results)) == 1
    study_file.write_text(STUDY + "alpha = 0.01\n", encoding="utf-8")
    summary = _run(study_file, results)
    first, second = read_plan_record(results)
    assert second["analysis"]["alpha"] == 0.01 and len(second["runs_stored"]) == 6
    assert any("recorded with 6 finished run(s) already stored" in n for n in summary.notes)

    analysis = analyze_results(results)
    registration = analysis.plan.registration
    assert registration.status == "deviation" and registration.deviation
    assert registration.text.startswith("DEVIATION FROM THE PRE-REGISTERED PLAN")
    assert resolve_plan(parse_study(STUDY).analysis).hash in registration.text   # the first plan
    assert "with 6 run(s) already stored" in registration.text
    # ... and every output says so
    assert analysis.plan.notes[0] == registration.text
    assert load(results / "analysis").registration == registration
    saved = json.loads((results / "analysis" / "plan.json").read_text(encoding="utf-8"))
    assert saved["registration"]["status"] == "deviation"
    assert registration.text in (results / "analysis" / "summary.txt").read_text(encoding="utf-8")
    written = build_report(results, out=tmp_path / "report", formats="html,latex")
    soup = BeautifulSoup(written["html"].read_text(encoding="utf-8"), "html5lib")
    first_box = [li.get_text(" ", strip=True) for li in soup.select("#warnings li")]
    assert first_box[0] == registration.text                       # the first thing a reader sees
    assert registration.text in findings_block(results)


def test_a_study_file_edited_by_hand_beside_the_runs_is_a_deviation(registered, tmp_path):
    _, original = registered
    results = tmp_path / "results"
    shutil.copytree(original, results)
    stored = results / "study.toml"
    stored.write_text(stored.read_text(encoding="utf-8").replace('primary = ["f-cff"]',
                                                                 'primary = ["f-cff"]\ntest = "wilcoxon"'),
                      encoding="utf-8")
    registration = analyze_store(results).registration
    assert registration.status == "deviation" and "never recorded by cffbench run" in registration.text


def test_the_record_changing_makes_a_saved_analysis_stale(registered, tmp_path):
    from cffbench.analysis import is_fresh

    _, original = registered
    results = tmp_path / "results"
    shutil.copytree(original, results)
    analyze_results(results)
    assert is_fresh(results)
    record = json.loads((results / PLAN_RECORD).read_text(encoding="utf-8"))
    record["declared"][0]["runs_stored"] = ["0123456789abcdef"]
    (results / PLAN_RECORD).write_text(json.dumps(record), encoding="utf-8")
    assert not is_fresh(results)
    assert analyze_store(results).registration.status == "recorded late"


def _entry(analysis: str, runs: list[str], when: str = "2026-12-01T10:00:00Z") -> dict:
    return {"analysis": declared_analysis(parse_study(STUDY.replace('primary = ["f-cff"]\n', analysis))),
            "first_seen": when, "git_commit": "abc", "runs_stored": runs}


def test_assess_tells_late_records_amendments_and_missing_records_apart():
    plan = resolve_plan(parse_study(STUDY).analysis)
    late = assess([_entry('primary = ["f-cff"]\n', ["r1", "r2"])], plan)
    assert late.status == "recorded late" and "2 run(s) were already stored" in late.text
    assert not late.deviation
    amended = assess([_entry('primary = ["f-cff"]\ntest = "wilcoxon"\n', []),
                      _entry('primary = ["f-cff"]\n', [], "2026-12-01T11:00:00Z")], plan)
    assert amended.status == "amended before the runs" and not amended.deviation
    changed = assess([_entry('primary = ["f-cff"]\ntest = "wilcoxon"\n', []),
                      _entry('primary = ["f-cff"]\n', ["r1"], "2026-12-01T11:00:00Z")], plan)
    assert changed.deviation and "2026-12-01T11:00:00Z (cffbench abc), with 1 run(s) already stored" in changed.text
    none = assess([], plan)
    assert none.status == "no record" and plan.hash in none.text and not none.deviation
