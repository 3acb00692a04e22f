"""Checkpoints: DeepSpeed shards + loop state + per-rank RNG, committed by an atomic `latest` pointer.

A run killed at any moment resumes from the last complete checkpoint: the pointer is written only
after every rank has finished writing.
"""

from __future__ import annotations

import io
import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError
from ..io import atomic_write_bytes, atomic_write_json, atomic_write_text
from . import distributed as dist

POINTER = "latest_complete"


def _rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(engine, ckpt_root: Path, step: int, loop_state: dict, keep: int) -> Path:
    tag = f"step-{step:08d}"
    engine.save_checkpoint(str(ckpt_root), tag=tag, save_latest=False)
    tag_dir = ckpt_root / tag
    buf = io.BytesIO()
    torch.save(_rng_state(), buf)
    atomic_write_bytes(tag_dir / f"rng_rank{dist.rank()}.pt", buf.getvalue())
    if dist.is_main():
        atomic_write_json(tag_dir / "loop_state.json", loop_state)
    dist.barrier()
    if dist.is_main():
        atomic_write_text(ckpt_root / POINTER, tag + "\n")
        tags = sorted(p.name for p in ckpt_root.glob("step-*") if p.is_dir())
        for old in tags[:-keep] if keep > 0 else []:
            shutil.rmtree(ckpt_root / old, ignore_errors=True)
    dist.barrier()
    return tag_dir


def latest(ckpt_root: Path) -> str | None:
    pointer = ckpt_root / POINTER
    if not pointer.is_file():
        return None
    tag = pointer.read_text().strip()
    if not (ckpt_root / tag).is_dir():
        raise CheckpointError(f"{pointer}: points to {tag}, which is missing; remove the pointer to restart")
    return tag


def load(engine, ckpt_root: Path, tag: str) -> dict:
    tag_dir = ckpt_root / tag
    state_file = tag_dir / "loop_state.json"
    try:
        loop_state = json.loads(state_file.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{state_file}: unreadable loop state ({exc})") from None
    path, _ = engine.load_checkpoint(str(ckpt_root), tag=tag, load_optimizer_states=True,
                                     load_lr_scheduler_states=True)
    if path is None:
        raise CheckpointError(f"{tag_dir}: DeepSpeed could not load this checkpoint")
    rng_file = tag_dir / f"rng_rank{dist.rank()}.pt"
    if rng_file.is_file():  # absent when resuming at another world size: the data order still matches
        _set_rng_state(torch.load(rng_file, weights_only=False))
    return loop_state
