"""Checkpoints inside one run: what a killed run needs to continue exactly where it stood.

A checkpoint is one ``torch.save`` file (``<folder>/<run_id>.pt``) holding every piece of state
that the rest of the run reads: the layers' weights and biases, every optimiser's state (each
layer's Adam, the γ / α optimisers), all four per-purpose generators' states, the current
negative labels, the curves so far, the phase (layer and epoch finished) and the elapsed time.
Everything else the trainer holds (buffers, the first layer's overlay input, the inputs of the
layer being trained) is a deterministic function of these, so on CPU a resumed run equals an
uninterrupted one bit for bit (``tests/test_checkpoint.py``). A JSON sidecar
(``<run_id>.json``: phase and time only) lets ``cffbench status`` show in-flight runs without
loading torch.

Writes are atomic (temp file in the same folder, fsync, ``os.replace``), so a kill at any
moment leaves the previous checkpoint or the new one, never half a file. The file is a one-line
header (``cffbench-checkpoint <format> sha256=<digest of the rest>``) and the ``torch.save``
bytes, so a file damaged after it was written (a flipped bit on disk or in a copy, which
``torch.load`` would read without complaint) fails its digest. A checkpoint is trusted only if
its digest matches and it carries this run's id, this :data:`NUMERICS_VERSION`, the same full
configuration, torch version, device type and data shape; otherwise it is ignored with a
one-line warning (the run starts from epoch 0) and overwritten by the next checkpoint. A write
that fails (full disk, a network filesystem's hiccup) costs that checkpoint only: the run trains
on, tries again at the next due epoch, warns once, and its stored row says how many writes failed.

When: ``every = N`` writes after every N-th epoch (an epoch of one layer in the ``sequential``
schedule, of all layers in ``alternating``); ``0`` never; ``"auto"`` (the default) after the
first epoch that ends :data:`AUTO_SECONDS` or more after the run (or its last checkpoint)
started, so an interruption loses at most ``AUTO_SECONDS`` plus one epoch: under 5 minutes
whenever an epoch is under a minute (measured: 1.37 s for one epoch of each of the two
layers of a paper-scale run, 50k × 784-500-500, on a 2-core CPU). Runs shorter than
``AUTO_SECONDS`` never write one. No checkpoint follows the run's last epoch; the driver deletes
the file once the run is stored. The backprop reference (``bp``) checkpoints the same way (its
parameters, Adam state, generators, curves and epoch; :mod:`cffbench.ff.backprop`).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import torch

from cffbench.ff.config import identity_fields
from cffbench.ff.result import NUMERICS_VERSION

log = logging.getLogger(__name__)

#: Layout version of the checkpoint file itself (bumped when its keys or framing change;
#: 2: the sha256 header line).
CHECKPOINT_FORMAT = 2
#: The header line's start; the digest and a newline follow.
HEADER = b"cffbench-checkpoint %d sha256=" % CHECKPOINT_FORMAT
#: ``every = "auto"``: seconds of training between checkpoints.
AUTO_SECONDS = 240.0

Every = Union[int, Literal["auto"]]


def checkpoint_path(folder: Path | str, run_id: str) -> Path:
    return Path(folder) / f"{run_id}.pt"


def sidecar_path(folder: Path | str, run_id: str) -> Path:
    return Path(folder) / f"{run_id}.json"


def _write_atomic(target: Path, write) -> None:
    """Temp file in ``target``'s folder (hidden, named after this process), fsync, replace."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def frame(blob: bytes) -> bytes:
    """``blob`` behind the header line that carries its sha256."""
    return HEADER + hashlib.sha256(blob).hexdigest().encode("ascii") + b"\n" + blob


def unframe(data: bytes) -> bytes:
    """The bytes behind a :func:`frame` header; ValueError (saying why) if the header is not
    this format's or the digest does not match."""
    head, newline, blob = data.partition(b"\n")
    if not newline or not head.startswith(HEADER):
        raise ValueError(f"not a format-{CHECKPOINT_FORMAT} cffbench checkpoint")
    if head[len(HEADER):] != hashlib.sha256(blob).hexdigest().encode("ascii"):
        raise ValueError("corrupt (its sha256 does not match its contents)")
    return blob


def write_state(path: Path | str, state: dict) -> None:
    """Atomically write ``state`` as a checkpoint file (header with its digest + torch bytes)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    blob = frame(buffer.getvalue())
    _write_atomic(Path(path), lambda fh: fh.write(blob))


def read_state(path: Path | str) -> Any:
    """The object a checkpoint file holds, loaded on the CPU with ``weights_only``.

    Raises OSError if the file cannot be read, ValueError if its header or digest is wrong, and
    whatever ``torch.load`` raises for bytes that are not a torch file.
    """
    blob = unframe(Path(path).read_bytes())
    return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)


def validate_every(value: Any) -> Every:
    """``"auto"`` or an integer ≥ 0 (0 = off); raises ValueError otherwise."""
    if value == "auto":
        return "auto"
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ValueError(f'checkpoint_every must be an integer >= 0 (0 = off) or "auto", got {value!r}')


@dataclass(frozen=True)
class CheckpointPlan:
    """What the driver hands every worker: the folder (absolute; on SLURM a filesystem that the
    driver and every node share) and when to write. Small and picklable."""

    folder: Path
    every: Every = "auto"

    def for_run(self, run_id: str, started_at: float | None = None) -> "RunCheckpoint":
        """The handle of one run's checkpoint; ``started_at``: when this attempt began (Unix s)."""
        return RunCheckpoint(checkpoint_path(self.folder, run_id), run_id, self.every,
                             started_at=started_at)


@dataclass
class RunCheckpoint:
    """The checkpoint of one run: where it lives, when to write it, and how to trust it.

    ``started_at`` (Unix seconds; default: when the handle is made) is when the run first began:
    this attempt's start, or, once :meth:`load` has returned a trusted state, the start that the
    state carries from the run's first attempt (each checkpoint passes it on), so that a resumed
    run is stored with the time it first started. Checkpoints written before this key existed
    carry none; the run then keeps this attempt's start.
    """

    path: Path
    run_id: str
    every: Every = "auto"
    seconds: float = AUTO_SECONDS
    started_at: float | None = None

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.every = validate_every(self.every)
        self.attempt_started_at = time.time() if self.started_at is None else float(self.started_at)
        self.started_at = self.attempt_started_at
        self._last = time.monotonic()
        self.writes = 0          # attempted
        self.failed = 0          # of them failed
        self.first_error = ""

    @property
    def enabled(self) -> bool:
        return self.every != 0

    def due(self, epochs_done: int) -> bool:
        """Whether to write after ``epochs_done`` epochs (see the module docstring)."""
        if self.every == "auto":
            return time.monotonic() - self._last >= self.seconds
        return self.every > 0 and epochs_done % self.every == 0

    def save(self, state: dict, summary: dict) -> None:
        """Atomically write ``state`` (the .pt) and then its ``summary`` (the JSON sidecar).

        A write that fails (full disk, a path that does not exist on this node, a network
        filesystem's hiccup) costs this checkpoint, not the run: the previous checkpoint stays,
        the run trains on and tries again when the next one is due. The first failure is one
        warning; :meth:`notes` puts the count in the run's row.
        """
        payload = {"format": CHECKPOINT_FORMAT, "numerics_version": NUMERICS_VERSION,
                   "run_id": self.run_id, "environment": numerics_environment(),
                   "started_at": self.started_at, **state}
        side = {"run_id": self.run_id, "numerics_version": NUMERICS_VERSION,
                "saved_at": time.time(), **summary}
        self.writes += 1
        try:
            write_state(self.path, payload)
            _write_atomic(sidecar_path(self.path.parent, self.run_id),
                          lambda fh: fh.write(json.dumps(side).encode("utf-8")))
        except OSError as exc:
            self.failed += 1
            if self.failed == 1:
                self.first_error = str(exc.strerror or exc)
                log.warning("cannot write checkpoint %s (%s); run %s trains on and tries again "
                            "at the next checkpoint", self.path, self.first_error, self.run_id)
        self._last = time.monotonic()

    def notes(self) -> list[str]:
        """The run-row note when checkpoint writes failed (none when every write worked)."""
        if not self.failed:
            return []
        return [f"{self.failed} of {self.writes} checkpoint writes failed (first: "
                f"{self.first_error}); an interruption then would have lost more than one "
                f"checkpoint interval"]

    def load(self, identity: dict) -> dict | None:
        """The stored state if it exists and matches ``identity`` exactly, else None.

        ``identity`` holds what must be equal (config, torch version, device type, data shape).
        A file that is unreadable, of another format / numerics version / run, or of another
        identity is never trusted: one warning line names it and why. The state is loaded on the
        CPU (generator states must be CPU byte tensors, also for a CUDA run); the restore copies
        weights and optimiser state to the run's device.
        """
        if not self.path.is_file():
            return None
        try:
            state = read_state(self.path)
        except OSError as exc:
            return self.ignore(f"unreadable ({exc.strerror or exc})")
        except ValueError as exc:   # an older format, garbage, a damaged file: never trusted
            return self.ignore(str(exc))
        except Exception as exc:   # a foreign pickle behind a valid digest: never trusted
            return self.ignore(f"unreadable ({type(exc).__name__})")
        if not isinstance(state, dict):
            return self.ignore("not a cffbench checkpoint")
        expected = {"format": CHECKPOINT_FORMAT, "numerics_version": NUMERICS_VERSION,
                    "run_id": self.run_id, **identity}
        for key, value in expected.items():
            if state.get(key) != value:
                return self.ignore(f"{key} {state.get(key)!r} is not this run's {value!r}")
        first = state.get("started_at")
        if (isinstance(first, (int, float)) and not isinstance(first, bool)
                and 0 < first <= self.attempt_started_at):   # a start after this one is no start
            self.started_at = float(first)
        return state

    def ignore(self, why: str) -> None:
        """Say in one warning line that this checkpoint is not trusted, and why (the run then
        starts afresh, so it keeps this attempt's start time)."""
        self.started_at = self.attempt_started_at
        log.warning("checkpoint %s ignored: %s; the run starts from epoch 0", self.path,
                    " ".join(why.split())[:300])
        return None

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        sidecar_path(self.path.parent, self.run_id).unlink(missing_ok=True)


def numerics_environment() -> dict:
    """What besides the code decides the last bits of a CPU result: torch's thread count and the
    CPU kernel level it dispatches to (AVX2, AVX512, ...)."""
    return {"torch_threads": int(torch.get_num_threads()),
            "cpu_capability": str(torch.backends.cpu.get_cpu_capability())}


def resume_note(state: dict) -> str | None:
    """A run note when a checkpoint was written under another :func:`numerics_environment`.

    Such a checkpoint is still resumed (its work is valid; a SLURM job may land on another node
    type), but the finished run then equals neither uninterrupted run bit for bit, and its row
    says so.
    """
    then, now = state.get("environment"), numerics_environment()
    if then == now:
        return None
    return (f"resumed from a checkpoint written with {then} on {now}: the result is not "
            f"bit-identical to an uninterrupted run")


_SIDECAR_NUMBERS = ("saved_at", "layer", "epoch", "epochs_per_layer", "epochs_done", "epochs_total")


def _sidecar_fields_ok(info: dict) -> bool:
    """A summary that a user or a crash mangled is skipped, not shown as 'None' or a traceback."""
    return all(isinstance(info.get(k), (int, float)) and not isinstance(info.get(k), bool)
               for k in _SIDECAR_NUMBERS)


def read_sidecars(folder: Path | str) -> list[dict]:
    """The JSON sidecars of a checkpoint folder (unreadable or malformed ones skipped), sorted by
    run id."""
    folder = Path(folder)
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if path.name.startswith("."):
            continue
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(info, dict) and info.get("run_id") == path.stem and _sidecar_fields_ok(info):
            out.append(info)
    return out


# ----------------------------------------------------------------------------- trainer state
# What a checkpoint holds, read from and written into a cffbench.ff.train.FFTrainer.

def copy_checked(target: torch.Tensor, value: torch.Tensor) -> None:
    """``target.copy_(value)`` after checking shape and dtype (ValueError on a misfit)."""
    if tuple(value.shape) != tuple(target.shape) or value.dtype != target.dtype:
        raise ValueError(f"checkpoint tensor {tuple(value.shape)} {value.dtype} does not "
                         f"fit {tuple(target.shape)} {target.dtype}")
    target.copy_(value)


def run_identity(config, device: torch.device, n_train: int, n_features: int) -> dict:
    """What a checkpoint must match to be resumed: the full configuration (seed included), the
    torch version, the device type and the training data's shape."""
    return {"config": json.dumps(identity_fields(config.model_dump(mode="json")), sort_keys=True),
            "torch_version": str(torch.__version__), "device_type": device.type,
            "data_shape": [int(n_train), int(n_features)]}


def trainer_identity(trainer) -> dict:
    """:func:`run_identity` of an ``FFTrainer``."""
    return run_identity(trainer.config, trainer.device, trainer.overlay.n,
                        trainer.layers[0].weight.shape[1])


def trainer_state(trainer, index: int, epoch: int) -> dict:
    """Everything the rest of the run reads, after ``epoch`` of layer ``index`` (0-based)."""
    return {
        **trainer_identity(trainer),
        "phase": {"layer": index, "epoch": epoch},
        "elapsed_s": trainer.elapsed(), "seconds": list(trainer.seconds),
        "curves": [dict(row) for row in trainer.curves],
        "layers": [{"weight": layer.weight.detach(), "bias": layer.bias.detach(),
                    "optimizer": layer.optimizer.state_dict()} for layer in trainer.layers],
        **trainer.logit_rule.state_dict(),   # gammas, alpha_logits, collab_optimizers
        "generators": {name: g.get_state() for name, g in trainer.generators.items()},
        "y_neg": trainer.y_neg,
    }


def restore_trainer(trainer, state: dict) -> tuple[int, int]:
    """Restore a :func:`trainer_state` into ``trainer``; returns where training resumes,
    ``(layer index, epochs of it done)``.

    Raises (KeyError, ValueError, RuntimeError) on a state that does not fit this trainer;
    the trainer is then half-restored and must be discarded.
    """
    if len(state["layers"]) != len(trainer.layers):
        raise ValueError("checkpoint has another number of layers")
    with torch.no_grad():
        for layer, saved in zip(trainer.layers, state["layers"]):
            copy_checked(layer.weight, saved["weight"])
            copy_checked(layer.bias, saved["bias"])
            layer.optimizer.load_state_dict(saved["optimizer"])
    trainer.logit_rule.load_state_dict(state)
    for name, generator in trainer.generators.items():
        generator.set_state(state["generators"][name])
    y_neg = state["y_neg"].to(trainer.device)
    if not torch.equal(y_neg, trainer.y_neg):   # redrawn negatives of the last epoch
        trainer.y_neg = y_neg
        trainer.overlay = trainer.overlay.with_negatives(y_neg)
    trainer.curves = [dict(row) for row in state["curves"]]
    trainer.seconds = [float(s) for s in state["seconds"]]
    trainer.elapsed_before = float(state["elapsed_s"])
    trainer.started = time.perf_counter()
    index, epoch = int(state["phase"]["layer"]), int(state["phase"]["epoch"])
    if trainer.config.schedule == "sequential":
        return (index + 1, 0) if epoch >= trainer.config.epochs_per_layer else (index, epoch)
    return (0, epoch)
