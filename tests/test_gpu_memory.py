"""``estimate_run_memory`` against the measured peak of a real CPU run, and ``tasks_per_gpu = auto``.

Truth: torch.profiler's memory events (``profile_memory=True``), summed in time order over the
whole ``train_run``, give the peak of the tensors the run allocated. A GPU run also copies the
data to the device (on CPU ``.to("cpu")`` is a no-op), so the bytes of the largest data set it
copies (x_train) are added. The estimate must be an upper bound within 2x of that.
"""

from __future__ import annotations

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from conftest import make_synthetic_splits
from cffbench.ff import TrainConfig, train_run
from cffbench.study import gpu
from cffbench.study.gpu import (AUTO_TASKS_CAP, CONTEXT_BYTES, MEMORY_FRACTION,
                                auto_tasks_per_gpu, estimate_run_memory)

torch.set_num_threads(1)


def measured_peak_bytes(config: TrainConfig, splits) -> int:
    """Peak of (allocated - freed) bytes over the run, from the profiler's memory events."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        train_run(config, splits)
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    total = peak = 0
    for event in events:
        total += event.nbytes()
        peak = max(peak, total)
    assert total == 0 or abs(total) < peak   # the run frees (almost) all it allocated
    return peak


CASES = [
    dict(variant="ff"),
    dict(variant="f-cff"),
    dict(variant="a-cff"),
    dict(variant="bp"),
    dict(variant="ff", batch_size=500),
    dict(variant="f-cff", batch_size=500),
    dict(variant="bp", batch_size=300),
    dict(variant="ff", schedule="alternating"),
    dict(variant="f-cff", negatives="redraw"),
    dict(variant="ff", precision="bf16"),
    dict(variant="f-cff", hidden=(300, 100, 200)),
]


@pytest.mark.parametrize("fields", CASES, ids=lambda f: "-".join(str(v) for v in f.values()))
def test_memory_estimate_is_an_upper_bound_within_2x_of_the_measured_peak(fields):
    splits = make_synthetic_splits(n_train=1200, n_eval=400, n_features=256)
    config = TrainConfig(**{"hidden": (300, 200), "epochs_per_layer": 2,
                            "train_eval_size": 1000, **fields})
    device_copy = splits.x_train.numel() * splits.x_train.element_size()
    measured = measured_peak_bytes(config, splits) + device_copy
    estimate = estimate_run_memory(config, 1200, 400, 400, 256, 10)
    assert measured <= estimate <= 2 * measured, (estimate / measured, fields)


def test_training_dominated_run_is_bounded_too():
    # many training rows, few evaluation rows: the layer phase, not evaluation, sets the peak
    splits = make_synthetic_splits(n_train=3000, n_eval=100, n_features=128)
    config = TrainConfig(variant="f-cff", hidden=(200, 200), epochs_per_layer=2,
                         train_eval_size=100)
    measured = measured_peak_bytes(config, splits) + splits.x_train.numel() * 4
    estimate = estimate_run_memory(config, 3000, 100, 100, 128, 10)
    assert measured <= estimate <= 2 * measured


def test_estimate_grows_with_the_data_by_at_least_the_overlay_bytes():
    # the unit-direction overlay (N x D floats) stays on the device the whole run
    config = TrainConfig(hidden=(500, 500))
    small = estimate_run_memory(config, 10_000, 10_000, 10_000, 784, 10)
    large = estimate_run_memory(config, 50_000, 10_000, 10_000, 784, 10)
    assert large - small >= 40_000 * 784 * 4


def test_auto_tasks_per_gpu_fills_the_free_memory_up_to_the_cap():
    gib = 2**30
    assert auto_tasks_per_gpu(gib, 4 * gib) == int(MEMORY_FRACTION * 4 * gib // (gib + CONTEXT_BYTES))
    assert auto_tasks_per_gpu(gib, 4 * gib) == 2
    assert auto_tasks_per_gpu(gib, 80 * gib) == AUTO_TASKS_CAP
    assert auto_tasks_per_gpu(64 * gib, 8 * gib) == 1   # too big to fit: still one at a time


class FakeProbe:
    """Stands in for torch.cuda: ``count`` GPUs with ``free`` bytes each."""

    def __init__(self, count: int, free: int) -> None:
        self.count, self.free = count, free

    def device_count(self) -> int:
        return self.count

    def mem_get_info(self, index: int) -> tuple[int, int]:
        assert 0 <= index < self.count
        return self.free, 80 * 2**30


def test_auto_uses_the_largest_run_of_the_study_and_the_smallest_free_memory(monkeypatch):
    from cffbench.study import parse_study

    study = parse_study('name = "s"\nseeds = [0, 1]\n[data]\ndatasets = ["mnist"]\nn_train = 2000\n'
                        '[train]\nhidden = [500, 500]\n[grid]\nvariant = ["ff", "bp"]\n'
                        '[execution]\ntasks_per_gpu = "auto"\n')
    monkeypatch.setattr(gpu, "PROBE", FakeProbe(2, 3 * 2**30))
    plan = gpu.gpu_plan(study, "cuda")
    shape = dict(n_train=2000, n_val=10_000, n_test=10_000, n_features=784, n_classes=10)
    largest = max(estimate_run_memory(TrainConfig(variant=v, hidden=(500, 500)), **shape)
                  for v in ("ff", "bp"))
    assert plan.peak_bytes == largest
    assert plan.gpus == [0, 1] and plan.free_bytes == 3 * 2**30
    assert plan.tasks_per_gpu == auto_tasks_per_gpu(largest, 3 * 2**30)
    stacked = gpu.gpu_plan(study.model_copy(update={"execution": study.execution.model_copy(
        update={"stack_seeds": True})}), "cuda")
    assert stacked.peak_bytes == 2 * largest   # a stacked group of 2 seeds is one job
