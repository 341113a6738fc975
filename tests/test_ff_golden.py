"""Golden results: the exact outcome of a handful of tiny CPU runs, bit for bit.

Every value in ``tests/data/golden_runs_v<version>_<kernel>.json`` was produced by the engine of
that :data:`cffbench.ff.NUMERICS_VERSION` as it stood when the file was written (one torch thread,
that machine's torch build); floats are stored as ``float.hex`` so the comparison is exact, not
"close". Any change to the engine's numerics (the order of the per-purpose RNG streams, an
operation reordered in the hot loop, a different reduction) fails here. Such a change must be
deliberate: bump :data:`cffbench.ff.NUMERICS_VERSION` and write the new version's file in the
same commit::

    PYTHONPATH=. python tests/test_ff_golden.py --write

A refactor that keeps the numerics must pass unchanged. Each file records the numerics version,
torch version and CPU kernel level (``torch.backends.cpu.get_cpu_capability()``) it was written
with: bit-exactness is only promised for the same version, torch build, kernel level and thread
count, so there is one file per version and platform; on a platform without one for the current
version the bit-for-bit tests skip and say why (``--write`` there pins it). On every platform the
runs must also agree with every file to rounding (same accuracies within one test image, curves
within 1e-3 relative): kernels reorder float sums, nothing more. Files of earlier versions stay
while a bump only reordered sums (versions 2 and 3 did), so that claim stays tested; a bump that
changes results beyond rounding (another RNG order) deletes them in the same commit.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
GOLDEN_DIR = HERE / "data"

#: sha256 of the golden runs each (NUMERICS_VERSION, torch, CPU kernel level) produced. Append a
#: row when NUMERICS_VERSION is bumped (or the file is rewritten on another platform); never edit
#: a row: that is what makes regenerating the file without a bump fail.
GOLDEN_RUNS_SHA256 = {
    (1, "2.14.1+cu130", "AVX512"): "4e247171b50cf796f23403cc71697ebeed41863b4890050fd98c417124409659",
    (1, "2.14.1+cu130", "AVX2"): "949298bbc5c95a1e3064d348d9ede12e0bdb188a0a6ccf35ffabaf4fe2558935",
    (2, "2.14.1+cu130", "AVX2"): "0b989b42f9af94723d768654a31af3897f81b1818239b99625263fb33f96495e",
    (3, "2.14.1+cu130", "AVX2"): "664ecc4eb87c5aea058d6163ca4dde297c036b6d55188c522345c2285887eb10",
    (3, "2.14.1+cu130", "AVX512"): "c996e7683f43fe1f5a26c57f90aeab55f7b2671e02ceec0f43abf00224aebe08",
}

from cffbench.ff import TrainConfig, train_run, train_stacked  # noqa: E402
from conftest import make_synthetic_splits  # noqa: E402

SMALL = dict(hidden=(24, 20, 16), epochs_per_layer=15)

#: name -> TrainConfig fields; synthetic data (``make_synthetic_splits(120, 60, 32)``).
CASES: dict[str, dict] = {
    "ff": dict(variant="ff", **SMALL),
    "ff_alternating_permutation": dict(variant="ff", schedule="alternating",
                                       negatives="permutation", **SMALL),
    "fcff_per_term": dict(variant="f-cff", theta_placement="per_term", seed=1, **SMALL),
    "fcff_single_distance": dict(variant="f-cff", theta_placement="single", alpha="distance",
                                 gamma=0.7, **SMALL),
    "acff_per_term_learned_alpha_adam": dict(variant="a-cff", theta_placement="per_term",
                                             alpha="learned", gamma_optimizer="adam",
                                             gamma_lr=0.05, seed=2, **SMALL),
    "acff_single_minibatch_redraw_alternating": dict(variant="a-cff", theta_placement="single",
                                                     batch_size=50, negatives="redraw",
                                                     schedule="alternating", gamma_lr=0.1,
                                                     **SMALL),
    "bp": dict(variant="bp", batch_size=40, **SMALL),
}
#: Seed-stacked engine: these seeds of one A-CFF configuration as one batched model.
STACKED = dict(variant="a-cff", alpha="ones", **SMALL)
STACKED_SEEDS = (0, 3)


def _hex(value: float) -> str:
    return float(value).hex()


def curves_digest(curves) -> str:
    """sha256 over every curve cell (floats as ``float.hex``, text as is), row by row."""
    h = hashlib.sha256()
    for row in curves.itertuples(index=False):
        h.update(("|".join(_hex(v) if isinstance(v, float) else str(v) for v in row) + "\n")
                 .encode())
    return h.hexdigest()


def summary(result) -> dict:
    """What the golden file pins of one :class:`RunResult` (times and devices excluded)."""
    curves = result.curves
    picks = sorted({0, len(curves) // 2, len(curves) - 1}) if len(curves) else []
    return {
        "status": result.status,
        "diverged_epoch": result.diverged_epoch,
        "test_acc": _hex(result.test_acc), "val_acc": _hex(result.val_acc),
        "train_acc": _hex(result.train_acc),
        "gamma_final": [_hex(g) for g in result.gamma_final],
        "alpha_final": [[_hex(a) for a in row] for row in result.alpha_final],
        "layer_goodness": [[_hex(s["g_pos"]), _hex(s["g_neg"])] for s in result.layer_stats],
        "curve_points": [{"layer": int(curves["layer"].iloc[i]), "epoch": int(curves["epoch"].iloc[i]),
                          "loss": _hex(curves["loss"].iloc[i]), "g_pos": _hex(curves["g_pos"].iloc[i]),
                          "g_neg": _hex(curves["g_neg"].iloc[i]), "gamma": _hex(curves["gamma"].iloc[i])}
                         for i in picks],
        "curve_rows": len(curves),
        "curves_sha256": curves_digest(curves),
        "notes": list(result.notes),
    }


def mnist_case(data_root: Path):
    from cffbench.data import load_splits

    splits = load_splits("mnist", data_root, n_train=200, seed=0)
    return TrainConfig(variant="a-cff", hidden=(32, 16), epochs_per_layer=10,
                       train_eval_size=100), splits


def compute(data_root: Path | None) -> dict:
    """Every golden case, computed now (one torch thread)."""
    splits = make_synthetic_splits(n_train=120, n_eval=60, n_features=32)
    out = {name: summary(train_run(TrainConfig(**fields), splits)) for name, fields in CASES.items()}
    stacked = train_stacked([TrainConfig(seed=s, **STACKED) for s in STACKED_SEEDS],
                            [splits] * len(STACKED_SEEDS))
    for seed, result in zip(STACKED_SEEDS, stacked):
        out[f"stacked_acff_seed{seed}"] = summary(result)
    if data_root is not None:
        config, mnist = mnist_case(data_root)
        out["mnist_acff"] = summary(train_run(config, mnist))
    return out


def golden_path(numerics_version: int, cpu_capability: str) -> Path:
    """The golden file of a numerics version and CPU kernel level."""
    return GOLDEN_DIR / f"golden_runs_v{numerics_version}_{cpu_capability}.json"


def golden_files() -> list[dict]:
    """Every committed golden file's contents (one per numerics version and platform)."""
    return [json.loads(p.read_text(encoding="utf-8"))
            for p in sorted(GOLDEN_DIR.glob("golden_runs*.json"))]


def platform() -> dict:
    from cffbench.ff import NUMERICS_VERSION

    return {"numerics_version": NUMERICS_VERSION, "torch_version": str(torch.__version__),
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def _of(data: dict) -> dict:
    return {k: data.get(k) for k in platform()}


@pytest.fixture(scope="module")
def golden() -> dict:
    mine = [data for data in golden_files() if _of(data) == platform()]
    if not mine:
        pytest.skip(f"no golden file for {platform()} (written for "
                    f"{[_of(d) for d in golden_files()]}): bit-exact results are not comparable "
                    f"across numerics versions, torch builds or CPU kernels")
    return mine[0]


@pytest.fixture(scope="module")
def synthetic():
    return make_synthetic_splits(n_train=120, n_eval=60, n_features=32)


def _compare(name: str, got: dict, want: dict) -> None:
    for key in want:
        assert got[key] == want[key], f"{name}: {key} changed (numerics changed: see module doc)"


@pytest.mark.parametrize("name", sorted(CASES))
def test_tiny_run_reproduces_its_golden_result_bit_for_bit(golden, synthetic, name):
    got = summary(train_run(TrainConfig(**CASES[name]), synthetic))
    _compare(name, got, golden["runs"][name])


def test_stacked_runs_reproduce_their_golden_results_bit_for_bit(golden, synthetic):
    results = train_stacked([TrainConfig(seed=s, **STACKED) for s in STACKED_SEEDS],
                            [synthetic] * len(STACKED_SEEDS))
    for seed, result in zip(STACKED_SEEDS, results):
        name = f"stacked_acff_seed{seed}"
        _compare(name, summary(result), golden["runs"][name])


def test_row_blocks_of_the_hot_loop_leave_every_result_bit_identical(synthetic, monkeypatch):
    # The engine's row-wise work (label shift, ReLU, row norm, direction, ∂L/∂pre, δ_pos + δ_neg)
    # runs over blocks of ROW_BLOCK rows; the golden runs fit in one block, so cut them into
    # blocks of 32 rows (120 = 3 · 32 + 24; minibatches of 50 = 32 + 18): every pinned value must
    # stay the same, bit for bit. (A block under 8 rows would not: MKL computes the label
    # shift's product of so few rows with another kernel; see ROW_BLOCK.) In bf16 the blocks
    # also copy each product to fp32 with its bias and cast δ for the gradient product, so every
    # FF case runs in bf16 too.
    from cffbench.ff import layers

    def everything() -> dict:
        out = {name: summary(train_run(TrainConfig(**fields), synthetic))
               for name, fields in CASES.items()}
        out.update({f"{name}_bf16": summary(train_run(TrainConfig(**fields, precision="bf16"),
                                                      synthetic))
                    for name, fields in CASES.items() if fields["variant"] != "bp"})
        stacked = train_stacked([TrainConfig(seed=s, **STACKED) for s in STACKED_SEEDS],
                                [synthetic] * len(STACKED_SEEDS))
        out.update({f"stacked_acff_seed{s}": summary(r) for s, r in zip(STACKED_SEEDS, stacked)})
        return out

    whole = everything()
    assert layers.ROW_BLOCK >= 2 * synthetic.x_train.shape[0]   # one block: the unblocked values
    monkeypatch.setattr(layers, "ROW_BLOCK", 32)
    assert len(layers.row_blocks(120)) == 4
    blocked = everything()
    for name in whole:
        _compare(name, blocked[name], whole[name])


def test_mnist_subset_run_reproduces_its_golden_result_bit_for_bit(golden, data_root):
    config, splits = mnist_case(data_root)
    _compare("mnist_acff", summary(train_run(config, splits)), golden["runs"]["mnist_acff"])


def test_a_golden_file_pins_this_numerics_version():
    from cffbench.ff import NUMERICS_VERSION

    assert any(g["numerics_version"] == NUMERICS_VERSION for g in golden_files()), (
        f"NUMERICS_VERSION is {NUMERICS_VERSION} but no golden file was written by it: run "
        f"`python tests/test_ff_golden.py --write` in the same commit")
    for golden in golden_files():   # each in the file its version and platform name
        assert golden_path(golden["numerics_version"], golden["cpu_capability"]).is_file()


def test_golden_values_change_only_with_a_new_numerics_version():
    import hashlib

    for golden in golden_files():
        key = (golden["numerics_version"], golden["torch_version"], golden["cpu_capability"])
        digest = hashlib.sha256(json.dumps(golden["runs"], sort_keys=True).encode()).hexdigest()
        assert key in GOLDEN_RUNS_SHA256, f"no GOLDEN_RUNS_SHA256 row for {key}: add one"
        assert digest == GOLDEN_RUNS_SHA256[key], (
            "the golden results changed but NUMERICS_VERSION did not: the numerics changed, so "
            "bump NUMERICS_VERSION (checkpoints of the old numerics are then refused) and add a row")


def _close(name: str, got: dict, want: dict, where: str) -> None:
    """``got`` equals ``want`` up to float rounding (another CPU kernel's sums)."""
    fx = float.fromhex
    assert (got["status"], got["diverged_epoch"], got["curve_rows"], got["notes"]) == \
        (want["status"], want["diverged_epoch"], want["curve_rows"], want["notes"]), name
    for key in ("test_acc", "val_acc", "train_acc"):
        assert abs(fx(got[key]) - fx(want[key])) <= 1 / 60 + 1e-12, f"{name}: {key} vs {where}"
    pairs = [(g, w) for key in ("gamma_final", "layer_goodness") for g, w in
             zip(_flat(got[key]), _flat(want[key]), strict=True)]
    pairs += [(g[k], w[k]) for g, w in zip(got["curve_points"], want["curve_points"], strict=True)
              for k in ("loss", "g_pos", "g_neg", "gamma")]
    for g, w in pairs:
        assert math.isclose(fx(g), fx(w), rel_tol=1e-3, abs_tol=1e-6) or (
            math.isnan(fx(g)) and math.isnan(fx(w))), f"{name}: {g} vs {w} of {where}"


def _flat(values) -> list:
    return [v for item in values for v in (_flat(item) if isinstance(item, list) else [item])]


def test_tiny_runs_agree_with_every_platforms_golden_results_to_rounding(data_root):
    got = compute(data_root)
    for golden in golden_files():
        for name, want in golden["runs"].items():
            _close(name, got[name], want, f"the v{golden['numerics_version']} "
                                          f"{golden['cpu_capability']} golden file")


def test_golden_values_are_real_results():
    # guards the files: finished runs, accuracies that tell runs apart, γ moved for a-cff
    for golden in golden_files():
        _real_results(golden["runs"])


def _real_results(runs: dict) -> None:
    assert all(r["status"] == "ok" for r in runs.values())
    assert all(0.0 <= float.fromhex(r["test_acc"]) <= 1.0 for r in runs.values())
    assert len({r["test_acc"] for r in runs.values()}) > 3   # the accuracies tell runs apart
    assert math.isfinite(float.fromhex(runs["acff_per_term_learned_alpha_adam"]["gamma_final"][0]))
    assert float.fromhex(runs["acff_per_term_learned_alpha_adam"]["gamma_final"][0]) != 1.0


if __name__ == "__main__":   # regenerate: python tests/test_ff_golden.py --write
    if "--write" not in sys.argv:
        sys.exit("usage: python tests/test_ff_golden.py --write  (after bumping NUMERICS_VERSION)")
    torch.set_num_threads(1)
    from cffbench.data import default_data_root
    from cffbench.ff import NUMERICS_VERSION

    root = Path(os.environ.get("CFFBENCH_DATA", default_data_root()))
    payload = {**platform(), "threads": 1, "runs": compute(root)}
    path = golden_path(NUMERICS_VERSION, payload["cpu_capability"])
    path.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {path}")
