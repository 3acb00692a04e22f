"""Checkpoints: DeepSpeed shards + loop state + per-rank RNG, committed by an atomic `latest` pointer.

A run killed at any moment resumes from the last complete checkpoint: the pointer is written only
after every rank has finished writing. Before loading, every file of the checkpoint is verified
(the ranks share the work); a damaged one is named and the newest older checkpoint that verifies
is used instead, with a warning.
"""

from __future__ import annotations

import io
import json
import random
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError
from ..io import atomic_write_bytes, atomic_write_json, atomic_write_text
from .. import distributed as dist

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
        atomic_write_json(tag_dir / "loop_state.json", {**loop_state, "world_size": dist.world_size()})
    dist.barrier()
    if dist.is_main():
        atomic_write_text(ckpt_root / POINTER, tag + "\n")
        tags = sorted(p.name for p in ckpt_root.glob("step-*") if p.is_dir())
        for old in tags[:-keep] if keep > 0 else []:
            shutil.rmtree(ckpt_root / old, ignore_errors=True)
    dist.barrier()
    return tag_dir


def _tags(ckpt_root: Path) -> list[str]:
    return sorted((p.name for p in ckpt_root.glob("step-*") if p.is_dir()), reverse=True)


def _problems(tag_dir: Path) -> list[str]:
    """What is wrong with a checkpoint folder (empty: it verifies). Every rank checks its share of
    the files; the answer is the same on every rank."""
    found = []
    rank, world = dist.rank(), dist.world_size()
    if dist.is_main():
        try:
            state = json.loads((tag_dir / "loop_state.json").read_text())
            saved_world = int(state.get("world_size", 1))
            missing = [f"rng_rank{r}.pt" for r in range(saved_world) if not (tag_dir / f"rng_rank{r}.pt").is_file()]
            if missing:
                found.append(f"{tag_dir / missing[0]} is missing (an unfinished save)")
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            found.append(f"{tag_dir / 'loop_state.json'}: unreadable ({exc})")
    files = sorted(p for p in tag_dir.rglob("*.pt") if p.is_file())
    for path in files[rank::world]:
        try:
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
            if bad is not None:
                found.append(f"{path}: damaged (checksum mismatch in {bad})")
        except (OSError, zipfile.BadZipFile, EOFError) as exc:
            found.append(f"{path}: damaged or truncated ({exc})")
    return sorted(p for part in dist.gather_objects(found) for p in part)


def _warn(text: str) -> None:
    if dist.is_main():
        print(f"warning: {text}", file=sys.stderr, flush=True)


def latest(ckpt_root: Path) -> str | None:
    """The newest checkpoint that verifies: the pointer's, else (with a warning naming what is wrong)
    the newest older one. None when there is none."""
    ckpt_root = Path(ckpt_root)
    pointer = ckpt_root / POINTER
    tags = _tags(ckpt_root) if ckpt_root.is_dir() else []
    if pointer.is_file():
        tag = pointer.read_text().strip()
        candidates = [tag] + [t for t in tags if t < tag]  # newer folders are unfinished saves
    else:
        candidates = tags
        if tags:
            _warn(f"{pointer} is missing; trying the checkpoint folders themselves ({', '.join(tags)})")
    for i, tag in enumerate(candidates):
        tag_dir = ckpt_root / tag
        problems = _problems(tag_dir) if tag_dir.is_dir() else [f"{tag_dir} is missing"]
        if not problems:
            return tag
        rest = candidates[i + 1:]
        _warn(f"checkpoint {tag_dir} cannot be used: {problems[0]}"
              + (f"; falling back to {ckpt_root / rest[0]}" if rest else ""))
    return None


def load(engine, ckpt_root: Path, tag: str) -> dict:
    tag_dir = ckpt_root / tag
    state_file = tag_dir / "loop_state.json"
    try:
        loop_state = json.loads(state_file.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{state_file}: unreadable loop state ({exc})") from None
    loop_state.pop("world_size", None)
    try:
        path, _ = engine.load_checkpoint(str(ckpt_root), tag=tag, load_optimizer_states=True,
                                         load_lr_scheduler_states=True)
    except Exception as exc:  # a checkpoint of another model, ZeRO stage or DeepSpeed version
        first = (str(exc).strip().splitlines() or [""])[0]
        raise CheckpointError(f"{tag_dir}: DeepSpeed could not load this checkpoint ({type(exc).__name__}: "
                              f"{first})") from exc
    if path is None:
        raise CheckpointError(f"{tag_dir}: DeepSpeed could not load this checkpoint")
    rng_file = tag_dir / f"rng_rank{dist.rank()}.pt"
    if rng_file.is_file():  # absent when resuming at another world size: the data order still matches
        _set_rng_state(torch.load(rng_file, weights_only=False))
    return loop_state
