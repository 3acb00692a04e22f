"""`xrobust slurm pipeline` on the test cluster: intermediate -> target array -> evaluation really run
as an afterok chain, and a failed job stops everything after it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xrobust.errors import LaunchError
from xrobust.launch import slurm as xslurm

pytestmark = [pytest.mark.slurm]

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENTRY = REPO / "tests" / "scripts" / "record_args.py"


def _chain(slurm_cluster, tmp_path, fail_on=None):
    record = tmp_path / "record.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(SLURM_CONF=str(slurm_cluster.conf), RECORD_FILE=str(record), PATH=f"{BIN}:{env['PATH']}")
    if fail_on:
        env["FAIL_ON"] = fail_on
    # TIME well above the templates' SIGNAL_SECONDS (300): with 5 minutes the USR1 is due at the start
    # and a job the controller checks early is told to checkpoint and requeue at once
    variables = {"all": {"LAUNCHER": "srun", "PROCS_PER_NODE": "1", "CPUS_PER_TASK": "1", "ENTRY": str(ENTRY),
                         "PYTHON": str(BIN / "python"), "WORKDIR": str(REPO), "TIME": "15",
                         "OUTPUT": str(tmp_path / "%x-%j.out"), "DS_ACCELERATOR": "cpu"},
                 "target_array": {"TASKS": "xnli pawsx", "INIT_ENCODER": str(tmp_path / "encoder")}}
    jobs = xslurm.pipeline("xstilts_mnli", None, str(tmp_path / "scripts"), variables, env=env)
    return jobs, record, env


def test_pipeline_runs_in_dependency_order(slurm_cluster, tmp_path):
    jobs, record, env = _chain(slurm_cluster, tmp_path)
    assert [name for name, *_ in jobs] == ["intermediate_multitask", "target_array", "evaluate"]
    assert jobs[1][3] == f"afterok:{jobs[0][2]}" and jobs[2][3] == f"afterok:{jobs[1][2]}"
    assert xslurm.wait_for_job(jobs[2][2], timeout=240, env=env) == "COMPLETED"
    lines = record.read_text().splitlines()
    first = [i for i, line in enumerate(lines) if line.startswith(jobs[0][2] + " ")]
    array = [i for i, line in enumerate(lines) if " train " in f" {line} " and "tasks=[xnli]" in line
             or "tasks=[pawsx]" in line]
    last = [i for i, line in enumerate(lines) if " eval" in line and "tasks=[xnli]" not in line
            and "tasks=[pawsx]" not in line]
    assert first and array and last, lines
    assert max(first) < min(array) and max(array) < min(last), lines  # afterok order held


def test_failed_job_stops_the_chain(slurm_cluster, tmp_path):
    jobs, record, env = _chain(slurm_cluster, tmp_path, fail_on="--phase intermediate")
    with pytest.raises(LaunchError, match=jobs[0][2]):
        xslurm.wait_for_job(jobs[0][2], timeout=120, env=env)
    deadline = time.monotonic() + 60
    while True:  # the dependents can never start: Slurm marks them DependencyNeverSatisfied
        out = subprocess.run(["squeue", "-h", "-j", f"{jobs[1][2]},{jobs[2][2]}", "-o", "%r"], env=env,
                             capture_output=True, text=True).stdout
        if "DependencyNeverSatisfied" in out or not out.strip():
            break
        assert time.monotonic() < deadline, out
        time.sleep(1)
    subprocess.run(["scancel", jobs[1][2], jobs[2][2]], env=env)
    lines = record.read_text().splitlines()
    assert all(line.startswith(jobs[0][2] + " ") for line in lines), lines
