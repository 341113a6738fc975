"""``[execution] tasks_per_gpu``: parsing, run-id stability, worker counts and device spreading.

No GPU is needed: :data:`cffbench.study.gpu.PROBE` is replaced by a fake that reports GPUs, and
the local pool runs a stand-in ``train_fn`` that records the device it was handed.
"""

from __future__ import annotations

import os

import pytest

from cffbench.errors import StudyError
from cffbench.ff.result import RunResult
from cffbench.study import expand, gpu, make_executor, parse_study
from cffbench.study.executors import LocalExecutor
from cffbench.study.runner import resolve_execution

BASE = '''\
name = "gpu-exec"
seeds = [0, 1]
[data]
datasets = ["mnist"]
n_train = 500
[train]
hidden = [50, 50]
epochs_per_layer = 5
[grid]
variant = ["ff", "f-cff", "a-cff", "bp"]
'''


def study_with(execution: str = ""):
    return parse_study(BASE + ("[execution]\n" + execution if execution else ""))


class FakeProbe:
    def __init__(self, count: int, free: int = 40 * 2**30) -> None:
        self.count, self.free = count, free

    def device_count(self) -> int:
        return self.count

    def mem_get_info(self, index: int) -> tuple[int, int]:
        return self.free, 80 * 2**30


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(gpu, "PROBE", FakeProbe(2))


# ----------------------------------------------------------------------------- the key
@pytest.mark.parametrize("value, expected", [("1", 1), ("4", 4), ('"auto"', "auto")])
def test_tasks_per_gpu_accepts_positive_integers_and_auto(value, expected):
    assert study_with(f"tasks_per_gpu = {value}\n").execution.tasks_per_gpu == expected


def test_tasks_per_gpu_defaults_to_one():
    assert study_with().execution.tasks_per_gpu == 1


@pytest.mark.parametrize("value", ["0", "-2", '"two"', "1.5", "true"])
def test_bad_tasks_per_gpu_is_one_line_naming_key_and_allowed_values(value):
    with pytest.raises(StudyError) as info:
        study_with(f"tasks_per_gpu = {value}\n")
    message = str(info.value)
    assert "\n" not in message
    assert '[execution] tasks_per_gpu: must be a positive integer or "auto"' in message


@pytest.mark.parametrize("execution", ["tasks_per_gpu = 3\n", 'tasks_per_gpu = "auto"\n',
                                       'tasks_per_gpu = 2\ndevice = "cuda"\nworkers = 5\n'])
def test_tasks_per_gpu_does_not_change_any_run_id(execution):
    before = [task.run_id for task in expand(study_with())]
    after = [task.run_id for task in expand(study_with(execution))]
    assert before == after and len(set(before)) == 2 * 4


# ----------------------------------------------------------------------------- worker counts
def test_local_on_cuda_defaults_to_gpus_times_tasks_per_gpu(two_gpus):
    study = study_with("tasks_per_gpu = 3\n")
    assert resolve_execution(study, None, None, "cuda") == ("local", 6, "cuda")
    assert resolve_execution(study, None, None, "auto") == ("local", 6, "auto")
    assert resolve_execution(study, None, None, "cuda:1") == ("local", 3, "cuda:1")


def test_explicit_workers_and_cpu_keep_their_old_meaning(two_gpus):
    study = study_with("tasks_per_gpu = 3\nworkers = 5\n")
    assert resolve_execution(study, None, None, "cuda")[1] == 5
    assert resolve_execution(study_with("tasks_per_gpu = 3\n"), None, 7, "cuda")[1] == 7
    cpu = (os.cpu_count() or 1)
    assert resolve_execution(study_with("tasks_per_gpu = 3\n"), None, None, "cpu")[1] == cpu
    assert resolve_execution(study_with("tasks_per_gpu = 3\n"), "serial", None, "cuda")[1] == cpu


def test_without_gpus_auto_device_is_cpu_behaviour(monkeypatch):
    monkeypatch.setattr(gpu, "PROBE", FakeProbe(0))
    study = study_with("tasks_per_gpu = 4\n")
    assert resolve_execution(study, None, None, "auto") == ("local", os.cpu_count() or 1, "auto")
    with pytest.raises(StudyError, match="CUDA is not available"):
        resolve_execution(study, None, None, "cuda")


def test_cuda_index_beyond_the_visible_gpus_is_a_study_error(two_gpus):
    with pytest.raises(StudyError, match=r"'cuda:2' requested but only 2 GPU\(s\) are visible"):
        resolve_execution(study_with(), None, None, "cuda:2")


def test_auto_tasks_per_gpu_sets_the_default_worker_count(monkeypatch):
    monkeypatch.setattr(gpu, "PROBE", FakeProbe(2, free=2 * 2**30))
    study = study_with('tasks_per_gpu = "auto"\n')
    plan = gpu.gpu_plan(study, "cuda")
    expected = gpu.auto_tasks_per_gpu(gpu.largest_run_memory(expand(study)), 2 * 2**30)
    assert plan.tasks_per_gpu == expected >= 1
    assert resolve_execution(study, None, None, "cuda")[1] == 2 * expected


# ----------------------------------------------------------------------------- device spreading
def test_worker_i_gets_gpu_i_mod_n_and_cuda_n_pins_all(two_gpus):
    assert gpu.worker_devices("cuda", 5) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    assert gpu.worker_devices("auto", 2) == ["cuda:0", "cuda:1"]
    assert gpu.worker_devices("cuda:1", 3) == ["cuda:1"] * 3
    assert gpu.worker_devices("cpu", 3) is None


def test_make_executor_gives_the_local_pool_its_worker_devices(two_gpus):
    engine = make_executor("local", 4, None, "cuda")
    assert engine.worker_devices == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert make_executor("local", 2, None, "cpu").worker_devices is None


def record_device(config, splits, device="cpu", on_epoch=None):
    """Stand-in train_fn: reports the device it was given and the process that ran it."""
    import time

    time.sleep(0.5)   # keep both workers busy so that both take tasks
    return RunResult("ok", 0.5, 0.5, 0.5, [], [], [], None, None, 0.0, device, [str(os.getpid())])


def tiny_load(name, root, n_train=None, seed=0):
    from conftest import make_synthetic_splits

    return make_synthetic_splits(n_train=20, n_eval=10, n_features=16, seed=seed)


@pytest.mark.slow
def test_local_pool_pins_each_worker_process_to_one_gpu():
    tasks = expand(study_with())
    engine = LocalExecutor(2, None, "cuda", record_device, tiny_load,
                           worker_devices=["cuda:0", "cuda:1"])
    outcomes = list(engine.map_runs(tasks))
    assert len(outcomes) == len(tasks) and all(o.error == "" for o in outcomes)
    device_of_pid: dict[str, set] = {}
    for outcome in outcomes:
        device_of_pid.setdefault(outcome.result.notes[0], set()).add(outcome.device)
    assert all(len(devices) == 1 for devices in device_of_pid.values())   # pinned per process
    assert len(device_of_pid) == 2                                          # both workers ran
    assert set().union(*device_of_pid.values()) == {"cuda:0", "cuda:1"}
