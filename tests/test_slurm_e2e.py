"""The real training loop in Slurm jobs on the test cluster: 2 CPU ranks, ZeRO-3, offline W&B.

One cluster and one small demo world per session (tests/e2e_world.py). The uninterrupted run of the
intermediate_multitask template (`reference_run`) is also the reference of the preemption test and
of tests/test_launchers.py.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from e2e_world import MAX_STEPS, TASKS, job_env, read_metrics, render, template_vars, wandb_runs

from xrobust.launch import slurm as xslurm

pytestmark = [pytest.mark.slurm, pytest.mark.multirank, pytest.mark.slow]


def test_intermediate_multitask_template_trains(reference_run):
    """`xrobust slurm render` + `sbatch --wait`: run dir complete, offline W&B run readable."""
    root, text = reference_run.root, reference_run.output
    print(f"reference job {reference_run.job}: {reference_run.seconds:.1f} s")
    assert f"run_id=xr-{reference_run.job}" in text and "launcher=deepspeed" in text
    for rel in ("config.yaml", "environment.json", "models.json", "intermediate/config.yaml",
                "intermediate/metrics.jsonl", "intermediate/model/model.safetensors",
                "intermediate/model/heads.json", "intermediate/model/tokenizer.json"):
        assert (root / rel).is_file(), rel
    assert json.loads((root / "environment.json").read_text())["world_size"] == 2
    train, evals = read_metrics(root / "intermediate" / "metrics.jsonl")
    assert [r["step"] for r in train] == list(range(1, MAX_STEPS + 1))
    assert {r["task"] for r in train} <= set(TASKS)
    assert len(evals) == 1 and evals[0]["step"] == MAX_STEPS and set(evals[0]["eval"]) == set(TASKS)

    (run,) = wandb_runs(root, f"xr-{reference_run.job}")
    assert run["complete"] and run["project"] == "xrobust-e2e"
    assert run["config"]["name"] == "reference" and run["config"]["model"]["dropout"] == 0.0
    logged = [(row["_step"], row["intermediate/train/loss"]) for row in run["history"]
              if "intermediate/train/loss" in row]
    assert logged == [(r["step"], pytest.approx(r["loss"])) for r in train]
    assert run["summary"]["intermediate/dev/selection"] == pytest.approx(evals[0]["selection"])


def test_intermediate_array_one_run_per_task(e2e_world, slurm_cluster, tmp_path):
    """intermediate_array over two demo tasks: one single-task run dir (and W&B run) per array index."""
    cfg = e2e_world.config(tmp_path / "cfg.yaml", "array", tmp_path / "runs", max_steps=2)
    env = job_env(e2e_world, slurm_cluster)
    script = render("intermediate_array", cfg, tmp_path / "array.sbatch",
                    template_vars(tmp_path, "srun", TASKS=" ".join(TASKS), NAME="arr",
                                  OUTPUT=str(tmp_path / "arr_%a.out")), env)
    assert "#SBATCH --array=0-1" in script.read_text()
    t0 = time.monotonic()
    res = slurm_cluster.run(["sbatch", "--wait", "--parsable", str(script)], env=env, timeout=600, check=False,
                            cwd=str(tmp_path))
    outs = "\n".join(p.read_text(errors="replace") for p in sorted(tmp_path.glob("arr_*.out")))
    assert res.returncode == 0, outs[-5000:]
    print(f"array of {len(TASKS)} tasks: {time.monotonic() - t0:.1f} s")
    job = res.stdout.strip().split(";")[0]
    for index, task in enumerate(TASKS):
        root = tmp_path / "runs" / f"arr-{task}"
        train, evals = read_metrics(root / "intermediate" / "metrics.jsonl")
        assert [r["task"] for r in train] == [task, task] and list(evals[0]["eval"]) == [task]
        assert (root / "intermediate" / "model" / "heads.json").is_file()
        (run,) = wandb_runs(root, f"xr-{job}-{index}")
        assert run["complete"] and run["config"]["phases"]["intermediate"]["tasks"] == [task]


def _wait_for(predicate, timeout: float, what: str, cluster, poll: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{cluster.logs()}"
        time.sleep(poll)


def test_preempt_checkpoint_requeue_resume_matches_uninterrupted(e2e_world, slurm_cluster, reference_run,
                                                                  tmp_path):
    """USR1 mid-training -> checkpoint -> exit 3 -> requeue -> --resume -> same result as no preemption."""
    cfg = e2e_world.config(tmp_path / "cfg.yaml", "preempt", tmp_path / "runs")
    env = job_env(e2e_world, slurm_cluster)
    out = tmp_path / "job.out"
    script = render("intermediate_multitask", cfg, tmp_path / "job.sbatch",
                    template_vars(tmp_path, "deepspeed", OUTPUT=str(out)), env)
    t_submit = time.monotonic()
    job = xslurm.submit(script, env=env)
    root = tmp_path / "runs" / "preempt"
    metrics = root / "intermediate" / "metrics.jsonl"

    def steps_done():
        return metrics.is_file() and len(read_metrics(metrics)[0])

    _wait_for(lambda: (steps_done() or 0) >= 2, 400, "step 2", slurm_cluster, poll=0.05)
    signalled_after = steps_done()
    t_signal = time.time()
    slurm_cluster.run(["scancel", "--signal=USR1", "--batch", job])
    _wait_for(lambda: "launcher exited with" in out.read_text(errors="replace"), 120, "the launcher to exit",
              slurm_cluster, poll=0.05)
    t_exit = time.time()
    pointer = root / "intermediate" / "checkpoints" / "latest_complete"
    t_checkpoint = pointer.stat().st_mtime
    assert xslurm.wait_for_job(job, timeout=500, env=env) == "COMPLETED"
    total = time.monotonic() - t_submit
    text = out.read_text(errors="replace")

    # checkpointed at the step boundary after the signal, exited 3, requeued, resumed from there
    m = re.search(r"preempted: checkpoint at step (\d+) written to (\S+)", text)
    assert m, text[-5000:]
    saved = int(m.group(1))
    assert signalled_after <= saved < MAX_STEPS, (signalled_after, saved)
    assert pointer.read_text().strip() == f"step-{saved:08d}"
    assert "launcher exited with 3 after USR1" in text and f"requeueing job {job}" in text
    assert "restart=1" in text and "--resume" in text
    assert slurm_cluster.job_field(job, "Restarts") == "1"
    assert f"resumed from {root / 'intermediate' / 'checkpoints' / f'step-{saved:08d}'} at step {saved}" in text

    # every step exactly once (nothing recomputed, nothing skipped); final metrics = uninterrupted run
    train, evals = read_metrics(metrics)
    ref_train, ref_evals = read_metrics(reference_run.root / "intermediate" / "metrics.jsonl")
    assert [r["step"] for r in train] == list(range(1, MAX_STEPS + 1))
    assert [r["task"] for r in train] == [r["task"] for r in ref_train]
    assert [r["loss"] for r in train] == pytest.approx([r["loss"] for r in ref_train], rel=1e-5, abs=1e-6)
    assert [r["lr"] for r in train] == pytest.approx([r["lr"] for r in ref_train])
    assert len(evals) == 1 and evals[-1]["step"] == ref_evals[-1]["step"] == MAX_STEPS
    for task, scores in ref_evals[-1]["eval"].items():
        assert evals[-1]["eval"][task] == pytest.approx(scores, abs=1e-6), task

    # one W&B run id across the requeue; the second part continues the history after the checkpoint
    runs = wandb_runs(root, f"xr-{job}")
    assert len(runs) == 2 and all(r["complete"] and r["run_id"] == f"xr-{job}" for r in runs), runs
    steps = [[row["_step"] for row in r["history"] if "intermediate/train/loss" in row] for r in runs]
    assert steps[0][-1] == saved and steps[1] == list(range(saved + 1, MAX_STEPS + 1)), steps
    assert runs[1]["summary"]["intermediate/dev/selection"] == pytest.approx(ref_evals[-1]["selection"])

    lost = sum(1 for r in train if r["step"] <= saved) - saved  # re-done steps after the resume
    print(f"PREEMPTION signal after step {signalled_after}, checkpoint at step {saved}; "
          f"signal->checkpoint {t_checkpoint - t_signal:.2f} s, signal->launcher exit {t_exit - t_signal:.2f} s; "
          f"steps lost {lost}; job total {total:.1f} s")
