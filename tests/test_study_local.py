"""The local executor on real runs (small demo world, 1 process each): a study killed in the middle of a
training phase resumes where it stopped, finished units are not run again, the report comes out, and
every run's W&B record carries the study as its group and the axes as config fields."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]


def study_config(world, path: Path, output: Path, *, seeds=(1,), target_steps=30, tracking="offline") -> Path:
    small = {"batch_size": 8, "micro_batch_size": 8, "eval_every": 0, "max_dev_examples": 16, "max_length": 48}
    path.write_text(yaml.safe_dump({
        "base": "demo", "output_dir": str(output), "deepspeed": "cpu",
        "model": {"name_or_path": str(world.encoder), "dropout": 0.0, "dtype": "fp32"},
        "data": {"root": str(world.data_root), "cache_dir": str(world.cache_dir)},
        "tracking": {"mode": tracking, "project": "xrobust-e2e"},
        "phases": {"intermediate": {"tasks": ["demo_nli"], "max_steps": 4, "save_every": 2, **small},
                   "target": {"tasks": ["demo_xnli"], "max_steps": target_steps, "save_every": 3, **small}},
        "evaluation": {"tasks": ["demo_xnli", "demo_tatoeba"], "batch_size": 32},
        "study": {"name": "tiny", "intermediate": ["none", "demo_nli"], "method": ["none"], "seeds": list(seeds),
                  "targets": ["demo_xnli", "demo_tatoeba"], "bootstrap": {"samples": 1000}},
    }, sort_keys=False))
    return path


def _cli(args, env, **kw):
    return subprocess.run([sys.executable, "-m", "xrobust.cli", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, **kw)


def test_local_study_killed_then_resumed(e2e_world, tmp_path):
    config = study_config(e2e_world, tmp_path / "study.yaml", tmp_path / "runs")
    env = e2e_world.env()  # W&B files in each run directory
    root = tmp_path / "runs" / "tiny"
    last = root / "cells" / "demo_nli-none-s1"
    pointer = last / "target" / "checkpoints" / "latest_complete"
    proc = subprocess.Popen([sys.executable, "-m", "xrobust.cli", "study", "submit", "--config", str(config),
                             "--executor", "local"], env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 900
    while not pointer.is_file():  # the last unit is in its target phase and has a checkpoint
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "no checkpoint of the last unit"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the executor and its run, at once, as a lost node would
    first = proc.communicate()[0]
    assert "[4/4] cells/demo_nli-none-s1: running" in first and not (last / "results.json").exists()
    saved = int(pointer.read_text().strip().split("-")[1])
    assert 3 <= saved < 30, saved

    status = _cli(["study", "status", "--config", str(config)], env, timeout=300)
    assert status.returncode == 0, status.stderr
    row = next(line for line in status.stdout.splitlines() if "cells/demo_nli-none-s1" in line)
    assert "| failed | local | interrupted" in row, status.stdout
    assert status.stdout.count("| done |") == 3

    again = _cli(["study", "submit", "--config", str(config), "--executor", "local"], env, timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    for unit in ("pretrained", "cells/none-none-s1", "intermediate/demo_nli-none-s1"):
        assert f"{unit}: done already" in again.stdout
        log = root / "logs" / f"{unit.replace('/', '__')}.log"
        assert log.read_text().count("\n=== ") == 1, unit  # ran once, in the first submission
    log = (root / "logs" / "cells__demo_nli-none-s1.log").read_text()
    assert log.count("\n=== ") == 2 and "--resume" in log.split("\n=== ")[2].splitlines()[0]
    assert f"resumed from {last / 'target' / 'checkpoints'}" in log
    steps = [json.loads(line)["step"] for line in (last / "target" / "metrics.jsonl").read_text().splitlines()
             if '"loss"' in line]
    assert steps[-1] == 30 and set(steps) == set(range(1, 31))

    report = _cli(["study", "report", "--config", str(config), "--workers", "1"], env, timeout=600)
    assert report.returncode == 0, report.stderr[-3000:]
    data = json.loads((root / "report" / "report.json").read_text())
    assert [c["seeds"] for c in data["cells"]] == [[1], [1]] and data["comparisons"][0]["a"] == ["demo_nli", "none"]
    assert "demo_tatoeba" in data["comparisons"][0]["rows"]  # retrieval from the encoder runs

    from xrobust.tracking.wandb_reader import read_run

    folders = sorted((last / "wandb").glob("offline-run-*"))
    run_id = (last / "wandb_run_id.txt").read_text().strip()
    # one W&B run id across the kill and the resume (the killed attempt's records died with W&B's
    # service, SIGKILLed before it flushed them: only its folder, named by the id, remains)
    assert run_id.startswith("tiny-") and run_id.endswith("-cells__demo_nli-none-s1")
    assert len(folders) == 2 and all(f.name.endswith(f"-{run_id}") for f in folders)
    runs = [read_run(folders[-1])]
    assert runs[-1]["run_id"] == run_id and runs[-1]["complete"]
    assert runs[-1]["config"]["study"] == {"study": "tiny", "unit": "cell", "intermediate": "demo_nli",
                                           "method": "none", "seed": 1}
    assert runs[-1]["group"] == "tiny"
    report_runs = list((root / "report" / "wandb").glob("offline-run-*"))
    assert report_runs and read_run(report_runs[0])["group"] == "tiny"
