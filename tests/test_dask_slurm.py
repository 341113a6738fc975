"""The ``[execution]`` settings of the Dask executor and the SLURM job script they produce.

The job script is built offline: constructing a ``dask_jobqueue.SLURMCluster`` starts only a
local scheduler, never ``sbatch``.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from cffbench.errors import StudyError
from cffbench.study import make_executor, parse_study
from cffbench.study.dask_executor import DaskExecutor, import_dask_jobqueue, slurm_cluster

SLURM_STUDY = '''
name = "cluster"
[execution]
executor = "dask"
retries = 1
[execution.slurm]
queue = "gpu"
cores = 4
memory = "16GB"
walltime = "02:30:00"
jobs = 3
gpus = 1
account = "proj42"
extra_directives = ["--qos=long"]
prologue = ["module load cuda"]
'''


def sbatch_lines(script: str) -> list[str]:
    return [line for line in script.splitlines() if line.startswith("#SBATCH")]


def test_slurm_table_becomes_sbatch_lines_for_partition_cpus_mem_time_and_gpus():
    study = parse_study(SLURM_STUDY)
    cluster = slurm_cluster(study.execution.slurm)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    lines = sbatch_lines(script)
    assert "#SBATCH -p gpu" in lines
    assert "#SBATCH -A proj42" in lines
    assert "#SBATCH --cpus-per-task=4" in lines
    # dask_jobqueue writes memory in GiB: 16 GB = 16e9 B = 14.9 GiB, rounded up to 15G
    assert f"#SBATCH --mem={round(16e9 / 2**30)}G" in lines
    assert "#SBATCH -t 02:30:00" in lines
    assert "#SBATCH --gres=gpu:1" in lines
    assert "#SBATCH --qos=long" in lines
    assert "module load cuda" in script
    # four single-threaded worker processes per job: one torch thread each
    worker_line = next(line for line in script.splitlines() if "dask_worker" in line)
    assert re.search(r"--nthreads 1\b", worker_line) and re.search(r"--nworkers 4\b", worker_line)


def test_slurm_without_gpus_asks_for_no_gres():
    study = parse_study(SLURM_STUDY.replace("gpus = 1", "gpus = 0"))
    cluster = slurm_cluster(study.execution.slurm)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert not any("gres" in line for line in sbatch_lines(script))


def test_interface_and_folders_are_written_into_the_job_script(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    study = parse_study(SLURM_STUDY + 'interface = "lo"\nlog_directory = "slurm-logs"\n'
                        'local_directory = "$TMPDIR"\n')
    cluster = slurm_cluster(study.execution.slurm)
    try:
        script = cluster.job_script()
        scheduler = cluster.scheduler_address
    finally:
        cluster.close()
    worker_line = next(line for line in script.splitlines() if "dask_worker" in line)
    assert re.search(r"--interface lo\b", worker_line)
    # as written: the job's shell expands $TMPDIR on the compute node
    assert re.search(r"--local-directory \$TMPDIR(\s|$)", worker_line)
    # the scheduler listens on the same interface (lo is 127.0.0.1)
    assert scheduler.startswith("tcp://127.0.0.1:")
    logs = tmp_path / "slurm-logs"
    lines = sbatch_lines(script)
    assert f"#SBATCH -o {logs}/dask-worker-%J.out" in lines
    assert f"#SBATCH -e {logs}/dask-worker-%J.err" in lines
    assert logs.is_dir()


class RecordingSLURMCluster:
    """Stands in for dask_jobqueue.SLURMCluster: keeps its keyword arguments."""

    calls: list[dict] = []

    def __init__(self, **kwargs):
        RecordingSLURMCluster.calls.append(kwargs)


@pytest.mark.parametrize("extra, expected", [
    ('interface = "lo"\nlog_directory = "logs"\nlocal_directory = "/scratch/$USER"\n',
     {"interface": "lo", "log_directory": "{cwd}/logs", "local_directory": "/scratch/$USER"}),
    ('log_directory = "/var/log/jobs"\n',
     {"interface": None, "log_directory": "/var/log/jobs", "local_directory": None}),
    ("", {"interface": None, "log_directory": None, "local_directory": None}),
])
def test_slurm_options_are_slurmclusters_arguments(extra, expected, tmp_path, monkeypatch):
    dask_jobqueue = import_dask_jobqueue()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(dask_jobqueue, "SLURMCluster", RecordingSLURMCluster)
    RecordingSLURMCluster.calls.clear()
    slurm_cluster(parse_study(SLURM_STUDY + extra).execution.slurm)
    (kwargs,) = RecordingSLURMCluster.calls
    chosen = {key: kwargs[key] for key in expected}
    assert chosen == {key: value.format(cwd=tmp_path) if isinstance(value, str) else value
                      for key, value in expected.items()}
    assert (kwargs["queue"], kwargs["processes"], kwargs["cores"]) == ("gpu", 4, 4)


def test_interface_this_machine_lacks_is_a_one_line_error_before_any_cluster(monkeypatch):
    dask_jobqueue = import_dask_jobqueue()
    monkeypatch.setattr(dask_jobqueue, "SLURMCluster", RecordingSLURMCluster)
    RecordingSLURMCluster.calls.clear()
    study = parse_study(SLURM_STUDY + 'interface = "nosuch9"\n')
    with pytest.raises(StudyError) as info:
        make_executor("dask", 2, None, "cpu", execution=study.execution)
    message = str(info.value)
    assert "interface 'nosuch9' is not a network interface of this machine" in message
    assert "lo" in message.split("it has: ")[1] and "\n" not in message
    assert RecordingSLURMCluster.calls == []


def test_execution_section_reaches_the_dask_executor():
    study = parse_study(SLURM_STUDY.replace('retries = 1', 'retries = 1\nscheduler = "tcp://10.0.0.5:8786"'))
    engine = make_executor("dask", 2, None, "cpu", execution=study.execution)
    assert isinstance(engine, DaskExecutor)
    assert (engine.scheduler, engine.retries, engine.slurm.jobs) == ("tcp://10.0.0.5:8786", 1, 3)
    assert engine.scheduler_address() == "tcp://10.0.0.5:8786"


def test_dask_executor_defaults_to_two_retries_and_a_local_cluster():
    study = parse_study('name = "x"\n[execution]\nexecutor = "dask"\n')
    engine = make_executor("dask", 2, None, "cpu", execution=study.execution)
    assert (engine.retries, engine.slurm, engine.scheduler_address()) == (2, None, None)
    assert make_executor("dask", 2, None, "cpu").retries == 2


@pytest.mark.parametrize("line, fragment", [
    ("partition = \"gpu\"", "unknown key 'partition' at [execution.slurm]; allowed: queue, cores"),
    ("walltime = \"2h\"", "[execution] slurm.walltime"),
    ("memory = \"lots\"", "[execution] slurm.memory"),
    ("gpus = -1", "[execution] slurm.gpus"),
    ("interface = 0", "[execution] slurm.interface: Input should be a valid string"),
    ("interface = \"ib 0\"", "[execution] slurm.interface: must be a network interface name"),
    ("interface = \"\"", "[execution] slurm.interface: must be a network interface name"),
    ("interface = \"a-very-long-name0\"", "[execution] slurm.interface: must be a network"),
    ("log_directory = \"\"", "[execution] slurm.log_directory: must be a folder path without"),
    ("local_directory = \"/scratch/my jobs\"", "[execution] slurm.local_directory: must be a"),
    ("log_directory = [\"logs\"]", "[execution] slurm.log_directory: Input should be a valid"),
])
def test_bad_slurm_table_is_a_one_line_study_error_naming_the_key(line, fragment):
    text = 'name = "x"\n[execution]\nexecutor = "dask"\n[execution.slurm]\nqueue = "q"\n' + line
    with pytest.raises(StudyError) as info:
        parse_study(text, "cluster.toml")
    message = str(info.value)
    assert message.startswith("cluster.toml: ") and fragment in message and "\n" not in message


@pytest.mark.parametrize("line, fragment", [
    ("retries = -1", "[execution] retries"),
    ("scheduler = \"10.0.0.5:8786\"", "[execution] scheduler"),
])
def test_bad_retries_or_scheduler_address_is_a_study_error(line, fragment):
    with pytest.raises(StudyError, match=re.escape(fragment)):
        parse_study(f'name = "x"\n[execution]\n{line}\n', "s.toml")


def test_command_line_scheduler_overrides_the_study_files():
    import dask

    study = parse_study('name = "x"\n[execution]\nexecutor = "dask"\n'
                        'scheduler = "tcp://10.0.0.5:8786"\n')
    engine = make_executor("dask", 2, None, "cpu", execution=study.execution)
    with dask.config.set({"scheduler-address": "tcp://10.0.0.9:8786"}):   # what --scheduler sets
        assert engine.scheduler_address() == "tcp://10.0.0.9:8786"
    assert engine.scheduler_address() == "tcp://10.0.0.5:8786"


CTRL_C_HANDLER = """
import signal
{imports}
print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)
"""


@pytest.mark.parametrize("imports, keeps_ctrl_c", [
    ("from cffbench.study.dask_executor import import_dask_jobqueue; import_dask_jobqueue()", True),
    ("import dask_jobqueue", False),   # the side effect the helper undoes
])
def test_importing_dask_jobqueue_through_cffbench_keeps_ctrl_c_a_keyboard_interrupt(
        imports, keeps_ctrl_c, foreground_job):
    # foreground_job: under a test run launched with SIGINT ignored, Python installs no handler
    done = subprocess.run([sys.executable, "-c", CTRL_C_HANDLER.format(imports=imports)],
                          capture_output=True, text=True, timeout=120, **foreground_job)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(keeps_ctrl_c)]
