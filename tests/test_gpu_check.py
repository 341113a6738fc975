"""``benchmarks/gpu_check.py --smoke`` runs end to end on CPU and writes every report file."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.slow
def test_gpu_check_smoke_mode_runs_on_cpu_and_writes_all_reports(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--smoke",
                           "--synthetic", "--device", "cpu", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert {p.name for p in tmp_path.iterdir()} == {"env.json", "paper_run.json", "stacked.json",
                                                    "plan.txt", "plan.json", "log.txt"}
    runs = json.loads((tmp_path / "paper_run.json").read_text())["runs"]
    assert [r["variant"] for r in runs] == ["ff", "a-cff"]
    assert all(r["status"] == "ok" and r["seconds"] > 0 and r["flops"] > 0 for r in runs)
    stacked = json.loads((tmp_path / "stacked.json").read_text())
    assert stacked["seeds"] == 10 and len(stacked["test_acc"]) == 10
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["planned"] == 100 and plan["remaining"] == 100   # studies/paper_table1.toml
    assert plan["gpu_serial_s"] > 0 and plan["estimate_s"] > 0
    assert "not a measurement" in (tmp_path / "plan.txt").read_text()
