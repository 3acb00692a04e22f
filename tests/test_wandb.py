"""Real offline W&B runs written by Tracker and read back by the offline reader."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xrobust.tracking.wandb_reader import read_run
from xrobust.tracking.wandb_run import RUN_ID_FILE, Tracker


def _cfg(mode="offline", **tracking):
    return {"name": "tiny", "seed": 1, "phases": {"target": {"lr": 2e-5}},
            "tracking": {"mode": mode, "project": "xr-test", "init_timeout": 60, **tracking}}


def _offline_runs(wandb_env: Path, run_id: str, timeout: float = 30) -> list[Path]:
    """The run's offline folders, once W&B's service has written each one to its exit record."""
    deadline = time.monotonic() + timeout
    while True:
        runs = sorted((wandb_env / "dir" / "wandb").glob(f"offline-run-*-{run_id}"))
        if runs and all(read_run(r)["complete"] for r in runs):
            return runs
        assert time.monotonic() < deadline, f"offline run {run_id} never completed: {runs}"
        time.sleep(0.2)


def test_offline_run_round_trip(wandb_env, tmp_path, capsys):
    tracker = Tracker(_cfg(run_id="round1"), tmp_path / "run", rank=0)
    assert tracker.active and tracker.run_id == "round1"
    for step in range(3):
        tracker.log({"train/loss": 1.0 / (step + 1), "lr": 1e-5}, step=step)
    tracker.summary({"best/xnli": 0.75})
    tracker.table("per_language", ["lang", "acc"], [["en", 0.9], ["de", 0.8]], step=2)
    tracker.finish()
    (run_dir,) = _offline_runs(wandb_env, "round1")
    run = read_run(run_dir)
    assert run["run_id"] == "round1" and run["project"] == "xr-test"
    assert run["config"]["phases"] == {"target": {"lr": 2e-5}} and run["config"]["seed"] == 1
    losses = [(r["_step"], r["train/loss"]) for r in run["history"] if "train/loss" in r]
    assert losses == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3))]
    assert run["summary"]["best/xnli"] == 0.75
    assert (tmp_path / "run" / RUN_ID_FILE).read_text().strip() == "round1"

    # the CLI, text and --json
    out = subprocess.run([sys.executable, "-m", "xrobust.cli", "wandb", "summary", str(run_dir), "--json"],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["summary"]["best/xnli"] == 0.75
    text = subprocess.run([sys.executable, "-m", "xrobust.cli", "wandb", "summary",
                           str(next(run_dir.glob("*.wandb")))], capture_output=True, text=True, check=True).stdout
    assert "_step=2" in text and "best/xnli: 0.75" in text


def test_resume_same_id_continues_history(wandb_env, tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")  # the id comes from the job, stable across requeues
    first = Tracker(_cfg(), tmp_path / "run", rank=0)
    assert first.run_id == "xr-4242"
    for step in range(3):
        first.log({"loss": float(step)}, step=step)
    first.finish()
    time.sleep(1.1)  # offline-run folder names carry the start second
    second = Tracker(_cfg(), tmp_path / "run", rank=0, resume_step=3)
    assert second.run_id == "xr-4242"
    for step in range(3, 6):
        second.log({"loss": float(step)}, step=step)
    second.finish()
    runs = _offline_runs(wandb_env, "xr-4242")
    assert len(runs) == 2
    parts = [read_run(r) for r in runs]
    assert {p["run_id"] for p in parts} == {"xr-4242"}
    steps = [row["_step"] for p in parts for row in p["history"] if "loss" in row]
    assert steps == [0, 1, 2, 3, 4, 5]


def test_run_id_from_array_task_and_saved_file(wandb_env, tmp_path, monkeypatch):
    from xrobust.launch.env import stable_run_id

    assert stable_run_id({"SLURM_JOB_ID": "11", "SLURM_ARRAY_JOB_ID": "10", "SLURM_ARRAY_TASK_ID": "3"}) == "xr-10-3"
    assert stable_run_id({"SLURM_JOB_ID": "11"}) == "xr-11"
    assert stable_run_id({}) is None
    t = Tracker(_cfg(), tmp_path / "run", rank=0)  # outside Slurm: a generated id, saved
    t.finish()
    again = Tracker(_cfg(), tmp_path / "run", rank=0, resume_step=5)
    assert again.run_id == t.run_id
    again.finish()


def test_other_ranks_and_disabled_do_nothing(wandb_env, tmp_path):
    for tracker in (Tracker(_cfg(), tmp_path / "r1", rank=1), Tracker(_cfg("disabled"), tmp_path / "r0", rank=0)):
        assert not tracker.active
        tracker.log({"x": 1}, step=0)
        tracker.summary({"x": 1})
        tracker.finish()
    assert not (wandb_env / "dir" / "wandb").exists()


def test_online_without_key_warns_and_continues(wandb_env, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    t0 = time.monotonic()
    with pytest.warns(RuntimeWarning, match="W&B could not start"):
        tracker = Tracker(_cfg("online", init_timeout=20), tmp_path / "run", rank=0)
    assert time.monotonic() - t0 < 30
    assert not tracker.active and tracker.error
    tracker.log({"loss": 1.0}, step=0)  # local logs only: no error
    tracker.finish()


def test_reader_errors_name_the_file(tmp_path):
    from xrobust.errors import XRobustError

    bad = tmp_path / "run-x.wandb"
    bad.write_bytes(b"not a run file")
    with pytest.raises(XRobustError, match="run-x.wandb: not a W&B run file"):
        read_run(bad)
    with pytest.raises(XRobustError, match="no run-\\*.wandb"):
        (tmp_path / "empty").mkdir()
        read_run(tmp_path / "empty")
