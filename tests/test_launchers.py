"""The same real 2-rank ZeRO-3 training under every launcher gives the same losses.

`deepspeed --num_gpus 2` (which appends --local_rank), `torchrun --nproc_per_node 2` and plain
`srun -n 2` on the test cluster (ranks from SLURM_PROCID) run the base config of tests/e2e_world.py;
their metrics.jsonl must match the reference run of the intermediate_multitask template (deepspeed
launcher inside a Slurm job, tests/test_slurm_e2e.py).
"""

from __future__ import annotations

import subprocess
import time

import pytest
from e2e_world import BIN, MAX_STEPS, REPO, free_port, read_metrics

pytestmark = [pytest.mark.multirank, pytest.mark.slow]

TRAIN = ["-m", "xrobust.cli", "train", "--phase", "intermediate", "--config"]


def _launch(kind: str, e2e_world, tmp_path, slurm_cluster=None):
    cfg = e2e_world.config(tmp_path / "cfg.yaml", kind, tmp_path / "runs", tracking="disabled")
    port = str(free_port())
    env = e2e_world.env()
    if kind == "deepspeed":
        # the launcher puts --local_rank=N before the subcommand (see the parser test below)
        cmd = [str(BIN / "deepspeed"), "--num_gpus", "2", "--master_port", port, "--module",
               "xrobust.cli", *TRAIN[2:], str(cfg)]
    elif kind == "torchrun":
        cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", *TRAIN, str(cfg)]
    else:
        env.update(SLURM_CONF=str(slurm_cluster.conf), MASTER_PORT=port)
        cmd = ["srun", "-n", "2", "--cpus-per-task=1", "--kill-on-bad-exit=1", str(BIN / "python"), "-u", *TRAIN,
               str(cfg)]
    t0 = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
    print(f"{kind}: {time.monotonic() - t0:.1f} s")
    assert res.returncode == 0, (res.stdout + res.stderr)[-5000:]
    return read_metrics(tmp_path / "runs" / kind / "intermediate" / "metrics.jsonl")


def _assert_same(got, reference):
    (train, evals), (ref_train, ref_evals) = got, reference
    assert [r["step"] for r in train] == list(range(1, MAX_STEPS + 1))
    assert [r["task"] for r in train] == [r["task"] for r in ref_train]
    assert [r["loss"] for r in train] == pytest.approx([r["loss"] for r in ref_train], rel=1e-5, abs=1e-6)
    for task, scores in ref_evals[-1]["eval"].items():
        assert evals[-1]["eval"][task] == pytest.approx(scores, abs=1e-6), task


@pytest.fixture(scope="module")
def reference(reference_run):
    return read_metrics(reference_run.root / "intermediate" / "metrics.jsonl")


def test_cli_accepts_deepspeed_local_rank_before_the_subcommand():
    from xrobust.cli import build_parser

    args = build_parser().parse_args(["--local_rank=1", "train", "--config", "demo"])
    assert args.command == "train"


def test_deepspeed_launcher_leaves_no_shared_memory(tmp_path):
    """DeepSpeed's CPU all-reduce workspace (66 MB per rank in /dev/shm) is unlinked once mapped,
    so jobs do not fill the node's memory with dead workspaces; it still serves the all-reduce."""
    import glob

    port = str(free_port())
    res = subprocess.run([str(BIN / "deepspeed"), "--num_gpus", "2", "--master_port", port,
                          str(REPO / "tests" / "scripts" / "shm_workspace.py")],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env={**__import__("os").environ, "DS_ACCELERATOR": "cpu", "PYTHONPATH": str(REPO)})
    assert res.returncode == 0, (res.stdout + res.stderr)[-5000:]
    assert res.stderr.count(": ok") == 2, res.stderr[-3000:]
    assert glob.glob(f"/dev/shm/deepspeed_allreduce_buffer_*_{port}_*") == []


@pytest.mark.slurm
def test_deepspeed_launcher(e2e_world, reference, tmp_path):
    _assert_same(_launch("deepspeed", e2e_world, tmp_path), reference)


@pytest.mark.slurm
def test_torchrun(e2e_world, reference, tmp_path):
    _assert_same(_launch("torchrun", e2e_world, tmp_path), reference)


@pytest.mark.slurm
def test_plain_srun(e2e_world, slurm_cluster, reference, tmp_path):
    _assert_same(_launch("srun", e2e_world, tmp_path, slurm_cluster), reference)
