"""The test cluster itself: sbatch --wait exit codes, job arrays, signal-driven requeue."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = pytest.mark.slurm


def test_sbatch_wait_returns_job_exit_code(slurm_cluster, tmp_path):
    script = tmp_path / "exit.sh"
    script.write_text("#!/bin/bash\necho running $SLURM_JOB_ID\nexit ${1:-0}\n")
    with ThreadPoolExecutor(2) as pool:
        ok, bad = pool.map(
            lambda code: slurm_cluster.run(
                ["sbatch", "--wait", "-o", str(tmp_path / f"out{code}.txt"), str(script), str(code)],
                check=False, timeout=120),
            (0, 7))
    assert ok.returncode == 0, ok.stderr
    assert bad.returncode == 7, bad.stderr
    assert "running" in (tmp_path / "out0.txt").read_text()


def test_job_array_runs_every_index(slurm_cluster, tmp_path):
    res = slurm_cluster.run(["sbatch", "--wait", "--array=0-2", "-o", str(tmp_path / "a_%a.txt"),
                             "--wrap", "echo index=$SLURM_ARRAY_TASK_ID of $SLURM_ARRAY_JOB_ID"])
    assert res.returncode == 0
    for i in range(3):
        assert f"index={i} of " in (tmp_path / f"a_{i}.txt").read_text()


def test_requeue_on_usr1_increments_restart_count(slurm_cluster, tmp_path):
    out = tmp_path / "rq.txt"
    script = tmp_path / "rq.sh"
    script.write_text("""#!/bin/bash
#SBATCH --requeue --signal=B:USR1@5 --open-mode=append
echo "start restart=${SLURM_RESTART_COUNT:-0} job=$SLURM_JOB_ID"
if [ "${SLURM_RESTART_COUNT:-0}" -ge 1 ]; then echo finished; exit 0; fi
trap 'echo got USR1; scontrol requeue $SLURM_JOB_ID; exit 0' USR1
sleep 600 & wait $!
""")
    t0 = time.monotonic()
    job = slurm_cluster.sbatch(script, "--parsable", "-o", str(out), check=True).stdout.strip()
    deadline = time.monotonic() + 60
    while slurm_cluster.job_field(job, "JobState") != "RUNNING":
        assert time.monotonic() < deadline, slurm_cluster.logs()
        time.sleep(0.2)
    time.sleep(1)  # let the script install its trap
    # the same signal Slurm sends at --signal time, without waiting for the time limit
    slurm_cluster.run(["scancel", "--signal=USR1", "--batch", job])
    state = slurm_cluster.wait_job_gone(job, timeout=90)
    elapsed = time.monotonic() - t0
    text = out.read_text()
    assert state == "COMPLETED", text
    assert f"start restart=0 job={job}" in text and "got USR1" in text
    assert f"start restart=1 job={job}" in text and "finished" in text
    assert slurm_cluster.job_field(job, "Restarts") == "1"
    print(f"requeue round trip {elapsed:.1f} s")
    assert elapsed < 60  # short cred_expire: a requeued job waits seconds, not ~2 minutes


def test_clusters_of_concurrent_sessions_do_not_share_daemons(slurm_cluster, tmp_path):
    """A second cluster (as another test session on this machine would start) gets its own munged,
    ports and job ids, and stopping it leaves the first one working."""
    from cluster import SlurmCluster

    other = SlurmCluster(tmp_path / "other").start()
    try:
        assert other.munge.socket != slurm_cluster.munge.socket
        assert set(other.ports).isdisjoint(slurm_cluster.ports)
        munged = {int(c.munge.pidfile.read_text()) for c in (slurm_cluster, other)}
        assert len(munged) == 2
        for cluster in (slurm_cluster, other):
            res = cluster.run(["srun", "-n1", "bash", "-c", "echo $SLURM_JOB_ID"], timeout=60)
            assert res.stdout.strip().isdigit()
    finally:
        other.stop()
    os.kill(int(slurm_cluster.munge.pidfile.read_text()), 0)  # still running
    assert slurm_cluster.run(["srun", "-n1", "true"], timeout=60).returncode == 0
