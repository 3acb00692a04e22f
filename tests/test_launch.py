"""Launchers and sbatch templates: the same tiny ZeRO-3 training under deepspeed, torchrun and srun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xrobust.errors import LaunchError
from xrobust.launch import slurm as xslurm
from xrobust.launch.env import _parse_nodelist, distributed_env_from_slurm, hostfile_from_nodelist

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "scripts" / "tiny_zero3.py"
BIN = Path(sys.executable).parent


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "RANK", "LOCAL_RANK", "WORLD_SIZE"))}
    env.update(DS_ACCELERATOR="cpu", PATH=f"{BIN}:{env.get('PATH', '')}", **extra)
    return env


def test_render_errors_and_output(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: t\nphases:\n  target:\n    tasks: [xnli]\n")
    with pytest.raises(LaunchError, match="no value for INIT_ENCODER"):
        xslurm.render("target_array", str(cfg), out=str(tmp_path / "t.sbatch"))
    with pytest.raises(LaunchError, match="unknown variable\\(s\\) NOPE"):
        xslurm.render("evaluate", str(cfg), out=str(tmp_path / "e.sbatch"), variables={"NOPE": "1"})
    with pytest.raises(LaunchError, match="unknown sbatch template 'nope'"):
        xslurm.render("nope", str(cfg))
    script, config = xslurm.render("target_array", str(cfg), ["phases.target.lr=3e-5"], str(tmp_path / "t.sbatch"),
                                   {"INIT_ENCODER": "/enc dir", "TASKS": "xnli panx", "PARTITION": "gpu"})
    text = script.read_text()
    assert "#SBATCH --array=0-1" in text and "#SBATCH --partition=gpu" in text
    assert "--account" not in text and "--gpus-per-node" not in text  # empty / 0 lines dropped
    assert "INIT_ENCODER='/enc dir'" in text and "xr_run()" in text and "{{" not in text
    assert "lr: 3.0e-05" in config.read_text()
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    res = subprocess.run([sys.executable, "-m", "xrobust.cli", "slurm", "submit", "--template", "evaluate",
                          "--config", str(cfg), "--out", str(tmp_path / "e.sbatch")],
                         capture_output=True, text=True, env={**os.environ, "PATH": str(tmp_path)})
    assert res.returncode == 2 and "sbatch not found" in res.stderr


@pytest.mark.parametrize("launcher,expected", [
    ("srun", "srun --ntasks=4 --ntasks-per-node=2 --cpus-per-task=3 "),
    ("torchrun", "srun --ntasks=2 --ntasks-per-node=1 --cpus-per-task=6 "),  # one torchrun per node: 2 ranks x 3
    ("deepspeed", "--launcher_args --kill-on-bad-exit=1 --ntasks-per-node=2 --cpus-per-task=3\n"),
])
def test_multinode_command_gives_srun_steps_the_cpus_per_task(launcher, expected, tmp_path):
    """srun >= 22.05 does not inherit --cpus-per-task from the job: every launcher's step gets it."""
    script = f"""source {xslurm.template_dir() / 'env.sh'}
LAUNCHER={launcher} PYTHON=python PROCS_PER_NODE=2 XR_CPUS=3 XR_HOSTS=(n1 n2) XR_NNODES=2 XR_JOB_DIR={tmp_path}
XR_ENTRY_PY={tmp_path}/entry.py MASTER_ADDR=n1 MASTER_PORT=20001 SLURM_JOB_ID=1
xr_command train --config c.yaml
echo "${{XR_CMD[*]}}"
cat {tmp_path}/hostfile 2>/dev/null || true
"""
    res = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert expected in res.stdout.replace(" --master_addr", "\n--master_addr"), res.stdout
    assert f"{tmp_path}/entry.py train --config c.yaml" in res.stdout
    if launcher == "deepspeed":
        assert res.stdout.endswith("n1 slots=2\nn2 slots=2\n"), res.stdout


def test_env_helpers(monkeypatch):
    assert _parse_nodelist("gpu[01-02,7],cpu5") == ["gpu01", "gpu02", "gpu7", "cpu5"]
    assert hostfile_from_nodelist("n[1-2]", slots=4) == "n1 slots=4\nn2 slots=4\n"
    env = {"SLURM_PROCID": "3", "SLURM_LOCALID": "1", "SLURM_NTASKS": "4", "SLURM_JOB_ID": "77",
           "SLURM_JOB_NODELIST": "a[1-2]", "LOCAL_RANK": "9"}
    set_ = distributed_env_from_slurm(env)
    assert env["RANK"] == "3" and env["WORLD_SIZE"] == "4" and env["LOCAL_RANK"] == "9"  # kept
    assert env["MASTER_ADDR"] == "a1" and env["MASTER_PORT"] == "20077" and "LOCAL_RANK" not in set_


@pytest.mark.multirank
@pytest.mark.slurm
@pytest.mark.slow
def test_template_preempt_requeue_resume(slurm_cluster, tmp_path):
    """Rendered intermediate_multitask script on the srun launcher: USR1 -> checkpoint -> exit 3 ->
    requeue -> --resume (launcher equivalence with the real training: test_launchers.py)."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: t\nphases:\n  intermediate:\n    tasks: [mnli]\n")
    state = tmp_path / "state.txt"
    script, _ = xslurm.render("intermediate_multitask", str(cfg), out=str(tmp_path / "job.sbatch"), variables={
        "LAUNCHER": "srun", "PROCS_PER_NODE": "2", "CPUS_PER_TASK": "1", "DS_ACCELERATOR": "cpu",
        "ENTRY": str(SCRIPT), "PYTHON": str(BIN / "python"), "ENV_ACTIVATE": f"export PATH={BIN}:$PATH",
        "WORKDIR": str(REPO), "OUTPUT": str(tmp_path / "job.out"), "TIME": "10",
        "EXTRA_ARGS": f"--steps 3 --sleep 4 --state {state}"})
    env = _env()
    env["SLURM_CONF"] = str(slurm_cluster.conf)
    job = xslurm.submit(script, env=env)
    deadline = time.monotonic() + 120
    out = tmp_path / "job.out"
    while not (out.exists() and "STARTED at step 0" in out.read_text()):
        assert time.monotonic() < deadline, slurm_cluster.logs()
        time.sleep(0.5)
    time.sleep(2)
    slurm_cluster.run(["scancel", "--signal=USR1", "--batch", job])
    assert xslurm.wait_for_job(job, timeout=240, env=env) == "COMPLETED"
    text = out.read_text()
    assert "PREEMPTED at step 1" in text and f"requeueing job {job}" in text, text[-3000:]
    assert "restart=1" in text and "--resume" in text
    final = json.loads([line for line in text.splitlines() if line.startswith("LOSSES ")][-1][7:])
    assert final["start"] == 1 and len(final["losses"]) == 2
    assert slurm_cluster.job_field(job, "Restarts") == "1"
