"""benchmarks/bf16_paper_check.py on two tiny stores (fp32 and bf16, same seeds): its pairs and
differences against the stored accuracies, whole seeds only, and one-line errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from conftest import make_synthetic_splits
from cffbench.study import read_runs, run_study

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]

STUDY = '''\
name = "{name}"
seeds = [0, 1]
[data]
datasets = ["mnist"]
n_train = 150
[train]
hidden = [32, 32]
epochs_per_layer = 60
train_eval_size = 100
precision = "{precision}"
[grid]
variant = ["ff", "a-cff"]
theta_placement = ["per_term", "single"]
'''


def synthetic_load(name, root, n_train=None, seed=0):
    return make_synthetic_splits(n_train=n_train or 150, n_eval=100, n_features=32, seed=seed)


@pytest.fixture(scope="module")
def check():
    spec = importlib.util.spec_from_file_location("bf16_paper_check",
                                                  REPO / "benchmarks" / "bf16_paper_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("bf16check")
    out = {}
    for precision in ("fp32", "bf16"):
        study = root / f"s_{precision}.toml"
        study.write_text(STUDY.format(name=f"s_{precision}", precision=precision))
        out[precision] = root / f"s_{precision}"
        run_study(study, out[precision], executor="serial", load_fn=synthetic_load,
                  data_root=root)
    return out


def test_pairs_every_bf16_run_with_the_fp32_run_of_its_seed_and_condition(check, stores, capsys):
    assert check.main(["--fp32", str(stores["fp32"]), "--bf16", str(stores["bf16"])]) == 0
    text = capsys.readouterr().out
    fp32, bf16 = read_runs(stores["fp32"]), read_runs(stores["bf16"])
    assert set(fp32["precision"]) == {"fp32"} and set(bf16["precision"]) == {"bf16"}
    key = lambda r: (r["variant"], r["theta_placement"] if r["variant"] != "ff" else None,  # noqa: E731
                     r["seed"])
    want = {key(r): r["test_acc"] for r in fp32.to_dict("records")}
    rows = 0
    for r in bf16.to_dict("records"):
        label = r["variant"] if r["variant"] == "ff" else f"{r['variant']} {r['theta_placement']}"
        diff = 100 * (r["test_acc"] - want[key(r)])
        line = (f"| {label} | {r['seed']} | {100 * want[key(r)]:.2f} | {100 * r['test_acc']:.2f} | "
                f"{diff:+.2f} |")
        assert line in text, line
        rows += 1
    assert rows == 2 * 3                       # 2 seeds × (ff, a-cff per_term, a-cff single)
    assert "Paired seeds (whole blocks of the bf16 store): 0, 1" in text
    assert "bf16 MAY be used" in text or "bf16 may NOT be used" in text


def test_a_seed_missing_a_condition_is_left_out_and_an_empty_store_is_a_one_line_error(
        check, stores, tmp_path, capsys):
    import shutil

    partial = tmp_path / "partial"
    shutil.copytree(stores["bf16"], partial)
    runs = read_runs(partial)
    drop = runs[(runs["seed"] == 1) & (runs["variant"] == "ff")]["run_id"].iloc[0]
    (partial / "runs" / f"{drop}.parquet").unlink()
    assert check.main(["--fp32", str(stores["fp32"]), "--bf16", str(partial)]) == 0
    assert "Paired seeds (whole blocks of the bf16 store): 0\n" in capsys.readouterr().out
    assert check.main(["--fp32", str(stores["fp32"]), "--bf16", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("bf16_paper_check: ") and "\n" not in err
