"""Checkpoint and resume inside a run (cffbench/ff/checkpoint.py): a run interrupted after a
checkpoint and resumed from it equals the uninterrupted run bit for bit, and a checkpoint that is
corrupt, of another numerics version, of another run or of another configuration is ignored with
one warning line and never trusted."""

from __future__ import annotations

import io
import logging

import pytest
import torch

from cffbench.ff import NUMERICS_VERSION, TrainConfig, train_run
from cffbench.ff.checkpoint import (AUTO_SECONDS, CheckpointPlan, RunCheckpoint, read_sidecars,
                                    read_state, sidecar_path, validate_every, write_state)
from conftest import make_synthetic_splits

SMALL = dict(hidden=(24, 20, 16), epochs_per_layer=6)


class Interrupt(Exception):
    """Stands in for the process dying after a given number of recorded epochs."""


def stop_after(n_rows: int):
    seen = []

    def on_epoch(row: dict) -> None:
        seen.append(row)
        if len(seen) == n_rows:
            raise Interrupt
    return on_epoch


@pytest.fixture(scope="module")
def splits():
    return make_synthetic_splits(n_train=120, n_eval=60, n_features=32)


def assert_same_result(a, b) -> None:
    """Every stored value of a result, exactly (times, devices and resume markers excluded)."""
    assert (a.status, a.diverged_epoch, a.notes) == (b.status, b.diverged_epoch, b.notes)
    for name in ("test_acc", "val_acc", "train_acc"):
        assert getattr(a, name).hex() == getattr(b, name).hex(), name
    assert [g.hex() for g in a.gamma_final] == [g.hex() for g in b.gamma_final]
    assert a.alpha_final == b.alpha_final
    assert [(s["layer"], s["g_pos"].hex(), s["g_neg"].hex()) for s in a.layer_stats] == \
        [(s["layer"], s["g_pos"].hex(), s["g_neg"].hex()) for s in b.layer_stats]   # nan for bp
    assert a.curves.equals(b.curves)
    assert a.numerics_version == b.numerics_version == NUMERICS_VERSION


CASES = {
    "ff": dict(variant="ff"),
    "fcff_single_distance": dict(variant="f-cff", theta_placement="single", alpha="distance"),
    "acff_learned_alpha_adam_minibatch_redraw": dict(
        variant="a-cff", alpha="learned", gamma_optimizer="adam", batch_size=50,
        negatives="redraw"),
    "acff_alternating_permutation": dict(variant="a-cff", schedule="alternating",
                                         negatives="permutation"),
    "ff_alternating_redraw_minibatch": dict(variant="ff", schedule="alternating",
                                            negatives="redraw", batch_size=40),
    "bp_minibatch": dict(variant="bp", batch_size=40),
}


@pytest.mark.parametrize("stop_rows", [7, 10, 14])   # after an end-of-layer or a mid-layer checkpoint
@pytest.mark.parametrize("name", sorted(CASES))
def test_interrupted_run_resumed_from_its_checkpoint_equals_the_uninterrupted_run(
        splits, tmp_path, name, stop_rows):
    config = TrainConfig(**SMALL, **CASES[name])
    reference = train_run(config, splits)
    checkpoint = RunCheckpoint(tmp_path / "run.pt", "run", every=2)
    with pytest.raises(Interrupt):
        train_run(config, splits, on_epoch=stop_after(stop_rows), checkpoint=checkpoint)
    assert checkpoint.path.is_file()
    resumed = train_run(config, splits, checkpoint=RunCheckpoint(checkpoint.path, "run", every=2))
    assert resumed.resumed_at != ""
    assert_same_result(resumed, reference)


def test_resumed_run_continues_from_the_last_checkpoint_and_counts_earlier_time(splits, tmp_path):
    config = TrainConfig(**SMALL, variant="a-cff")
    checkpoint = RunCheckpoint(tmp_path / "run.pt", "run", every=4, started_at=1.0e9)
    with pytest.raises(Interrupt):
        train_run(config, splits, on_epoch=stop_after(11), checkpoint=checkpoint)
    (info,) = read_sidecars(tmp_path)
    # sequential: 6 epochs per layer, checkpoints after epochs 4 and 8 of the run (layer 2, epoch 2)
    assert (info["layer"], info["epoch"], info["epochs_done"], info["epochs_total"]) == (2, 2, 8, 18)
    assert info["numerics_version"] == NUMERICS_VERSION and info["run_id"] == "run"
    state = read_state(checkpoint.path)
    state["elapsed_s"] = 1000.0          # as if the earlier process had trained for 1000 s
    write_state(checkpoint.path, state)
    rows = []
    later = RunCheckpoint(checkpoint.path, "run", every=4, started_at=2.0e9)
    resumed = train_run(config, splits, on_epoch=rows.append, checkpoint=later)
    assert later.started_at == 1.0e9 and later.attempt_started_at == 2.0e9   # the first start
    assert resumed.resumed_at == "layer 2, epoch 2"
    assert [(r["layer"], r["epoch"]) for r in rows][0] == (2, 3)   # only the epochs after it
    assert len(resumed.curves) == 18
    assert resumed.duration_s >= 1000.0 and resumed.resumed_elapsed_s == 1000.0


def test_no_checkpoint_after_the_last_epoch_and_none_when_off(splits, tmp_path):
    config = TrainConfig(**SMALL)
    train_run(config, splits, checkpoint=RunCheckpoint(tmp_path / "a.pt", "a", every=6))
    state = read_state(tmp_path / "a.pt")
    assert state["phase"] == {"layer": 1, "epoch": 6}            # after layer 2, not layer 3
    train_run(config, splits, checkpoint=RunCheckpoint(tmp_path / "b.pt", "b", every=0))
    assert not (tmp_path / "b.pt").exists()
    # auto: a run shorter than AUTO_SECONDS writes none
    train_run(config, splits, checkpoint=RunCheckpoint(tmp_path / "c.pt", "c", every="auto"))
    assert not (tmp_path / "c.pt").exists()


def test_auto_writes_once_the_interval_has_passed(splits, tmp_path):
    checkpoint = RunCheckpoint(tmp_path / "a.pt", "a", every="auto", seconds=0.0)
    train_run(TrainConfig(**SMALL), splits, checkpoint=checkpoint)
    assert read_state(checkpoint.path)["phase"] == {"layer": 2, "epoch": 5}
    assert RunCheckpoint(tmp_path / "x.pt", "x").seconds == AUTO_SECONDS <= 300


def _interrupted(splits, tmp_path, config) -> RunCheckpoint:
    checkpoint = RunCheckpoint(tmp_path / "run.pt", "run", every=3)
    with pytest.raises(Interrupt):
        train_run(config, splits, on_epoch=stop_after(8), checkpoint=checkpoint)
    return checkpoint


@pytest.mark.parametrize("damage", ["truncated", "garbage", "bit_flip", "unframed",
                                    "numerics_version", "run_id", "config", "format",
                                    "torch_version", "not_a_dict", "wrong_shape"])
def test_bad_checkpoint_is_ignored_with_one_warning_line_and_the_run_starts_over(
        splits, tmp_path, caplog, damage):
    config = TrainConfig(**SMALL, variant="a-cff")
    reference = train_run(config, splits)
    checkpoint = _interrupted(splits, tmp_path, config)
    path = checkpoint.path
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    elif damage == "bit_flip":   # torch.load would read this file and resume from wrong weights
        state = read_state(path)
        data = bytearray(path.read_bytes())
        weight = state["layers"][0]["weight"].numpy().tobytes()
        at = bytes(data).index(weight) + len(weight) // 2
        data[at] ^= 0x01
        path.write_bytes(bytes(data))
        assert isinstance(torch.load(io.BytesIO(bytes(data).partition(b"\n")[2]),
                                     weights_only=True), dict)
    elif damage == "unframed":   # a format-1 file: torch.save bytes without the digest header
        torch.save(read_state(path), path)
    elif damage == "not_a_dict":
        write_state(path, [1, 2, 3])
    else:
        state = read_state(path)
        if damage == "numerics_version":
            state["numerics_version"] = NUMERICS_VERSION + 1
        elif damage == "run_id":
            state["run_id"] = "another-run"
        elif damage == "config":
            state["config"] = TrainConfig(**SMALL, variant="a-cff", lr=0.05).model_dump_json()
        elif damage == "format":
            state["format"] = 99
        elif damage == "torch_version":
            state["torch_version"] = "0.0.1"
        elif damage == "wrong_shape":
            state["layers"][1]["weight"] = torch.zeros(3, 3)
        write_state(path, state)   # a valid digest: the identity check must catch it
    handle = RunCheckpoint(path, "run", every=3, started_at=2.0e9)
    with caplog.at_level(logging.WARNING, logger="cffbench"):
        result = train_run(config, splits, checkpoint=handle)
    ignored = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert len(ignored) == 1 and "\n" not in ignored[0] and str(path) in ignored[0]
    assert result.resumed_at == "" and result.resumed_elapsed_s == 0.0
    assert handle.started_at == 2.0e9    # started afresh: no start time taken from the file
    assert_same_result(result, reference)


@pytest.mark.parametrize("first", ["missing", float("inf"), float("nan"), 3.0e9, -1.0, True])
def test_a_checkpoint_without_a_usable_first_start_resumes_and_keeps_this_attempts_start(
        splits, tmp_path, first):
    # "missing": written before checkpoints carried "started_at" (same format and numerics
    # version); the others (a start after this attempt's, not a time) are not trusted as starts
    config = TrainConfig(**SMALL, variant="a-cff")
    checkpoint = _interrupted(splits, tmp_path, config)
    state = read_state(checkpoint.path)
    if first == "missing":
        del state["started_at"]
    else:
        state["started_at"] = first
    write_state(checkpoint.path, state)
    handle = RunCheckpoint(checkpoint.path, "run", every=3, started_at=2.0e9)
    result = train_run(config, splits, checkpoint=handle)
    assert result.resumed_at != "" and handle.started_at == 2.0e9
    assert_same_result(result, train_run(config, splits))


def test_checkpoint_every_accepts_auto_and_non_negative_integers():
    assert validate_every("auto") == "auto" and validate_every(0) == 0
    assert validate_every("12") == 12
    for bad in (-1, "often", 1.5, True):
        with pytest.raises(ValueError):
            validate_every(bad)
    plan = CheckpointPlan(tmp := __import__("pathlib").Path("/tmp/x"), 5)
    assert plan.for_run("abc").path == tmp / "abc.pt"
    assert sidecar_path(tmp, "abc") == tmp / "abc.json"


def test_unwritable_checkpoint_folder_costs_the_checkpoints_not_the_run(splits, tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder should be")
    config = TrainConfig(**SMALL)
    with caplog.at_level(logging.WARNING, logger="cffbench"):
        result = train_run(config, splits, checkpoint=RunCheckpoint(blocker / "sub" / "r.pt", "r", 1))
    assert sum("cannot write checkpoint" in r.getMessage() for r in caplog.records) == 1
    total = SMALL["epochs_per_layer"] * len(SMALL["hidden"])
    failed, result.notes = result.notes, []
    assert_same_result(result, train_run(config, splits))
    assert failed == [f"{total - 1} of {total - 1} checkpoint writes failed (first: "
                            "Not a directory); an interruption then would have lost more than "
                            "one checkpoint interval"]


def test_a_failed_checkpoint_write_is_retried_at_the_next_due_epoch(splits, tmp_path,
                                                                     monkeypatch):
    """One transient write error (ENOSPC, an NFS hiccup) costs one checkpoint, not the rest."""
    import errno

    from cffbench.ff import checkpoint as module

    real, calls = module._write_atomic, []

    def flaky(target, write):
        calls.append(target.suffix)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(target, write)

    monkeypatch.setattr(module, "_write_atomic", flaky)
    config = TrainConfig(**SMALL, variant="a-cff")
    checkpoint = RunCheckpoint(tmp_path / "run.pt", "run", every=3)
    with pytest.raises(Interrupt):
        train_run(config, splits, on_epoch=stop_after(8), checkpoint=checkpoint)
    assert (checkpoint.writes, checkpoint.failed) == (2, 1)   # after epochs 3 and 6 of layer 1
    assert read_state(checkpoint.path)["phase"] == {"layer": 0, "epoch": 6}
    assert checkpoint.notes() == ["1 of 2 checkpoint writes failed (first: No space left on "
                                  "device); an interruption then would have lost more than one "
                                  "checkpoint interval"]


def test_bp_checkpoint_that_does_not_fit_is_ignored_and_the_run_starts_over(splits, tmp_path,
                                                                            caplog):
    config = TrainConfig(**SMALL, variant="bp")
    checkpoint = RunCheckpoint(tmp_path / "bp.pt", "bp", every=3)
    with pytest.raises(Interrupt):
        train_run(config, splits, on_epoch=stop_after(8), checkpoint=checkpoint)
    state = read_state(checkpoint.path)
    assert state["phase"] == {"layer": 0, "epoch": 6}
    state["params"][0] = torch.zeros(2, 2)
    write_state(checkpoint.path, state)
    with caplog.at_level(logging.WARNING, logger="cffbench"):
        result = train_run(config, splits, checkpoint=RunCheckpoint(checkpoint.path, "bp", 3))
    assert sum("ignored" in r.getMessage() for r in caplog.records) == 1
    assert result.resumed_at == ""
    assert_same_result(result, train_run(config, splits))


def test_checkpoint_of_another_thread_count_or_cpu_kernel_resumes_with_a_note(splits, tmp_path):
    """Threads and the CPU kernel level change the last bits, so such a resume is said in the row."""
    config = TrainConfig(**SMALL, variant="a-cff")
    reference = train_run(config, splits)
    checkpoint = RunCheckpoint(tmp_path / "run.pt", "run", every=2)
    with pytest.raises(Interrupt):
        train_run(config, splits, on_epoch=stop_after(10), checkpoint=checkpoint)
    state = read_state(checkpoint.path)
    assert state["environment"] == {"torch_threads": torch.get_num_threads(),
                                    "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    state["environment"] = {"torch_threads": 64, "cpu_capability": "AVX2"}
    write_state(checkpoint.path, state)
    resumed = train_run(config, splits, checkpoint=RunCheckpoint(checkpoint.path, "run", every=2))
    assert resumed.resumed_at != ""
    (note,) = [n for n in resumed.notes if n not in reference.notes]
    assert "'torch_threads': 64" in note and "not bit-identical" in note
    # here the environment did not really change, so the numbers still equal the reference
    assert resumed.test_acc.hex() == reference.test_acc.hex()
    assert resumed.curves.equals(reference.curves)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_run_resumes_from_its_checkpoint(splits, tmp_path):
    """Generator states are CPU byte tensors even for a CUDA run: the checkpoint loads on CPU."""
    config = TrainConfig(**SMALL, variant="a-cff")
    checkpoint = RunCheckpoint(tmp_path / "run.pt", "run", every=2)
    with pytest.raises(Interrupt):
        train_run(config, splits, device="cuda", on_epoch=stop_after(10), checkpoint=checkpoint)
    resumed = train_run(config, splits, device="cuda",
                        checkpoint=RunCheckpoint(checkpoint.path, "run", every=2))
    assert resumed.resumed_at != "" and resumed.status == "ok"


def test_malformed_checkpoint_summary_is_skipped_not_shown(tmp_path):
    import json

    good = {"run_id": "a", "saved_at": 1.0, "layer": 1, "epoch": 2, "epochs_per_layer": 6,
            "epochs_done": 2, "epochs_total": 18}
    (tmp_path / "a.json").write_text(json.dumps(good))
    (tmp_path / "b.json").write_text(json.dumps({**good, "run_id": "b", "saved_at": "yesterday"}))
    (tmp_path / "c.json").write_text(json.dumps({"run_id": "c"}))
    assert [info["run_id"] for info in read_sidecars(tmp_path)] == ["a"]
