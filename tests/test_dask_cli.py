"""``cffbench run --executor dask --scheduler tcp://...``: the command line over the Dask executor."""

from __future__ import annotations

import pytest
import torch

from cffbench.cli import main
from cffbench.study import read_runs

torch.set_num_threads(1)

STUDY = '''
name = "dask-cli"
seeds = [0]
[data]
datasets = ["mnist"]
n_train = 200
[train]
variant = "ff"
hidden = [16]
epochs_per_layer = 3
train_eval_size = 100
[execution]
executor = "local"
'''


def test_scheduler_with_another_executor_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "s.toml").write_text(STUDY)
    with pytest.raises(SystemExit) as info:
        main(["run", str(tmp_path / "s.toml"), "--executor", "local",
              "--scheduler", "tcp://127.0.0.1:8786"])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2
    assert err == "cffbench: error: --scheduler needs --executor dask (got --executor local)"
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
@pytest.mark.data
@pytest.mark.filterwarnings("ignore:Port .* is already in use")
def test_run_with_scheduler_uses_that_cluster_on_real_mnist(tmp_path, capsys, data_root):
    from distributed import LocalCluster

    (tmp_path / "s.toml").write_text(STUDY)
    results = tmp_path / "results"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        # --scheduler overrides the study's executor = "local"
        main(["run", str(tmp_path / "s.toml"), "--results", str(results), "--device", "cpu",
              "--data-root", str(data_root), "--scheduler", cluster.scheduler_address])
        # the run went through this scheduler (task keys are cffbench-run-<run_id>-<attempt>)
        assert "cffbench-run" in cluster.scheduler.task_prefixes
    out = capsys.readouterr().out
    assert "1 runs planned, 0 already stored, 1 run now (ok 1" in out
    runs = read_runs(results)
    assert list(runs["status"]) == ["ok"] and runs["test_acc"].between(0, 1).all()
    assert runs["n_train"].iloc[0] == 200
