"""GPUs for a study: which devices there are, how much memory a run needs, how many runs share one.

Device discovery goes through :data:`PROBE` (``torch.cuda.device_count`` and
``torch.cuda.mem_get_info``); tests replace it with a fake to exercise the CUDA paths on a CPU.

Several runs per GPU (``[execution] tasks_per_gpu``): the local executor starts
``n_gpus * tasks_per_gpu`` worker processes (unless ``workers`` is set) and pins worker ``i`` to
``cuda:{i % n_gpus}`` (:func:`worker_devices`). ``tasks_per_gpu = "auto"`` is

``floor(MEMORY_FRACTION * free / (peak + CONTEXT_BYTES))`` clipped to ``1 .. AUTO_TASKS_CAP``,

with ``free`` the smallest free memory of the GPUs used and ``peak`` :func:`estimate_run_memory`
of the largest run of the study (times the group size when seeds are stacked). All planned runs
count, not only the remaining ones: the pool is sized before the store is read (conservative). The safety margin
(``MEMORY_FRACTION = 0.8``) leaves room for the caching allocator's fragmentation; each worker
process also holds a CUDA context and cuBLAS workspace (``CONTEXT_BYTES``, 600 MiB, a typical
figure for recent drivers, not measured here). The cap (8) is there because more processes than
that on one GPU only time-slice its streaming multiprocessors: beyond a few concurrent runs the
GPU is busy and extra workers add memory pressure, not throughput.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Protocol

from cffbench.ff.config import TrainConfig
from cffbench.ff.variants import reads_other_layers

FLOAT_BYTES = 4
LABEL_BYTES = 8                     # int64 labels
MEMORY_FRACTION = 0.8               # share of the free memory that "auto" fills
CONTEXT_BYTES = 600 * 2**20         # CUDA context + cuBLAS workspace per worker process
AUTO_TASKS_CAP = 8
#: Factor on the itemised sum for what it does not list (small temporaries, allocator rounding).
SLACK = 1.25
EVAL_CHUNK = 10_000                 # cffbench.ff.predict.ff_accuracy's chunk size


class DeviceProbe(Protocol):
    def device_count(self) -> int: ...
    def mem_get_info(self, index: int) -> tuple[int, int]: ...   # (free, total) bytes


class CudaProbe:
    """The real probe: ``torch.cuda`` (0 devices where CUDA is unavailable)."""

    def device_count(self) -> int:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0

    def mem_get_info(self, index: int) -> tuple[int, int]:
        import torch

        free, total = torch.cuda.mem_get_info(index)
        return int(free), int(total)


#: The probe every function here uses unless given one; tests replace it.
PROBE: DeviceProbe = CudaProbe()


def _probe(probe: Optional[DeviceProbe]) -> DeviceProbe:
    return PROBE if probe is None else probe


def cuda_devices(device: str, probe: Optional[DeviceProbe] = None) -> list[int]:
    """GPU indices that ``device`` (``auto | cpu | cuda | cuda:N``) trains on; ``[]`` for CPU.

    ``auto`` and ``cuda`` mean every visible GPU, ``cuda:N`` only GPU N.
    """
    if device == "cpu":
        return []
    count = _probe(probe).device_count()
    if device.startswith("cuda:"):
        return [int(device.split(":")[1])]
    return list(range(count))


def worker_devices(device: str, workers: int, probe: Optional[DeviceProbe] = None
                   ) -> Optional[list[str]]:
    """The device of each local worker process, or None on CPU.

    Worker ``i`` gets ``cuda:{i % n_gpus}``; an explicit ``cuda:N`` pins every worker to GPU N.
    """
    gpus = cuda_devices(device, probe)
    if not gpus:
        return None
    return [f"cuda:{gpus[i % len(gpus)]}" for i in range(workers)]


# ----------------------------------------------------------------------------- memory
def _widths(config: TrainConfig, n_features: int) -> list[int]:
    return [n_features, *config.hidden]


def estimate_run_memory(config: TrainConfig, n_train: int, n_val: int, n_test: int,
                        n_features: int, n_classes: int) -> int:
    """Upper bound of the bytes one run holds on its device at its peak.

    Built from what :mod:`cffbench.ff` allocates (fp32 = 4 bytes; D = n_features, widths
    ``d_0 = D, d_1 .. d_L``, C = n_classes, N = n_train, R = rows per step = N or the batch size):

    - parameters: ``P = Σ_l (d_{l-1} + 1) d_l`` floats, six copies: weights, gradients, Adam's two
      moments and two for the temporaries of its foreach update;
    - data on the device: the unit-direction overlay ``N·D`` plus the two scaled one-hots
      ``2·N·C``, labels ``2·N`` int64 (a ``bf16`` run adds an ``N·D`` bf16 copy); while the overlay
      is built the device copy of ``x_train`` (``N·D``) exists too;
    - training layer l (the largest phase counts): activations and normalised outputs ``2R·d_l``
      (x2 for CFF's normalised copy), for CFF the forward-only later layers ``2·2R·d_k`` each,
      layer l's input ``2N·d_{l-1}`` (plus a ``2R`` row copy with minibatches), the lower layers'
      ``h`` and direction ``2·2N·d_k`` while they are recomputed, and goodness vectors ``(L+8)·2R``;
      with minibatches that do not divide N every scratch buffer exists twice (one per shape);
      the ``alternating`` schedule keeps every layer's scratch at once;
    - evaluation per set of M rows (``M_c = min(M, 10000)`` per chunk): the device copy ``M·D``,
      the chunk's overlay ``M_c·(D + 2C)``, the shared base ``M_c·d_1`` and ``4·M_c·max d``;
    - ``bp``: parameters as above (the head ``d_L → C`` included), the data ``N·D``, the saved
      activations ``Σ_l R·(d_{l-1} + 2 d_l) + 3·R·C`` and ``2·R·max d`` of backward temporaries;
      evaluation runs each set whole: ``M·D + 3·M·max d``.

    Peak = ``SLACK`` (1.25, for temporaries not listed and allocator rounding) x (parameters +
    resident data + the largest of: overlay build, each layer phase, final goodness pass, each
    evaluation set). Stacked seed groups need S times this.

    Returns
    -------
    int
        Bytes. ``tests/test_gpu_memory.py`` pins it as an upper bound within 2x of the peak of
        tensors a CPU run allocates (torch.profiler memory events), on ff, f-cff, a-cff and bp.
    """
    F = FLOAT_BYTES
    C, D, N = n_classes, n_features, n_train
    R = N if config.batch_size == 0 or config.batch_size >= N else config.batch_size
    twice = 2 if R < N and N % R else 1
    widths = _widths(config, n_features)
    d_max = max(widths)
    evals = [n_val, n_test, min(config.train_eval_size, N)]
    if config.variant == "bp":
        dims = [*widths, C]
        params = sum((a + 1) * b for a, b in zip(dims[:-1], dims[1:]))
        act = sum(R * (a + 2 * b) for a, b in zip(widths[:-1], widths[1:])) + 3 * R * C
        train = act + 2 * R * d_max + (R * D if R < N else 0)
        evaluation = max(m * D + 3 * m * d_max for m in evals)
        return int(SLACK * (F * (6 * params + N * D + max(train, evaluation)) + LABEL_BYTES * N))

    n_layers = config.n_layers
    params = sum((a + 1) * b for a, b in zip(widths[:-1], widths[1:]))
    collab = reads_other_layers(config)   # the layers above run forward each step
    data = F * (N * D + 2 * N * C + N) + LABEL_BYTES * 2 * N
    if config.precision == "bf16":
        data += 2 * N * D
    build = F * (N * D + 2 * N)

    def step(i: int) -> int:   # layer i (1-based) scratch of one update, in floats
        rows = 2 * R
        scratch = rows * widths[i] * (2 if collab else 1)
        if collab:
            scratch += sum(2 * rows * widths[k] for k in range(i + 1, n_layers + 1))
        if config.precision == "bf16":
            scratch += rows * widths[i]          # bf16 matmul result + delta copy (2 bytes each)
        inputs = 0
        if i > 1:
            inputs = 2 * N * widths[i - 1] + (rows * widths[i - 1] if R < N else 0)
            if config.precision == "bf16":
                inputs += N * widths[i - 1]
        elif R < N:
            inputs = R * (D + 2 * C)
        return twice * scratch + inputs + (n_layers + 8) * rows

    def chain(i: int) -> int:  # lower layers' h and direction buffers while recomputing
        return sum(2 * 2 * N * widths[k] for k in range(1, i))

    if config.schedule == "alternating":
        # every layer's scratch at once, plus the normalised output passed up (its ``h`` is reused)
        phase = sum(step(i) + 2 * R * widths[i] for i in range(1, n_layers + 1))
    elif config.negatives == "redraw":
        phase = max(chain(i) + step(i) for i in range(1, n_layers + 1))
    else:
        phase = max(max(chain(i), step(i)) for i in range(1, n_layers + 1))
    # h and direction of a layer, the previous direction (+ bf16 operand copies)
    final_goodness = (5 if config.precision == "bf16" else 3) * 2 * N * d_max
    chunks = [min(m, EVAL_CHUNK) for m in evals]
    evaluation = max(m * D + c * (D + 2 * C) + c * widths[1] + 4 * c * d_max + c * C
                     for m, c in zip(evals, chunks))
    transient = max(build, F * max(phase, final_goodness, evaluation))
    return int(SLACK * (F * 6 * params + data + transient))


def run_shape(dataset: str, n_train: Optional[int]) -> dict[str, int]:
    """``n_train, n_val, n_test, n_features, n_classes`` of ``dataset`` from the registry."""
    from cffbench.data.registry import DATASETS, MAX_VALIDATION_SIZE, validation_size

    info = DATASETS[dataset]
    n_val = validation_size(info.n_official_train) if info.n_official_train else MAX_VALIDATION_SIZE
    return {"n_train": n_train or info.n_train_split or 50_000, "n_val": n_val,
            "n_test": info.n_official_test, "n_features": info.n_features,
            "n_classes": info.n_classes}


def largest_run_memory(tasks: list[Any], stack_seeds: bool = False) -> int:
    """The largest :func:`estimate_run_memory` over ``tasks`` (RunTask list); with
    ``stack_seeds`` a seed group of S runs counts S times (it trains as one batched model)."""
    from collections import Counter

    sizes = Counter()
    for task in tasks:
        key = (task.dataset, task.n_train, task.config.model_copy(update={"seed": 0}))
        sizes[key] += 1
    peak = 0
    for (dataset, n_train, config), count in sizes.items():
        one = estimate_run_memory(config, **run_shape(dataset, n_train))
        peak = max(peak, one * (count if stack_seeds else 1))
    return peak


def auto_tasks_per_gpu(peak_bytes: int, free_bytes: int) -> int:
    """``floor(MEMORY_FRACTION * free / (peak + CONTEXT_BYTES))`` in ``1 .. AUTO_TASKS_CAP``."""
    fits = math.floor(MEMORY_FRACTION * free_bytes / (peak_bytes + CONTEXT_BYTES))
    return max(1, min(AUTO_TASKS_CAP, fits))


@dataclass(frozen=True)
class GpuPlan:
    """How a study uses GPUs.

    Attributes
    ----------
    gpus : list of int      GPU indices used (empty: CPU)
    tasks_per_gpu : int     concurrent runs per GPU
    peak_bytes : int        estimated peak of the study's largest run (0 when not estimated)
    free_bytes : int        smallest free memory among ``gpus`` (0 when not asked)
    how : str               one sentence on where ``tasks_per_gpu`` came from
    """

    gpus: list[int]
    tasks_per_gpu: int
    peak_bytes: int = 0
    free_bytes: int = 0
    how: str = ""

    @property
    def n_gpus(self) -> int:
        return len(self.gpus)


def gpu_plan(study: Any, device: str, probe: Optional[DeviceProbe] = None) -> GpuPlan:
    """Resolve ``[execution] tasks_per_gpu`` for ``study`` on ``device`` (see the module doc)."""
    from cffbench.study.grid import expand

    setting = study.execution.tasks_per_gpu
    gpus = cuda_devices(device, probe)
    if setting != "auto":
        return GpuPlan(gpus, int(setting), how=f"tasks_per_gpu = {setting}")
    peak = largest_run_memory(expand(study), study.execution.stack_seeds)
    if not gpus:
        return GpuPlan(gpus, 1, peak, 0, "tasks_per_gpu = auto: no GPU visible, so 1")
    free = min(_probe(probe).mem_get_info(i)[0] for i in gpus)
    tasks = auto_tasks_per_gpu(peak, free)
    return GpuPlan(gpus, tasks, peak, free,
                   f"tasks_per_gpu = auto: {tasks} = floor({MEMORY_FRACTION} x "
                   f"{free / 2**30:.1f} GiB free / ({peak / 2**30:.2f} GiB estimated peak + "
                   f"{CONTEXT_BYTES / 2**30:.2f} GiB CUDA context)), capped at {AUTO_TASKS_CAP}")
