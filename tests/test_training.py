"""End-to-end training on the DeepSpeed engine: ZeRO-3 on 2 ranks equals one process, and a run
killed with SIGKILL resumes to the same final metrics as an uninterrupted run."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from world import build_small_world, cli_command, env, metrics, run_cli, write_config, REPO

pytestmark = [pytest.mark.multirank, pytest.mark.slow]

PHASE = {"tasks": ["demo_nli", "demo_tag", "demo_qa", "demo_mc"], "batch_size": 16, "micro_batch_size": 4,
         "max_steps": 10, "save_every": 2, "eval_every": 5, "max_dev_examples": 40, "lr": 1.0e-3}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_small_world(tmp_path_factory.mktemp("train-world"))


def _config(world, tmp_path, name, deepspeed):
    return write_config(world, tmp_path / f"{name}.yaml", name, tmp_path / "runs", deepspeed=deepspeed,
                        phases={"intermediate": PHASE})


@pytest.fixture(scope="module")
def zero3_run(world, tmp_path_factory):
    """The reference: ZeRO-3 on 2 CPU ranks, uninterrupted."""
    tmp = tmp_path_factory.mktemp("zero3")
    cfg = _config(world, tmp, "ref", "cpu")
    run_cli(["train", "--config", str(cfg), "--phase", "intermediate"], ranks=2)
    return tmp / "runs" / "ref" / "intermediate"


def test_zero3_two_ranks_equals_single_process(world, zero3_run, tmp_path):
    cfg = _config(world, tmp_path, "single", "zero0")
    run_cli(["train", "--config", str(cfg), "--phase", "intermediate"], ranks=1)
    single, single_eval = metrics(tmp_path / "runs" / "single" / "intermediate")
    sharded, sharded_eval = metrics(zero3_run)
    assert sorted(single) == sorted(sharded) == list(range(1, 11))
    assert len({r["task"] for r in single.values()}) > 1  # multi-task sampling really happened
    for step in single:
        assert single[step]["task"] == sharded[step]["task"]
        assert single[step]["loss"] == pytest.approx(sharded[step]["loss"], abs=1e-5), step
        assert single[step]["lr"] == pytest.approx(sharded[step]["lr"], rel=1e-9)
    assert [e["step"] for e in single_eval] == [e["step"] for e in sharded_eval] == [5, 10]
    for a, b in zip(single_eval, sharded_eval):  # dev predictions sharded over ranks, gathered in order
        for task in a["eval"]:
            assert a["eval"][task] == pytest.approx(b["eval"][task], abs=1e-6), task


def test_sigkill_then_resume_matches_uninterrupted(world, zero3_run, tmp_path):
    cfg = _config(world, tmp_path, "ref", "cpu")
    run_dir = tmp_path / "runs" / "ref" / "intermediate"
    pointer = run_dir / "checkpoints" / "latest_complete"
    proc = subprocess.Popen(cli_command(["train", "--config", str(cfg), "--phase", "intermediate"], ranks=2), env=env(), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if pointer.is_file() and pointer.read_text().strip() >= "step-00000004":
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; raise max_steps"
    # torchrun starts its workers in sessions of their own: kill the whole tree, as an OOM killer or
    # a node failure would
    import psutil

    tree = psutil.Process(proc.pid).children(recursive=True) + [psutil.Process(proc.pid)]
    for p in tree:
        p.send_signal(signal.SIGKILL)
    psutil.wait_procs(tree, timeout=30)
    proc.wait()
    killed_at = int(pointer.read_text().strip().split("-")[1])
    assert killed_at < PHASE["max_steps"]
    assert not (run_dir / "model" / "heads.json").exists() or killed_at >= PHASE["eval_every"]

    again = run_cli(["train", "--config", str(cfg), "--phase", "intermediate"], ranks=1, check=False)
    assert again.returncode == 2 and "--resume" in again.stderr  # an existing run is never reused silently

    resumed = run_cli(["train", "--config", str(cfg), "--phase", "intermediate", "--resume"], ranks=2)
    assert f"at step {killed_at}" in resumed.stdout + resumed.stderr
    train, evals = metrics(run_dir)
    ref_train, ref_evals = metrics(zero3_run)
    for step in range(killed_at + 1, PHASE["max_steps"] + 1):
        assert train[step]["loss"] == pytest.approx(ref_train[step]["loss"], abs=1e-6), step
    assert evals[-1]["step"] == ref_evals[-1]["step"] == PHASE["max_steps"]
    assert evals[-1]["selection"] == pytest.approx(ref_evals[-1]["selection"], abs=1e-6)
