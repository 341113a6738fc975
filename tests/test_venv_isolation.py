"""Two checkouts sharing the one venv each run their own code (scripts/venv.sh).

A study runs for hours from one clone while another is edited; if the shared venv pointed at
whichever checkout sourced it last, the running study's new worker processes would import the
other clone's cffbench. The venv holds dependencies only and each checkout puts itself on
PYTHONPATH, so every process started from a shell (and the workers it spawns) imports the code
of the checkout that shell sourced.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]

# a driver that imports cffbench, waits (while another checkout sources the venv), then spawns a
# worker, as a study's driver does when its pool replaces a worker hours later
WHERE = ("import multiprocessing as mp, sys, cffbench\n"
         "def where(_):\n"
         "    import cffbench\n"
         "    return cffbench.__file__\n"
         "if __name__ == '__main__':\n"
         "    print('ready', flush=True)\n"
         "    sys.stdin.readline()\n"
         "    with mp.get_context('spawn').Pool(1) as pool:\n"
         "        print(cffbench.__file__, pool.map(where, [0])[0])\n")


def _venv_dir() -> Path:
    root = Path(os.environ.get("CFFBENCH_VENV_ROOT")
                or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cffbench" / "venvs")
    digest = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()[:12]
    return root / digest


@pytest.fixture
def built_venv() -> Path:
    venv = _venv_dir()
    if not (venv / ".complete").exists():
        if os.environ.get("CFFBENCH_VENV"):   # under scripts/test.sh the venv must exist
            pytest.fail(f"scripts/test.sh built no complete venv at {venv}")
        pytest.skip("the shared venv is not built (run through scripts/test.sh)")
    return venv


def _other_checkout(tmp_path: Path) -> Path:
    """A second checkout: the same scripts and pyproject.toml (so the same venv), other code."""
    other = tmp_path / "other-clone"
    (other / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "venv.sh", other / "scripts" / "venv.sh")
    shutil.copy(REPO / "pyproject.toml", other / "pyproject.toml")
    shutil.copytree(REPO / "cffbench", other / "cffbench",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return other


def _start(checkout: Path, cwd: Path, script: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.Popen(["bash", "-c", f'source "{checkout}/scripts/venv.sh" && python "{script}"'],
                            cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen) -> list[str]:
    out, err = process.communicate("go\n", timeout=300)
    assert process.returncode == 0, err
    return out.split()


def test_each_checkout_and_its_workers_import_their_own_code(built_venv, tmp_path):
    other = _other_checkout(tmp_path)
    script = tmp_path / "where.py"
    script.write_text(WHERE)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()

    # this checkout's driver starts first; the other clone sources the venv while it waits: the
    # driver and the worker it spawns afterwards must still run this checkout's code
    ours = _start(REPO, elsewhere, script)
    assert ours.stdout.readline().strip() == "ready"
    theirs = _start(other, elsewhere, script)
    assert theirs.stdout.readline().strip() == "ready"
    assert _finish(theirs) == [str(other / "cffbench" / "__init__.py")] * 2
    assert _finish(ours) == [str(REPO / "cffbench" / "__init__.py")] * 2

    # the venv itself holds no cffbench: nothing for a process without PYTHONPATH to pick up
    site = list(built_venv.glob("lib/python*/site-packages"))
    assert site and not [p for s in site for p in s.glob("*cffbench*")]



HOLD = ("import mmap, os, sys\n"
        "with open(os.environ['HOLD_FILE'], 'rb') as fh:\n"
        "    mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)\n"
        "    print('ready', flush=True)\n"
        "    sys.stdin.readline()\n")


def _in_use(venv: Path) -> bool:
    probe = f'source "{REPO}/scripts/venv.sh" >/dev/null && _cffbench_in_use "$1" && echo used || echo unused'
    out = subprocess.run(["bash", "-c", probe, "probe", str(venv)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()[-1] == "used"


def test_a_venv_whose_library_a_process_has_loaded_counts_as_in_use(built_venv, tmp_path):
    # A study started as `python -m cffbench run` in an activated venv names no venv path on its
    # command line, only its memory map does (torch's libraries); a pyproject.toml change that
    # builds a new venv deletes the old ones no process uses, so this one must count as used.
    old = tmp_path / "old-venv"
    (old / "lib").mkdir(parents=True)
    (old / "lib" / "libsomething.so").write_bytes(b"\0" * 4096)
    script = tmp_path / "hold.py"
    script.write_text(HOLD)
    assert not _in_use(old)
    env = {**os.environ, "HOLD_FILE": str(old / "lib" / "libsomething.so")}   # not on its argv
    holder = subprocess.Popen(["python3", str(script)], cwd=tmp_path, env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "ready"
        assert str(old) + "/" not in " ".join(psutil.Process(holder.pid).cmdline())
        assert _in_use(old)
    finally:
        holder.communicate("go\n", timeout=60)
    assert not _in_use(old)


def _broken_checkout(tmp_path: Path) -> tuple[Path, dict]:
    """A checkout whose venv cannot be built (pyproject.toml is not TOML; no package index), with
    its own venv root, so that nothing touches the shared venvs."""
    checkout = tmp_path / "broken-clone"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "venv.sh", checkout / "scripts" / "venv.sh")
    (checkout / "pyproject.toml").write_text("[project\nname = \n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(CFFBENCH_VENV_ROOT=str(tmp_path / "venvs"), PIP_NO_INDEX="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    return checkout, env


def _source(checkout: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(["bash", "-c", f'source "{checkout}/scripts/venv.sh"'], cwd=checkout,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_venv_whose_build_fails_is_never_marked_complete(tmp_path):
    # venv.sh runs its build as `f || error`, where bash ignores `set -e` inside f: a failed pip
    # install once went on to mark the half-built venv complete, and every later shell used it
    checkout, env = _broken_checkout(tmp_path)
    process = _source(checkout, env)
    _, err = process.communicate(timeout=300)
    assert process.returncode != 0
    assert "cffbench: error: could not build the venv" in err
    venvs = [p for p in (tmp_path / "venvs").iterdir() if p.is_dir()]
    assert len(venvs) == 1 and not (venvs[0] / ".complete").exists()


@pytest.mark.skipif(shutil.which("flock") is None, reason="no flock(1) on this system")
def test_a_second_shell_waits_for_the_venv_build_already_running(tmp_path):
    # two shells sourcing venv.sh at once each `rm -rf`-ed the other's half-built venv; the build
    # holds an flock on <venv>.lock, so while another holder has it nothing is touched
    checkout, env = _broken_checkout(tmp_path)
    digest = hashlib.sha256((checkout / "pyproject.toml").read_bytes()).hexdigest()[:12]
    venv = tmp_path / "venvs" / digest
    venv.parent.mkdir()
    holder = subprocess.Popen(["flock", f"{venv}.lock", "sleep", "4"])
    try:
        import time

        time.sleep(0.5)
        process = _source(checkout, env)
        time.sleep(2.5)
        assert process.poll() is None and not venv.exists()     # waiting, nothing built yet
    finally:
        holder.wait(timeout=30)
    _, err = process.communicate(timeout=300)
    assert "building venv" in err and process.returncode != 0     # then it builds (and fails)
