"""A small demo world, a random-weight encoder and configs for end-to-end runs of the real training loop.

Built once per test session (the `e2e_world` fixture) under a temporary folder. Every multi-rank run
uses the same base config: ZeRO-3 on CPU (`deepspeed: cpu`), fp32, dropout 0, two intermediate
tasks, a few optimizer steps and a small English dev set, so runs are deterministic and the losses
of different launchers (and of an interrupted + resumed run) can be compared exactly.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

SIZES = {"train": 200, "train_target": 200, "dev": 40, "test": 40, "tatoeba": 40, "corpus_mono": 200, "corpus_parallel": 300,
         "corpus_codeswitch": 300, "vocab_size": 400}
TASKS = ["demo_nli", "demo_tag"]
MAX_STEPS = 12


@dataclass
class E2EWorld:
    root: Path
    data_root: Path
    encoder: Path
    cache_dir: Path
    wandb_home: Path
    torch_extensions: Path

    def config(self, path: Path, name: str, output_dir: Path, *, max_steps: int = MAX_STEPS,
               tasks: list[str] | None = None, tracking: str = "offline") -> Path:
        """A `base: demo` config for the small world (JSON is valid YAML)."""
        cfg = {
            "base": "demo",
            "name": name,
            "output_dir": str(output_dir),
            "seed": 7,
            "deepspeed": "cpu",
            "model": {"name_or_path": str(self.encoder), "dropout": 0.0, "dtype": "fp32"},
            "data": {"root": str(self.data_root), "cache_dir": str(self.cache_dir)},
            "tracking": {"mode": tracking, "project": "xrobust-e2e"},
            "phases": {
                "intermediate": {"tasks": list(tasks or TASKS), "multitask": True, "max_steps": max_steps,
                                 "batch_size": 8, "micro_batch_size": 4, "eval_every": 0, "save_every": 0,
                                 "max_dev_examples": 24, "max_length": 48},
                "target": {"tasks": ["demo_xnli"], "max_steps": 2},
            },
        }
        path.write_text(json.dumps(cfg, indent=1))
        return path

    def env(self, **extra) -> dict:
        """Environment for launchers and Slurm jobs: CPU DeepSpeed, offline W&B with its folders in tmp."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SLURM_", "RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_", "WANDB_",
                                    "XROBUST_", "PYTEST_"))}
        env.update(DS_ACCELERATOR="cpu", PATH=f"{BIN}:{env.get('PATH', '')}", WANDB_MODE="offline",
                   WANDB_SILENT="true", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
                   TORCH_EXTENSIONS_DIR=str(self.torch_extensions), PYTHONUNBUFFERED="1")
        for var, sub in (("WANDB_CACHE_DIR", "cache"), ("WANDB_CONFIG_DIR", "config"),
                         ("WANDB_DATA_DIR", "data")):
            env[var] = str(self.wandb_home / sub)
        env.update(extra)
        return env


def build(root: Path) -> E2EWorld:
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from xrobust.demo.world import build_world

    root = Path(root)
    world = build_world(root / "world", seed=0, sizes=SIZES)
    encoder = root / "encoder"
    if not (encoder / "config.json").is_file():
        import torch

        torch.manual_seed(0)
        model = AutoModel.from_config(AutoConfig.from_pretrained(world["model_config_dir"]))
        model.save_pretrained(encoder)
        AutoTokenizer.from_pretrained(world["tokenizer_dir"]).save_pretrained(encoder)
    home = root / "wandb_home"
    for sub in ("cache", "config", "data"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    return E2EWorld(root, Path(world["data_root"]), encoder, root / "cache", home, _torch_extensions(root))


def _torch_extensions(root: Path) -> Path:
    """A private build cache for DeepSpeed's CPU shared-memory comm op, built once here.

    Every rank loads that op at start-up. ninja 1.11 (Debian) and 1.13 (the venv's) hash command
    lines differently in .ninja_log, so a build by the other one makes ninja rebuild the op
    (~40-80 s on 2 cores) while the other ranks wait on its lock file. This cache is warmed with
    the venv's ninja (first on PATH, as in every run of these tests) before any rank starts.
    """
    import shutil

    ext = root / "torch_extensions"
    shared = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or Path.home() / ".cache" / "torch_extensions")
    if not ext.exists() and shared.is_dir():
        shutil.copytree(shared, ext, ignore=shutil.ignore_patterns("lock"), dirs_exist_ok=True)
    ext.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, DS_ACCELERATOR="cpu", TORCH_EXTENSIONS_DIR=str(ext),
               PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    res = subprocess.run([sys.executable, "-c", "from deepspeed.ops.op_builder.cpu import ShareMemCommBuilder as B; "
                          "B().load(verbose=False)"], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return ext


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_metrics(path: Path) -> tuple[list[dict], list[dict]]:
    """(train records, dev eval records) of a metrics.jsonl."""
    records = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return [r for r in records if "loss" in r], [r for r in records if "eval" in r]


@pytest.fixture(scope="session")
def e2e_world(tmp_path_factory) -> E2EWorld:
    return build(tmp_path_factory.mktemp("e2e_world"))


# -- Slurm jobs of the real training loop ------------------------------------------------------------

def job_env(world: E2EWorld, cluster) -> dict:
    """The submission environment (sbatch exports it to the job), with a TMPDIR of this world."""
    tmp = world.root / "jobtmp"
    tmp.mkdir(exist_ok=True)
    return world.env(SLURM_CONF=str(cluster.conf), TMPDIR=str(tmp))


def template_vars(tmp: Path, launcher: str = "deepspeed", **extra) -> list[str]:
    """`--var` arguments that run a template's job on this machine: 2 CPU ranks of this venv."""
    values = {"LAUNCHER": launcher, "PROCS_PER_NODE": "2", "CPUS_PER_TASK": "1", "DS_ACCELERATOR": "cpu",
              "PYTHON": str(BIN / "python"), "ENV_ACTIVATE": f"export PATH={BIN}:$PATH", "WORKDIR": str(REPO),
              "TIME": "15", **extra}
    return [arg for k, v in values.items() for arg in ("--var", f"{k}={v}")]


def render(template: str, config: Path, out: Path, variables: list[str], env: dict) -> Path:
    """`xrobust slurm render` through the CLI, as a user would."""
    res = subprocess.run([sys.executable, "-m", "xrobust.cli", "slurm", "render", "--template", template,
                          "--config", str(config), "--out", str(out), *variables],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    return out


@dataclass
class ReferenceRun:
    """The uninterrupted 2-rank run of the base config, from the intermediate_multitask template."""
    job: str
    root: Path  # output_dir/name
    config: Path
    output: str  # the job's stdout+stderr
    seconds: float


@pytest.fixture(scope="session")
def reference_run(e2e_world, slurm_cluster, tmp_path_factory) -> ReferenceRun:
    import time

    tmp = tmp_path_factory.mktemp("reference")
    cfg = e2e_world.config(tmp / "cfg.yaml", "reference", tmp / "runs")
    env = job_env(e2e_world, slurm_cluster)
    out = tmp / "job.out"
    script = render("intermediate_multitask", cfg, tmp / "job.sbatch",
                    template_vars(tmp, "deepspeed", OUTPUT=str(out)), env)
    t0 = time.monotonic()
    res = slurm_cluster.run(["sbatch", "--wait", "--parsable", str(script)], env=env, timeout=600, check=False,
                            cwd=str(tmp))
    seconds = time.monotonic() - t0
    text = out.read_text(errors="replace") if out.exists() else ""
    assert res.returncode == 0, f"sbatch --wait -> {res.returncode}\n{res.stderr}\n{text[-5000:]}"
    return ReferenceRun(res.stdout.strip().split(";")[0], tmp / "runs" / "reference", cfg, text, seconds)


def wandb_runs(root: Path, run_id: str) -> list[dict]:
    """The offline W&B runs with this id under a run dir, read back, oldest first."""
    from xrobust.tracking.wandb_reader import read_run

    return [read_run(p) for p in sorted((Path(root) / "wandb").glob(f"offline-run-*-{run_id}"))]
