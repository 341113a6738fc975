"""Command-line usage mistakes: one line on stderr, exit code 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO


def cffbench(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cffbench", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


@pytest.mark.parametrize("args, fragment", [
    (("bogus",), "No such command 'bogus'"),
    (("run",), "Missing argument"),
    (("analyze", "results/x", "--no-such-option"), "No such option: --no-such-option"),
    (("report", "results/x", "--format"), "requires an argument"),
    (("train", "--epochs", "many"), "Invalid value for '--epochs'"),
])
def test_usage_errors_are_one_line_and_exit_2(args, fragment):
    done = cffbench(*args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cffbench: error: ")
    assert fragment in lines[0]
    assert "Traceback" not in done.stderr + done.stdout


def test_help_exits_0_and_lists_every_command():
    done = cffbench("--help")
    assert done.returncode == 0
    for command in ("run", "plan", "status", "analyze", "report", "train", "data"):
        assert command in done.stdout


def test_os_errors_are_one_line_and_exit_2(tmp_path, data_root):
    # A results folder whose name is longer than the file system allows.
    study = tmp_path / "tiny.toml"
    study.write_text('name = "tiny"\nseeds = [0]\n[data]\ndatasets = ["mnist"]\n')
    done = cffbench("run", str(study), "--executor", "serial", "--data-root", str(data_root),
                    "--results", str(tmp_path / ("n" * 300)))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "File name too long" in lines[0]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", ["analyze", "report"])
def test_malformed_analysis_plan_is_one_line_and_exit_2_for_analyze_and_report(command, tmp_path):
    import shutil

    store = tmp_path / "store"
    shutil.copytree(REPO / "results" / "alpha_ablation", store)
    study = store / "study.toml"
    study.write_text(study.read_text(encoding="utf-8").replace(
        "[execution]", '[analysis]\ntest = "ttest"\n\n[execution]'), encoding="utf-8")
    done = cffbench(command, str(store), "--out", str(tmp_path / "out"))
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "[analysis] test" in lines[0] and "ttest" in lines[0]
    out = tmp_path / "out"   # nothing rendered from a plan that is not valid
    assert not out.exists() or not any(out.iterdir())


def test_ctrl_c_outside_a_commands_own_handler_says_interrupted_and_exits_130(monkeypatch, capsys,
                                                                              tmp_path):
    # e.g. Ctrl-C while a command still imports: typer turns it into exit code 130, silently
    import cffbench.study
    from cffbench import cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cffbench.study, "study_status", interrupted)
    with pytest.raises(SystemExit) as info:
        cli.main(["status", str(tmp_path)])
    assert info.value.code == 130
    assert capsys.readouterr().err.splitlines() == ["cffbench: interrupted"]
