"""Phases in order (intermediate -> target), then zero-shot evaluation: one process group throughout."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from .config import dump_yaml, to_dict
from .errors import XRobustError
from .io import atomic_write_json
from .training import distributed as dist
from .training.rundir import prepare_run_dir, write_description

MODELS_FILE = "models.json"  # task -> directory of the model that carries its head


def run_root(cfg) -> Path:
    return Path(cfg.output_dir) / cfg.name


def _prepare(cfg, *, resume: bool, overwrite: bool) -> Path:
    root = run_root(cfg)
    error = None
    if dist.is_main():
        try:
            prepare_run_dir(root, resume=resume, overwrite=overwrite)
            write_description(root, dump_yaml(cfg), dist.world_size())
        except XRobustError as exc:
            error = str(exc)
    error = dist.broadcast_object(error)
    if error:
        raise XRobustError(error)
    return root


def _tracker(cfg, root: Path, resume: bool):
    if cfg.tracking.mode == "disabled":
        return None
    from .tracking.wandb_run import Tracker

    return Tracker(to_dict(cfg), root, dist.rank(), resume_step=0 if resume else None)


def _init_encoder(value, previous: str, models: dict, key: str) -> str:
    """Default: the previous phase's encoder. `phase:<name>` picks an earlier phase's explicitly."""
    if value is None:
        return previous
    if value.startswith("phase:"):
        name = value[len("phase:"):]
        if f"phase:{name}" not in models:
            raise XRobustError(f"key 'phases.{key}.init_encoder': phase '{name}' has not been trained in this run")
        return models[f"phase:{name}"]
    return value


def _run_groups(phase) -> list[list[str]]:
    """One run for a multi-task phase; otherwise one run per head (XQuAD and MLQA share SQuAD's)."""
    if phase.multitask:
        return [list(phase.tasks)]
    from .tasks import get_task

    groups: dict[str, list[str]] = {}
    for task in phase.tasks:
        spec = get_task(task)
        groups.setdefault(spec.head or spec.name, []).append(task)
    return list(groups.values())


def _head(task: str) -> str:
    from .tasks import get_task

    spec = get_task(task)
    return spec.head or spec.name


def run(cfg, *, phases: list[str] | None = None, evaluate: bool = True, resume: bool = False,
        overwrite: bool = False) -> Path:
    from transformers import AutoTokenizer

    from .training.trainer import MODEL_DIR, Trainer, finished

    dist.init_distributed()
    fresh = not run_root(cfg).exists()
    root = _prepare(cfg, resume=resume, overwrite=overwrite)
    tracker = _tracker(cfg, root, resume)
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.tokenizer or cfg.model.name_or_path)
    models_path = root / MODELS_FILE
    models = json.loads(models_path.read_text()) if models_path.is_file() else {}
    encoder = cfg.model.name_or_path
    step_offset = 0
    selected = phases or list(cfg.phases)
    for key in selected:
        if key not in cfg.phases:
            raise XRobustError(f"phase '{key}' is not in the config; phases: {', '.join(cfg.phases)}")
    try:
        for key, phase in cfg.phases.items():
            if key not in selected:
                if models.get(f"phase:{key}"):
                    encoder = models[f"phase:{key}"]
                continue
            init = _init_encoder(phase.init_encoder, encoder, models, key)
            groups = _run_groups(phase)
            for tasks in groups:
                sub = phase if len(groups) == 1 else dataclasses.replace(phase, tasks=tasks)
                run_dir = root / key if len(groups) == 1 else root / key / _head(tasks[0])
                run_dir.mkdir(parents=True, exist_ok=True)
                if dist.is_main():
                    write_description(run_dir, dump_yaml(dataclasses.replace(cfg, phases={key: sub})),
                                      dist.world_size())
                done = finished(run_dir) if resume else None
                if done:  # a requeued job passes over what it already trained
                    model_dir = run_dir / MODEL_DIR
                    step_offset += done["total_steps"]
                else:
                    trainer = Trainer(cfg, key, sub, run_dir, init, tokenizer, tracker, step_offset)
                    model_dir = trainer.run(resume=resume)
                    step_offset += trainer.total_steps
                for task in tasks:
                    models[task] = str(model_dir)
                models[f"phase:{key}"] = str(model_dir)
                if dist.is_main():
                    atomic_write_json(models_path, models)
            encoder = models[f"phase:{key}"]
        if evaluate:
            from .evaluation.run import evaluate_run

            evaluate_run(cfg, root, tracker=tracker, models=models)
    except XRobustError:
        # bad data or settings found before anything was trained: leave no half-made run behind
        if fresh and dist.is_main() and not any(root.rglob("latest_complete")) and not models:
            if tracker:
                tracker.finish()
                tracker = None
            shutil.rmtree(root, ignore_errors=True)
        raise
    finally:
        if tracker:
            if tracker.active:
                print(f"W&B run {tracker.run_id} ({cfg.tracking.mode}) in {root}", flush=True)
            tracker.finish()
    return root
