"""Multi-node jobs on a Slurm cluster of 3 nodes on this machine (tests/cluster.py, `multinode_cluster`).

Every node has its own host name and a node-local TMPDIR; the jobs use 2 of them. The real training
runs the base config of tests/e2e_world.py (ZeRO-3 on CPU, 12 steps) through the rendered templates:
- 2 nodes x 1 rank gives the losses of the 1 node x 2 ranks reference run (`reference_run`, the
  deepspeed launcher; tests/test_launchers.py shows torchrun and srun equal to it at 1 x 2);
- a job array's tasks run on different nodes;
- a preempted 2-node job checkpoints, is requeued, and resumes on two other nodes;
- `xrobust slurm pipeline` runs its afterok chain of 2-node jobs;
- a job folder on a node-local disk is refused before any rank starts.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from e2e_world import MAX_STEPS, REPO, TASKS, read_metrics, render, template_vars, wandb_runs

from xrobust.launch import slurm as xslurm

pytestmark = [pytest.mark.slurm, pytest.mark.multirank, pytest.mark.slow]

PROBE = REPO / "tests" / "scripts" / "rank_probe.py"
RECORD = REPO / "tests" / "scripts" / "record_args.py"
BIN = Path(sys.executable).parent


def job_env(world, cluster, probes: Path, **extra) -> dict:
    """The submission environment: TMPDIR is the node-local folder of each node."""
    probes.mkdir(exist_ok=True)
    return world.env(SLURM_CONF=str(cluster.conf), TMPDIR=str(cluster.tmpdir), RANK_PROBE_DIR=str(probes),
                     **extra)


def two_node_vars(tmp: Path, launcher: str, **extra) -> list[str]:
    """2 nodes x 1 rank with both CPUs of its node, the collectives on the loopback interface."""
    return template_vars(tmp, launcher, NODES="2", PROCS_PER_NODE="1", CPUS_PER_TASK="2", SOCKET_IFNAME="lo",
                         ENTRY=str(PROBE), **extra)


def run_job(cluster, script: Path, env: dict, out: Path, timeout: float = 600) -> tuple[str, float, str]:
    """Submit, wait until the job (every array task) completed; (job id, seconds, output)."""
    t0 = time.monotonic()
    job = xslurm.submit(script, env=env)
    try:
        xslurm.wait_for_job(job, timeout=timeout, poll=0.5, env=env)
    except Exception as exc:
        outs = "\n".join(p.read_text(errors="replace")[-4000:] for p in sorted(out.parent.glob(out.name)))
        raise AssertionError(f"{exc}\n{outs}\n{cluster.logs()}") from None
    text = "\n".join(p.read_text(errors="replace") for p in sorted(out.parent.glob(out.name)))
    return job, time.monotonic() - t0, text


def job_log(text: str) -> list[str]:
    """The job script's own lines of a job output, and the preemption and resume lines."""
    return [line for line in text.splitlines() if line.startswith(("[xrobust ", "preempted:", "resumed from"))]


def read_probes(probes: Path, job: str, restart: int = 0) -> list[dict]:
    return sorted((json.loads(p.read_text()) for p in probes.glob(f"{job}-{restart}-*.json")),
                  key=lambda r: int(r["rank"]))


def assert_ranks_ran_on(cluster, probes: list[dict], job: str, hosts: list[str], restart: int = 0, cpus: int = 2):
    """One rank per host, each with the step's CPUs, the configured interface and its node's TMPDIR;
    the entry file is not on the node-local disk."""
    assert [p["host"] for p in probes] == hosts, probes
    for p in probes:
        assert p["cpus"] == cpus, p  # --cpus-per-task reached the srun step (srun >= 22.05 does not inherit it)
        assert p["gloo_socket_ifname"] == p["nccl_socket_ifname"] == "lo", p
        assert p["tmpdir"] == str(cluster.tmpdir), p
        written = f"probe-{job}-{restart}-{p['rank']}"
        assert (cluster.node_tmp(p["host"]) / written).read_text() == p["host"]
        assert all(not (cluster.node_tmp(h) / written).exists() for h in cluster.nodes if h != p["host"])
        entry = [a for a in p["argv"] if a.endswith("entry.py")]
        assert entry and not entry[0].startswith(str(cluster.tmpdir)), p["argv"]


def assert_same_training(root: Path, reference_run):
    train, evals = read_metrics(root / "intermediate" / "metrics.jsonl")
    ref_train, ref_evals = read_metrics(reference_run.root / "intermediate" / "metrics.jsonl")
    assert [r["step"] for r in train] == list(range(1, MAX_STEPS + 1))
    assert [r["task"] for r in train] == [r["task"] for r in ref_train]
    assert [r["loss"] for r in train] == pytest.approx([r["loss"] for r in ref_train], rel=1e-5, abs=1e-6)
    assert [r["lr"] for r in train] == pytest.approx([r["lr"] for r in ref_train])
    assert evals[-1]["step"] == MAX_STEPS
    for task, scores in ref_evals[-1]["eval"].items():
        assert evals[-1]["eval"][task] == pytest.approx(scores, abs=1e-6), task
    return train, evals


@pytest.mark.parametrize("launcher", ["srun", "torchrun", "deepspeed"])
def test_two_nodes_one_rank_each_equal_one_node_two_ranks(launcher, e2e_world, multinode_cluster, reference_run,
                                                          tmp_path):
    cluster = multinode_cluster
    cfg = e2e_world.config(tmp_path / "cfg.yaml", launcher, tmp_path / "runs")
    env = job_env(e2e_world, cluster, tmp_path / "probes")
    out = tmp_path / "job.out"
    script = render("intermediate_multitask", cfg, tmp_path / "job.sbatch",
                    two_node_vars(tmp_path, launcher, OUTPUT=str(out)), env)
    job, seconds, text = run_job(cluster, script, env, out)
    print(f"{launcher} 2 nodes x 1 rank: {seconds:.1f} s\n" + "\n".join(job_log(text)))
    assert "nodes=n1 n2" in text and "cpus_per_task=2" in text and "socket_ifname=lo" in text
    assert_ranks_ran_on(cluster, read_probes(tmp_path / "probes", job), job, ["n1", "n2"])
    root = tmp_path / "runs" / launcher
    train, evals = assert_same_training(root, reference_run)
    ref_train, ref_evals = read_metrics(reference_run.root / "intermediate" / "metrics.jsonl")
    diffs = [abs(a["loss"] - b["loss"]) for a, b in zip(train, ref_train)]
    print(f"RESULT {launcher} 2x1 vs deepspeed 1x2: {len(train)} steps, losses bitwise equal at "
          f"{sum(d == 0 for d in diffs)}, max |diff| {max(diffs):.2e}, dev scores "
          f"{'equal' if evals[-1]['eval'] == ref_evals[-1]['eval'] else 'within 1e-6'}; job {seconds:.1f} s")
    assert json.loads((root / "environment.json").read_text())["world_size"] == 2
    (run,) = wandb_runs(root, f"xr-{job}")
    assert run["complete"]
    assert not (tmp_path / f"xrobust-job-{job}").exists()  # the job folder is removed at the end


def test_job_array_tasks_run_on_different_nodes(e2e_world, multinode_cluster, tmp_path):
    """intermediate_array over two demo tasks, each task a whole node: both run at once, on two nodes."""
    cluster = multinode_cluster
    cfg = e2e_world.config(tmp_path / "cfg.yaml", "array", tmp_path / "runs", max_steps=2)
    env = job_env(e2e_world, cluster, tmp_path / "probes")
    script = render("intermediate_array", cfg, tmp_path / "array.sbatch",
                    template_vars(tmp_path, "srun", TASKS=" ".join(TASKS), NAME="arr", PROCS_PER_NODE="1",
                                  CPUS_PER_TASK="2", ENTRY=str(PROBE), OUTPUT=str(tmp_path / "arr_%a.out")), env)
    job, seconds, _ = run_job(cluster, script, env, tmp_path / "arr_*.out")
    print(f"array of {len(TASKS)} single-node tasks: {seconds:.1f} s")
    hosts = []
    for index, task in enumerate(TASKS):
        text = (tmp_path / f"arr_{index}.out").read_text(errors="replace")
        host = re.search(r"array_task=\d+ restart=0 nodes=(\S+) ", text).group(1)
        task_job = re.search(r"job=(\d+) array_task", text).group(1)
        (probe,) = read_probes(tmp_path / "probes", task_job)
        assert probe["host"] == host and probe["cpus"] == 2, probe
        hosts.append(host)
        root = tmp_path / "runs" / f"arr-{task}"
        train, evals = read_metrics(root / "intermediate" / "metrics.jsonl")
        assert [r["task"] for r in train] == [task, task] and list(evals[0]["eval"]) == [task]
        (run,) = wandb_runs(root, f"xr-{job}-{index}")
        assert run["complete"] and run["config"]["phases"]["intermediate"]["tasks"] == [task]
    assert len(set(hosts)) == len(TASKS), hosts


def _wait_for(predicate, timeout: float, what: str, cluster, poll: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{cluster.logs()}"
        time.sleep(poll)


def test_preempted_two_node_job_resumes_on_other_nodes(e2e_world, multinode_cluster, reference_run, tmp_path):
    """USR1 to a 2-node job on n1+n2 -> checkpoint -> exit 3 -> requeue; n1 is drained meanwhile, so the
    job resumes on n2+n3 (rank 0 and the batch script on another node, fresh node-local TMPDIRs):
    every step once, the losses of the uninterrupted run, one W&B run continued."""
    cluster = multinode_cluster
    cfg = e2e_world.config(tmp_path / "cfg.yaml", "preempt", tmp_path / "runs")
    probes = tmp_path / "probes"
    env = job_env(e2e_world, cluster, probes)
    out = tmp_path / "job.out"
    script = render("intermediate_multitask", cfg, tmp_path / "job.sbatch",
                    two_node_vars(tmp_path, "deepspeed", OUTPUT=str(out)), env)
    t_submit = time.monotonic()
    job = xslurm.submit(script, env=env)
    root = tmp_path / "runs" / "preempt"
    metrics = root / "intermediate" / "metrics.jsonl"

    def steps_done():
        return metrics.is_file() and len(read_metrics(metrics)[0])

    try:
        _wait_for(lambda: (steps_done() or 0) >= 2, 400, "step 2", cluster, poll=0.05)
        signalled_after = steps_done()
        cluster.run(["scancel", "--signal=USR1", "--batch", job])
        # the running job keeps n1 until it ends; the requeued one cannot have it
        cluster.run(["scontrol", "update", "nodename=n1", "state=drain", "reason=preemption test"])
        assert xslurm.wait_for_job(job, timeout=500, poll=0.5, env=env) == "COMPLETED"
    finally:
        cluster.run(["scontrol", "update", "nodename=n1", "state=resume"], check=False)
    total = time.monotonic() - t_submit
    text = out.read_text(errors="replace")
    print(f"preempted 2-node job: {total:.1f} s\n" + "\n".join(job_log(text)))

    m = re.search(r"preempted: checkpoint at step (\d+) written to (\S+)", text)
    assert m, text[-5000:]
    saved = int(m.group(1))
    assert signalled_after <= saved < MAX_STEPS, (signalled_after, saved)
    # srun --kill-on-bad-exit may end the other ranks of a rank that exits 3 first: the marker decides
    assert re.search(r"launcher exited with \d+ after USR1", text) and f"requeueing job {job}" in text
    assert f"job={job} restart=0 nodes=n1 n2 " in text and f"job={job} restart=1 nodes=n2 n3 " in text
    assert cluster.job_field(job, "Restarts") == "1"
    assert f"resumed from {root / 'intermediate' / 'checkpoints' / f'step-{saved:08d}'} at step {saved}" in text
    assert_ranks_ran_on(cluster, read_probes(probes, job, 0), job, ["n1", "n2"])
    assert_ranks_ran_on(cluster, read_probes(probes, job, 1), job, ["n2", "n3"], restart=1)

    train, _ = assert_same_training(root, reference_run)  # every step once, the uninterrupted losses
    runs = wandb_runs(root, f"xr-{job}")
    assert len(runs) == 2 and all(r["complete"] and r["run_id"] == f"xr-{job}" for r in runs), runs
    steps = [[row["_step"] for row in r["history"] if "intermediate/train/loss" in row] for r in runs]
    assert steps[0][-1] == saved and steps[1] == list(range(saved + 1, MAX_STEPS + 1)), steps
    assert not (tmp_path / f"xrobust-job-{job}").exists()


def test_pipeline_chain_of_two_node_jobs(multinode_cluster, tmp_path):
    """`xrobust slurm pipeline`: intermediate -> target array -> evaluation, every job on 2 nodes, in
    afterok order (a stand-in entry records each rank's host and command line)."""
    cluster = multinode_cluster
    record = tmp_path / "record.txt"
    env = {k: v for k, v in cluster.env.items() if not k.startswith(("XROBUST_", "RANK", "WORLD_SIZE"))}
    env.update(RECORD_FILE=str(record), PATH=f"{BIN}:{env['PATH']}", TMPDIR=str(cluster.tmpdir))
    common = {"NODES": "2", "LAUNCHER": "srun", "PROCS_PER_NODE": "1", "CPUS_PER_TASK": "1", "ENTRY": str(RECORD),
              "PYTHON": str(BIN / "python"), "WORKDIR": str(REPO), "TIME": "15", "DS_ACCELERATOR": "cpu",
              "OUTPUT": str(tmp_path / "%x-%j.out")}
    args = [f"--var={k}={v}" for k, v in common.items()]
    args += ["--var=target_array:TASKS=xnli pawsx", f"--var=target_array:INIT_ENCODER={tmp_path / 'encoder'}"]
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "xrobust.cli", "slurm", "pipeline", "--config", "xstilts_mnli",
                          "--out-dir", str(tmp_path / "scripts"), *args],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    jobs = [line.split("\t") for line in res.stdout.splitlines()]
    assert [j[0] for j in jobs] == ["intermediate_multitask", "target_array", "evaluate"], res.stdout
    ids = [j[1] for j in jobs]
    assert f"--dependency=afterok:{ids[0]}" in jobs[1][2] and f"--dependency=afterok:{ids[1]}" in jobs[2][2]
    assert xslurm.wait_for_job(ids[2], timeout=900, poll=0.5, env=env) == "COMPLETED"
    print(f"pipeline of 2-node jobs: {time.monotonic() - t0:.1f} s")

    lines = [line.split(" ", 2) for line in record.read_text().splitlines()]  # job id, host, command line
    order = {"intermediate": [], "target": [], "evaluate": []}
    for i, (_, host, argv) in enumerate(lines):
        kind = ("intermediate" if "--phase intermediate" in argv else "target" if "--phase target" in argv
                else "evaluate" if argv.startswith("evaluate") and "evaluation.tasks=" not in argv else None)
        if kind:
            order[kind].append((i, host))
    assert all(order.values()), lines
    for kind, runs in order.items():  # one rank on each of 2 nodes; the array: 2 tasks
        assert len(runs) == (4 if kind == "target" else 2), (kind, lines)
        assert len({h for _, h in runs}) == 2, (kind, runs)
    assert max(i for i, _ in order["intermediate"]) < min(i for i, _ in order["target"])
    assert max(i for i, _ in order["target"]) < min(i for i, _ in order["evaluate"])


def test_job_folder_on_node_local_disk_is_refused(multinode_cluster, tmp_path):
    """JOB_DIR on the node-local TMPDIR: the job stops before any rank starts, naming the node and file."""
    cluster = multinode_cluster
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: t\nphases:\n  intermediate:\n    tasks: [mnli]\n")
    record = tmp_path / "record.txt"
    script, _ = xslurm.render("intermediate_multitask", str(cfg), out=str(tmp_path / "job.sbatch"), variables={
        "NODES": "2", "LAUNCHER": "srun", "PROCS_PER_NODE": "1", "CPUS_PER_TASK": "1", "ENTRY": str(RECORD),
        "PYTHON": str(BIN / "python"), "WORKDIR": str(REPO), "JOB_DIR": str(cluster.tmpdir),
        "OUTPUT": str(tmp_path / "job.out"), "TIME": "15"})
    env = dict(cluster.env, TMPDIR=str(cluster.tmpdir), RECORD_FILE=str(record))
    job = xslurm.submit(script, env=env)
    assert cluster.wait_job_gone(job, timeout=120) == "FAILED"
    text = (tmp_path / "job.out").read_text()
    assert "not every node of the job can read the files that every rank opens" in text, text
    assert f"n2: cannot read {cluster.tmpdir}/xrobust-job-{job}/entry.py" in text, text
    assert "n1: cannot read" not in text and not record.exists()
