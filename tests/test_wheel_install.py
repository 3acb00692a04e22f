"""xrobust installed from a wheel, used from outside the repository: the shipped DeepSpeed configs and
sbatch templates come with it (their only copies are ds_configs/ and slurm/), so it trains, evaluates
and renders Slurm scripts without the source tree."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from e2e_world import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    root = tmp_path_factory.mktemp("wheel")
    wheels = root / "dist"
    # from the tracked files only, as a clone or a git URL install would: a build/ folder left in the
    # checkout would otherwise be packed into the wheel and hide a file missing from setup.py
    source = root / "source"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(wheels), str(source)], capture_output=True, text=True, timeout=600, cwd=root)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = wheels.glob("xrobust-*.whl")
    site = root / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                              str(wheel)], capture_output=True, text=True, timeout=600, cwd=root)
    assert install.returncode == 0, install.stderr[-3000:]
    return {"wheel": wheel, "site": site, "outside": root}


def test_the_wheel_carries_one_copy_of_the_shipped_files(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    for path in sorted((REPO / "ds_configs").glob("*.json")):
        assert f"xrobust/ds_configs/{path.name}" in names
    for path in sorted((REPO / "slurm").iterdir()):
        assert f"xrobust/launch/templates/{path.name}" in names
    presets = REPO / "xrobust" / "config" / "presets"
    for path in sorted(presets.glob("*.yaml")) + sorted(presets.glob("overlays/*.yaml")) + \
            sorted(presets.glob("studies/*.yaml")):
        assert f"xrobust/config/presets/{path.relative_to(presets).as_posix()}" in names
    assert not (REPO / "xrobust" / "launch" / "templates").exists()  # no second copy in the tree
    sources = {p.relative_to(REPO).as_posix() for p in (REPO / "xrobust").rglob("*.py")}
    assert {"xrobust/demo/world.py", "xrobust/bench/gpu.py", "xrobust/distributed.py", "xrobust/study/plan.py"} <= sources
    assert "xrobust/config/presets/studies/demo_study.yaml" in names
    assert sources <= names, f"modules missing from the wheel: {sorted(sources - names)}"


def test_installed_wheel_has_the_demo_and_every_benchmark(installed):
    """`xrobust bench` says "not available in this build" for a benchmark module it cannot import."""
    env = dict(os.environ, PYTHONPATH=str(installed["site"]))
    probe = ("import sys, xrobust.bench.adversarial as m, xrobust.demo.world as w; "
             "print(m.__file__); print(w.__file__)")
    where = subprocess.run([sys.executable, "-c", probe], env=env, cwd=installed["outside"], capture_output=True,
                           text=True, timeout=120)
    assert where.returncode == 0, where.stderr[-2000:]
    assert all(line.startswith(str(installed["site"])) for line in where.stdout.split()), where.stdout
    for area, option in (("train", "--model"), ("eval", "--dim"), ("kernels", "--shapes"), ("adversarial", "--rounds"),
                         ("gpu", "--peak-tflops"), ("study", "--samples")):
        proc = subprocess.run([sys.executable, "-m", "xrobust.cli", "bench", area, "--help"], env=env,
                              cwd=installed["outside"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and option in proc.stdout, f"bench {area}: {proc.stdout}{proc.stderr[-2000:]}"
    demo = subprocess.run([sys.executable, "-m", "xrobust.cli", "demo", "--help"], env=env, cwd=installed["outside"],
                          capture_output=True, text=True, timeout=120)
    assert demo.returncode == 0 and "--adversarial" in demo.stdout, demo.stderr[-2000:]
    plan = subprocess.run([sys.executable, "-m", "xrobust.cli", "study", "plan", "--config", "demo_study"], env=env,
                          cwd=installed["outside"], capture_output=True, text=True, timeout=120)
    assert plan.returncode == 0 and "level 2: array of 6 (6 cell), afterok on level 1" in plan.stdout, \
        plan.stdout + plan.stderr[-2000:]


def test_installed_wheel_trains_evaluates_and_renders(installed, e2e_world, tmp_path):
    outside = installed["outside"]
    env = e2e_world.env(PYTHONPATH=str(installed["site"]), WANDB_MODE="disabled")

    def cli(*args, timeout=600):
        proc = subprocess.run([sys.executable, "-m", "xrobust.cli", *args], env=env, cwd=outside,
                              capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, f"xrobust {' '.join(args)}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        return proc

    where = subprocess.run([sys.executable, "-c", "import xrobust; print(xrobust.__file__)"], env=env, cwd=outside,
                           capture_output=True, text=True, timeout=120)
    assert where.stdout.strip().startswith(str(installed["site"])), where.stdout + where.stderr

    cfg = e2e_world.config(tmp_path / "wheel.json", "wheel", tmp_path / "runs", max_steps=2, tracking="disabled")
    body = json.loads(cfg.read_text())
    body["deepspeed"] = "zero3"  # a shipped config looked up by name
    body["phases"] = {"target": {"tasks": ["demo_xnli"], "max_steps": 2, "batch_size": 8, "micro_batch_size": 8,
                                 "eval_every": 0, "save_every": 0, "max_dev_examples": 8, "max_length": 32}}
    body["evaluation"] = {"tasks": ["demo_xnli"], "max_examples": 8}
    cfg.write_text(json.dumps(body))
    cli("train", "--config", str(cfg), "--phase", "target")
    run = tmp_path / "runs" / "wheel"
    assert (run / "target" / "demo_xnli" / "final").is_dir() or any(run.rglob("model.safetensors"))
    cli("eval", "--run", str(run))
    assert "demo_xnli" in json.loads((run / "results.json").read_text())["tasks"]

    out = tmp_path / "job.sbatch"
    cli("slurm", "render", "--template", "intermediate_multitask", "--config", str(cfg), "--out", str(out),
        "--var", f"WORKDIR={outside}")
    assert "srun" in out.read_text()
