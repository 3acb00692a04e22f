"""A small study on the test Slurm cluster, through the CLI: one job array per level, the second afterok on
the first, runs in that order; one cell made to fail, shown by `study status` with its error, completed
by `submit --retry-failed` (that cell alone); then the report."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from e2e_world import job_env, template_vars
from test_study_local import study_config

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]


def _cli(args, env, timeout=300):
    return subprocess.run([sys.executable, "-m", "xrobust.cli", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def _wait(jobs: list[str], env, cluster, timeout=900):
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(["squeue", "-h", "-j", ",".join(jobs), "-o", "%i %T %r"], env=env, capture_output=True,
                             text=True).stdout
        if not out.strip() or all("DependencyNeverSatisfied" in line for line in out.splitlines()):
            return out
        assert time.monotonic() < deadline, f"jobs {jobs} still queued:\n{out}\n{cluster.logs()}"
        time.sleep(2)


def test_study_on_slurm_with_a_failed_cell_retried(e2e_world, slurm_cluster, tmp_path):
    config = study_config(e2e_world, tmp_path / "study.yaml", tmp_path / "runs", seeds=(1, 2), target_steps=4,
                          tracking="disabled")
    env = job_env(e2e_world, slurm_cluster)
    root = tmp_path / "runs" / "tiny"
    broken = root / "cells" / "demo_nli-none-s2"
    broken.parent.mkdir(parents=True)
    broken.write_text("a file where the cell's run directory goes\n")  # this cell's job fails
    variables = template_vars(tmp_path, "srun", PROCS_PER_NODE="1")
    t0 = time.monotonic()
    res = _cli(["study", "submit", "--config", str(config), "--executor", "slurm", *variables], env)
    assert res.returncode == 0, res.stderr[-3000:]
    arrays = json.loads((root / "jobs.json").read_text())["submissions"][0]["arrays"]
    assert [(a["level"], len(a["units"])) for a in arrays] == [(1, 5), (2, 2)]
    assert arrays[0]["dependency"] is None and arrays[1]["dependency"] == f"afterok:{arrays[0]['job']}"
    assert set(arrays[1]["units"]) == {"cells/demo_nli-none-s1", "cells/demo_nli-none-s2"}
    assert f"level 2\t{arrays[1]['job']}\t2 unit(s)\tsbatch --parsable --dependency=afterok:{arrays[0]['job']}" \
        in res.stdout
    _wait([a["job"] for a in arrays], env, slurm_cluster)
    print(f"first submission: {time.monotonic() - t0:.1f} s")

    # afterok held: every level-1 run had written its results before a level-2 run started
    level1_end = max((root / p / "results.json").stat().st_mtime for p in
                     ("pretrained", "cells/none-none-s1", "cells/none-none-s2", "intermediate/demo_nli-none-s1",
                      "intermediate/demo_nli-none-s2"))
    assert (root / "cells/demo_nli-none-s1/environment.json").stat().st_mtime >= level1_end

    status = _cli(["study", "status", "--config", str(config)], env)
    assert status.returncode == 0, status.stderr
    rows = {line.split("|")[1].strip(): line for line in status.stdout.splitlines() if line.startswith("| ")}
    assert "| failed |" in rows["cells/demo_nli-none-s2"] and f"{arrays[1]['job']}_1" in rows["cells/demo_nli-none-s2"]
    assert "NotADirectoryError" in rows["cells/demo_nli-none-s2"] or "error:" in rows["cells/demo_nli-none-s2"]
    assert status.stdout.count("| done |") == 6

    res = _cli(["study", "submit", "--config", str(config), "--executor", "slurm", *variables], env)
    assert res.returncode == 2 and "--retry-failed" in res.stderr
    broken.unlink()
    res = _cli(["study", "submit", "--config", str(config), "--executor", "slurm", "--retry-failed", *variables], env)
    assert res.returncode == 0, res.stderr[-3000:]
    retry = json.loads((root / "jobs.json").read_text())["submissions"][1]["arrays"]
    assert [(a["level"], a["units"], a["dependency"]) for a in retry] == [(2, ["cells/demo_nli-none-s2"], None)]
    _wait([retry[0]["job"]], env, slurm_cluster)
    status = _cli(["study", "status", "--config", str(config)], env)
    assert status.stdout.count("| done |") == 7, status.stdout

    report = _cli(["study", "report", "--config", str(config), "--workers", "1"], env, timeout=600)
    assert report.returncode == 0, report.stderr[-3000:]
    data = json.loads((root / "report" / "report.json").read_text())
    assert all(c["seeds"] == [1, 2] and c["scores"] for c in data["cells"])
    (comparison,) = data["comparisons"]
    assert comparison["a"] == ["demo_nli", "none"] and comparison["b"] == ["none", "none"]
    assert set(comparison["rows"]) == {"demo_xnli", "demo_tatoeba", "avg"}
    print(f"study on Slurm with one retry, report included: {time.monotonic() - t0:.1f} s")
