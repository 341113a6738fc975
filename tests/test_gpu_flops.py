"""``run_flops`` against torch's FlopCounterMode around real small runs, and the plan's GPU figure.

FlopCounterMode counts ``mm`` / ``addmm`` / ``bmm`` (``2·m·k·n``) but not the in-place ``addmm_``
the engine uses for layer 1's positive label columns and label gradient (``4·R·C·d_1`` per step),
nor ``mv`` / ``addr`` (the rank-one label overlay at prediction) or elementwise ops. So the
analytic count is at least the counted one and exceeds it by a few percent for the FF family; for
``bp`` (plain ``F.linear`` + autograd) the two agree exactly.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from conftest import make_synthetic_splits
from cffbench.ff import TrainConfig, train_run
from cffbench.study import gpu, parse_study, plan_study
from cffbench.study.flops import STEP_OVERHEAD_S, optimizer_steps, run_flops

torch.set_num_threads(1)

CASES = [
    dict(variant="ff"),
    dict(variant="f-cff"),
    dict(variant="a-cff"),
    dict(variant="bp"),
    dict(variant="ff", batch_size=250),
    dict(variant="bp", batch_size=250),
    dict(variant="f-cff", schedule="alternating"),
    dict(variant="f-cff", negatives="redraw"),
    dict(variant="a-cff", hidden=(100, 50, 80)),
    dict(variant="ff", hidden=(64,)),
]


@pytest.mark.parametrize("fields", CASES, ids=lambda f: "-".join(str(v) for v in f.values()))
def test_run_flops_matches_flop_counter_mode_on_a_real_run(fields):
    splits = make_synthetic_splits(n_train=600, n_eval=200, n_features=256)
    config = TrainConfig(**{"hidden": (100, 80), "epochs_per_layer": 3, "train_eval_size": 300,
                            **fields})
    with FlopCounterMode(display=False) as counter:
        train_run(config, splits)
    counted = counter.get_total_flops()
    analytic = run_flops(config, 600, 200, 200, 256, 10)
    if config.variant == "bp":
        assert analytic == counted
    else:
        assert counted <= analytic <= 1.05 * counted, analytic / counted


def test_flops_scale_linearly_in_epochs_per_layer_for_training():
    # training is E x (per-epoch work); evaluation and the final pass do not depend on E
    shape = dict(n_train=1000, n_val=100, n_test=100, n_features=784, n_classes=10)
    one, two, three = (run_flops(TrainConfig(variant="f-cff", epochs_per_layer=e), **shape)
                       for e in (1, 2, 3))
    assert two - one == three - two > 0


STUDY = '''\
name = "gpu-plan"
seeds = [0, 1, 2]
[data]
datasets = ["mnist"]
n_train = 1000
[train]
hidden = [100, 100]
epochs_per_layer = 50
batch_size = 250
[grid]
variant = ["ff", "a-cff"]
[execution]
tasks_per_gpu = 3
device = "cuda"
'''


class FakeProbe:
    def device_count(self) -> int:
        return 2

    def mem_get_info(self, index: int) -> tuple[int, int]:
        return 40 * 2**30, 80 * 2**30


def test_plan_gpu_estimate_sums_flops_and_divides_by_gpus_and_tasks(monkeypatch, tmp_path):
    monkeypatch.setattr(gpu, "PROBE", FakeProbe())
    study = parse_study(STUDY)
    plan = plan_study(study, tmp_path / "r", calibrate=False, gpu_tflops=10.0)
    expected = 0.0
    for variant in ("ff", "a-cff"):
        config = TrainConfig(variant=variant, hidden=(100, 100), epochs_per_layer=50,
                             batch_size=250)
        flops = run_flops(config, 1000, 10_000, 10_000, 784, 10)
        steps = optimizer_steps(config, 1000)
        assert steps == 50 * 2 * 4
        expected += 3 * (flops / 10e12 + steps * STEP_OVERHEAD_S)
    assert plan.gpu_total_s == pytest.approx(expected)
    assert (plan.n_gpus, plan.tasks_per_gpu, plan.workers) == (2, 3, 6)
    assert plan.gpu_serial_s == pytest.approx(expected / 2)
    assert plan.gpu_optimistic_s == pytest.approx(expected / 6)
    assert plan.gpu["runs"].tolist() == [3, 3]
    text = plan.to_text()
    assert "not a measurement" in text
    assert "serial bound" in text and "optimistic bound" in text


def test_plan_cli_prints_the_gpu_estimate_without_a_gpu(tmp_path, capsys):
    from cffbench.cli import main

    path = tmp_path / "s.toml"
    path.write_text(STUDY.replace('device = "cuda"', 'device = "cpu"'))
    main(["plan", str(path), "--results", str(tmp_path / "r"), "--no-calibrate",
          "--gpu-tflops", "20"])
    out = capsys.readouterr().out
    assert "GPU estimate at 20 TFLOPS (a FLOP count, not a measurement)" in out
    assert "no GPU visible, 1 assumed" in out
    assert not (tmp_path / "r").exists()   # plan writes nothing


def test_non_positive_gpu_tflops_is_a_one_line_error(tmp_path, capsys):
    from cffbench.cli import main

    path = tmp_path / "s.toml"
    path.write_text(STUDY.replace('device = "cuda"', 'device = "cpu"'))
    with pytest.raises(SystemExit) as exit_info:
        main(["plan", str(path), "--no-calibrate", "--gpu-tflops", "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == "cffbench: error: --gpu-tflops must be > 0 (got 0.0)"


def test_calibration_on_cuda_synchronizes_around_each_timed_run(monkeypatch, tmp_path):
    events: list[str] = []

    def fake_train(config, splits, device="cpu", on_epoch=None):
        events.append(f"train {device} {config.epochs_per_layer}")

    def tiny_load(name, root, n_train=None, seed=0):
        return make_synthetic_splits(n_train=20, n_eval=10, n_features=16, seed=seed)

    monkeypatch.setattr(gpu, "PROBE", FakeProbe())
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: events.append("sync"))
    study = parse_study(STUDY.replace('variant = ["ff", "a-cff"]', 'variant = ["ff"]'))
    plan = plan_study(study, tmp_path / "r", train_fn=fake_train, load_fn=tiny_load)
    # untimed warm-up, then the 2- and 6-epoch runs, each between two synchronisations
    assert events == ["train cuda 1", "sync", "train cuda 2", "sync", "sync", "train cuda 6", "sync"]
    assert "the GPU cuda, synchronised" in plan.method
