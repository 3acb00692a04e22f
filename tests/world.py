"""A small embedded-demo world (data, tokenizer, random-weight encoder) and configs for end-to-end tests.

Built once per test session. Configs inherit the shipped `demo` preset and shrink it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SIZES = {"train": 400, "train_target": 400, "dev": 40, "test": 40, "tatoeba": 40, "corpus_mono": 200, "corpus_parallel": 200,
         "corpus_codeswitch": 200, "vocab_size": 600}


def build_small_world(root: Path) -> dict:
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from xrobust.demo.world import build_world

    world = build_world(root / "world", seed=0, sizes=SIZES)
    encoder = root / "encoder"
    if not (encoder / "config.json").is_file():
        torch.manual_seed(0)
        AutoModel.from_config(AutoConfig.from_pretrained(world["model_config_dir"]),
                              add_pooling_layer=False).save_pretrained(encoder)
        AutoTokenizer.from_pretrained(world["tokenizer_dir"]).save_pretrained(encoder)
    return {**world, "encoder": str(encoder), "root": root}


def write_config(world: dict, path: Path, name: str, output_dir: Path, **sections) -> Path:
    """A demo-based config for tests: fp32, dropout 0, no W&B, a private feature cache."""
    cfg = {
        "base": "demo",
        "name": name,
        "output_dir": str(output_dir),
        "model": {"name_or_path": world["encoder"], "dropout": 0.0},
        "tracking": {"mode": "disabled"},
        "data": {"root": str(world["data_root"]), "cache_dir": str(Path(world["root"]) / "cache")},
    }
    for key, value in sections.items():
        cfg[key] = value
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def env() -> dict:
    # a fresh job: no rank variables from this process (an in-process test may have set them)
    e = {k: v for k, v in os.environ.items()
         if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
         and not k.startswith("SLURM_")}
    # one ninja for every build of DeepSpeed's CPU ops (the venv's): two versions invalidate each
    # other's builds and every rank start would rebuild
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}"
    e.update(DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", WANDB_MODE="disabled")
    return e


def cli_command(args: list[str], ranks: int = 1) -> list[str]:
    if ranks == 1:
        return [sys.executable, "-m", "xrobust.cli", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks),
            "-m", "xrobust.cli", *args]


def run_cli(args: list[str], ranks: int = 1, timeout: int = 600, check: bool = True):
    proc = subprocess.run(cli_command(args, ranks), env=env(), cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"xrobust {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-6000:]}")
    return proc


def metrics(run_dir: Path) -> tuple[dict[int, dict], list[dict]]:
    """(last train record per step, eval records) from metrics.jsonl; a resumed run repeats steps."""
    train, evals = {}, []
    for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "eval" in rec:
            evals.append(rec)
        else:
            train[rec["step"]] = rec
    return train, evals
