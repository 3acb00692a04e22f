"""Study execution pieces that need no cluster: rendered job arrays, unit scripts, completion, status,
last error lines, and the W&B group/axes of a study's runs."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from xrobust.study.execute import (local_record_path, phase_dirs, prepare, submit_slurm, unit_done, unit_script)
from xrobust.study.plan import build_plan
from xrobust.study.spec import load_study
from xrobust.study.status import last_error, study_status
from test_study_plan import _study


@pytest.fixture
def plan(tmp_path):
    plan = build_plan(load_study(str(_study(tmp_path, intermediate=["none", "mnli"], method=["none", "freelb"],
                                            seeds=[1, 2], targets=["xnli", "tatoeba"],
                                            slurm={"PARTITION": "gpu"}))))
    prepare(plan)
    return plan


def test_dry_run_renders_one_array_per_level(plan):
    arrays = submit_slurm(plan, list(plan.units), {"all": {"TIME": "2:00:00"}, "2": {"GPUS_PER_NODE": "8"}},
                          dry_run=True)
    assert [(a["level"], len(a["units"]), a["dependency"]) for a in arrays] == [
        (1, 1 + 4 + 4, None), (2, 4, "afterok:<level 1>")]
    level1, level2 = (a["script"] for a in arrays)
    text = open(level2).read()
    assert "#SBATCH --array=0-3" in text and "#SBATCH --partition=gpu" in text and "#SBATCH --time=2:00:00" in text
    assert "#SBATCH --gpus-per-node=8" in text and "--gpus-per-node" not in open(level1).read()
    assert f"#SBATCH --job-name={plan.study.name}-L2" in text and "xr_run()" in text and "{{" not in text
    assert subprocess.run(["bash", "-n", level2]).returncode == 0
    assert not (plan.study.root / "jobs.json").exists()  # a dry run records no submission
    script = unit_script(plan, plan.units["cells/mnli-freelb-s2"])
    assert "XROBUST_STUDY_AXES=" in script and '"method": "freelb"' in script and "XROBUST_RUN_ID=advxlt-v1-" in script
    assert "xr_run pipeline --config" in script and "--resume --fresh-if-nothing-to-resume $EXTRA_ARGS" in script
    assert "xr_run study encoder --config" in unit_script(plan, plan.units["pretrained"])


def test_unit_done_needs_every_phase_and_later_results(plan):
    unit = plan.units["cells/mnli-none-s1"]
    dirs = phase_dirs(unit)
    assert dirs == [unit.run_dir / "target_classification"]
    assert not unit_done(unit)
    dirs[0].mkdir(parents=True)
    (unit.run_dir / "results.json").write_text("{}")
    (dirs[0] / "phase_complete.json").write_text("{}")
    assert not unit_done(unit)  # the results predate the phase's completion
    (unit.run_dir / "results.json").write_text("{}")
    assert unit_done(unit)


def test_status_and_last_error(plan, tmp_path):
    log = tmp_path / "x.log"
    log.write_text("step 1\nTraceback (most recent call last):\n  File x\nNotADirectoryError: [Errno 20] no\n"
                   "[xrobust 10:00:00] launcher exited with 1\n")
    assert last_error(log) == "NotADirectoryError: [Errno 20] no"
    log.write_text("error: cfg.yaml: key 'phases.x.lr': expected float\nsomething after\n")
    assert last_error(log).startswith("error: cfg.yaml")
    unit = plan.units["intermediate/mnli-none-s1"]
    local_record_path(plan, unit).parent.mkdir(parents=True, exist_ok=True)
    local_record_path(plan, unit).write_text(json.dumps({"state": "running", "pid": 2 ** 22 + 12345, "log": str(log)}))
    rows = {r.key: r for r in study_status(plan)}
    assert rows[unit.key].state == "failed" and rows[unit.key].detail.startswith("interrupted")
    assert rows["cells/mnli-none-s1"].state == "blocked" and rows["cells/mnli-none-s1"].detail == f"needs {unit.key}"
    assert rows["cells/mnli-none-s2"].state == "not submitted"


def test_wandb_run_of_a_study_cell(tmp_path, wandb_env, monkeypatch):
    from xrobust.tracking.wandb_reader import read_run
    from xrobust.tracking.wandb_run import Tracker

    axes = {"study": "grid", "unit": "cell", "intermediate": "mnli", "method": "freelb", "seed": 2}
    monkeypatch.setenv("XROBUST_STUDY_AXES", json.dumps(axes))
    tracker = Tracker({"name": "c", "tracking": {"mode": "offline", "project": "p", "run_id": "c1"}}, tmp_path)
    tracker.finish()
    deadline = time.monotonic() + 60
    while True:  # W&B's service writes the offline file after finish() returns
        found = list((wandb_env / "dir" / "wandb").glob("offline-run-*-c1"))
        if found and read_run(found[0])["complete"]:
            break
        assert time.monotonic() < deadline, found
        time.sleep(0.2)
    run = read_run(found[0])
    assert run["group"] == "grid" and run["config"]["study"] == axes and run["config"]["name"] == "c"
