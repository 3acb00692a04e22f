"""Phases in order (intermediate -> target), then zero-shot evaluation: one process group throughout.

Also the two commands that run them (the CLI lists this module with the xrobust.commands ones):
`xrobust train` (one phase) and `xrobust pipeline` (every phase, then zero-shot evaluation).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from pathlib import Path

from . import errors
from .config import add_overrides, dump_yaml, load_config, to_dict
from .errors import ConfigError, XRobustError
from . import distributed as dist
from .training.rundir import RunModels, check_resumed_config, prepare_run_dir, read_models, write_description, \
    write_models


def run_root(cfg) -> Path:
    return Path(cfg.output_dir) / cfg.name


def _prepare(cfg, *, resume: bool, overwrite: bool, accept_config_change: bool, fresh_if_nothing_to_resume: bool):
    """Rank 0 opens and locks the run directory; every rank learns the outcome.
    Returns (lock or None, resuming, created: the directory did not exist before)."""
    root = run_root(cfg)
    error, lock, resuming, created = None, None, False, False
    if dist.is_main():
        created = not root.exists()
        try:
            lock, resuming = prepare_run_dir(root, resume=resume, overwrite=overwrite,
                                             fresh_if_nothing_to_resume=fresh_if_nothing_to_resume)
            if resuming:
                check_resumed_config(root, cfg, accept=accept_config_change)
            else:
                write_description(root, dump_yaml(cfg), dist.world_size())
        except Exception as exc:  # every rank must hear of it, or the others wait forever
            error = str(exc) if isinstance(exc, XRobustError) else f"{root}: {errors.describe(exc)}"
            if lock is not None:
                lock.release()
                lock = None
    error, resuming, created = dist.broadcast_object((error, resuming, created))
    if error:
        raise XRobustError(error)
    return lock, resuming, created


def _tracker(cfg, root: Path, resume: bool):
    if cfg.tracking.mode == "disabled":
        return None
    from .tracking.wandb_run import Tracker

    return Tracker(to_dict(cfg), root, dist.rank(), resume_step=0 if resume else None)


PHASE_REFERENCE = "phase:"  # init_encoder: phase:<name> is that earlier phase's model


def _init_encoder(value, previous: str, models: RunModels, key: str) -> str:
    """Default: the previous phase's encoder. `phase:<name>` picks an earlier phase's explicitly."""
    if value is None:
        return previous
    if value.startswith(PHASE_REFERENCE):
        name = value[len(PHASE_REFERENCE):]
        if name not in models.phases:
            raise XRobustError(f"key 'phases.{key}.init_encoder': phase '{name}' has not been trained in this run")
        return str(models.phases[name])
    return value


def run_groups(phase) -> list[list[str]]:
    """One run for a multi-task phase; otherwise one run per head (XQuAD and MLQA share SQuAD's)."""
    if phase.multitask:
        return [list(phase.tasks)]
    from .tasks import get_task

    groups: dict[str, list[str]] = {}
    for task in phase.tasks:
        spec = get_task(task)
        groups.setdefault(spec.head_name, []).append(task)
    return list(groups.values())


def phase_runs(cfg, root: Path) -> list[tuple[str, list[str], Path]]:
    """(phase key, tasks, run folder) of every training run of a pipeline, in order: RUN/<phase>, or
    RUN/<phase>/<head> when the phase trains one run per head."""
    from .tasks import get_task

    out = []
    for key, phase in cfg.phases.items():
        groups = run_groups(phase)
        out += [(key, tasks, root / key if len(groups) == 1 else root / key / get_task(tasks[0]).head_name)
                for tasks in groups]
    return out


def _tokenizer(cfg):
    from transformers import AutoTokenizer

    name = cfg.model.tokenizer or cfg.model.name_or_path
    key = "model.tokenizer" if cfg.model.tokenizer else "model.name_or_path"
    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"key '{key}': cannot load a tokenizer from '{name}' "
                          f"({(str(exc).strip().splitlines() or [''])[0]}); give a local HF directory or a cached "
                          "hub id") from None


def _eval_tasks(cfg) -> list[str]:
    return list(cfg.evaluation.tasks or cfg.phases[list(cfg.phases)[-1]].tasks)


def check_before_training(cfg, selected: list[str], models: RunModels, evaluate: bool) -> None:
    """Everything that would otherwise fail after hours of training."""
    from .evaluation.retrieval import check_retrieval_layer
    from .tasks import get_task

    for key in selected:
        if key not in cfg.phases:
            raise ConfigError(f"phase '{key}' is not in the config; phases: {', '.join(cfg.phases)}")
    order = list(cfg.phases)
    for key in selected:
        init = cfg.phases[key].init_encoder or ""
        if init.startswith(PHASE_REFERENCE):
            name = init[len(PHASE_REFERENCE):]
            earlier = name in order and order.index(name) < order.index(key)
            if not (earlier or name in models.phases):
                raise ConfigError(f"key 'phases.{key}.init_encoder': phase '{name}' is not an earlier phase of this "
                                  f"config nor trained in this run (phases: {', '.join(order)})")
    if not evaluate:
        return
    trained = set(models.tasks) | {t for phase in cfg.phases.values() for t in phase.tasks}
    tasks = _eval_tasks(cfg)
    for i, task in enumerate(tasks):
        if get_task(task).task_format.has_head and task not in trained:
            where = f"evaluation.tasks[{i}]" if cfg.evaluation.tasks else f"phases.{order[-1]}.tasks"
            raise ConfigError(f"key '{where}': '{task}' is evaluated but no phase trains it (trained: "
                              f"{', '.join(sorted(trained))})")
    if any(not get_task(t).task_format.has_head for t in tasks):
        encoder = cfg.model.name_or_path
        for phase in cfg.phases.values():
            if phase.init_encoder and not phase.init_encoder.startswith(PHASE_REFERENCE):
                encoder = phase.init_encoder
        check_retrieval_layer(cfg, encoder)


def _discard_unstarted(root: Path, models: RunModels, tracker) -> bool:
    """A run that failed before its first checkpoint and finished no phase leaves nothing behind."""
    if any(root.rglob("latest_complete")) or models.tasks or models.phases:
        return False
    if tracker:
        tracker.finish(exit_code=1)
    shutil.rmtree(root, ignore_errors=True)
    errors.set_log_dir(None)
    return True


def run(cfg, *, phases: list[str] | None = None, evaluate: bool = True, resume: bool = False,
        overwrite: bool = False, accept_config_change: bool = False,
        fresh_if_nothing_to_resume: bool = False) -> Path:
    from .evaluation.predict import evaluate_dev
    from .training.signals import Preempted
    from .training.rundir import MODEL_DIR, finished
    from .training.trainer import Trainer

    dist.init_distributed()
    selected = phases or list(cfg.phases)
    check_before_training(cfg, selected, RunModels(), evaluate=False)  # before any directory is made
    root = run_root(cfg)
    lock, resuming, created = _prepare(cfg, resume=resume, overwrite=overwrite,
                                       accept_config_change=accept_config_change,
                                       fresh_if_nothing_to_resume=fresh_if_nothing_to_resume)
    errors.set_log_dir(root)
    tracker = None
    models = RunModels()
    try:
        models = read_models(root) if resuming else RunModels()
        check_before_training(cfg, selected, models, evaluate)
        tracker = _tracker(cfg, root, resume)
        tokenizer = _tokenizer(cfg)
        encoder = cfg.model.name_or_path
        step_offset = 0
        for key, phase in cfg.phases.items():
            if key not in selected:
                if key in models.phases:
                    encoder = str(models.phases[key])
                continue
            init = _init_encoder(phase.init_encoder, encoder, models, key)
            runs = [(tasks, run_dir) for k, tasks, run_dir in phase_runs(cfg, root) if k == key]
            for tasks, run_dir in runs:
                sub = phase if len(runs) == 1 else dataclasses.replace(phase, tasks=tasks)
                run_dir.mkdir(parents=True, exist_ok=True)
                done = finished(run_dir) if resuming else None
                if done:  # a requeued job passes over what it already trained; its record stays as it was
                    model_dir = run_dir / MODEL_DIR
                    step_offset += done["total_steps"]
                else:
                    if dist.is_main():
                        write_description(run_dir, dump_yaml(dataclasses.replace(cfg, phases={key: sub})),
                                          dist.world_size())
                    trainer = Trainer(cfg, phase_key=key, phase=sub, run_dir=run_dir, init_encoder=init,
                                      tokenizer=tokenizer, evaluate_dev=evaluate_dev, tracker=tracker,
                                      step_offset=step_offset)
                    model_dir = trainer.run(resume=resuming, fresh_if_nothing_to_resume=fresh_if_nothing_to_resume)
                    step_offset += trainer.total_steps
                for task in tasks:
                    models.tasks[task] = model_dir
                models.phases[key] = model_dir
                if dist.is_main():
                    write_models(root, models)
            encoder = str(models.phases[key])
        if evaluate:
            from .evaluation.run import evaluate_run

            evaluate_run(cfg, root, tracker=tracker, models=models)
    except BaseException as exc:
        if created and lock is not None and not isinstance(exc, Preempted) and _discard_unstarted(root, models, tracker):
            tracker = None
        raise
    finally:
        if tracker:
            if tracker.active:
                print(f"W&B run {tracker.run_id} ({cfg.tracking.mode}) in {root}", flush=True)
            tracker.finish()
        if lock is not None:
            lock.release()
    return root


# -- the commands: `xrobust train` and `xrobust pipeline` --------------------------------------------
def _run_arguments(p) -> None:
    p.add_argument("--config", required=True, help="a YAML file or the name of a shipped preset")
    add_overrides(p)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue an existing run from its last checkpoint")
    mode.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--accept-config-change", action="store_true",
                   help="with --resume: continue although the config differs from the run's recorded one in keys "
                        "that change training (the change is recorded in config_changes.jsonl)")
    p.add_argument("--fresh-if-nothing-to-resume", action="store_true",
                   help="with --resume: start the run (or a phase that has no checkpoint) from step 0 instead of "
                        "stopping with an error")
    # the deepspeed launcher appends --local_rank; the rank is read from the environment instead
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)


def add_parsers(sub) -> None:
    p = sub.add_parser("train", help="run one training phase of a config")
    p.set_defaults(func=train_command)
    _run_arguments(p)
    p.add_argument("--phase", help="which phase to run (default: the config's only phase)")
    p = sub.add_parser("pipeline", help="run every phase in order, then zero-shot evaluation")
    p.set_defaults(func=pipeline_command)
    _run_arguments(p)
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation at the end")


def _run_command(cfg, args, phases, evaluate: bool) -> int:
    for flag in ("accept_config_change", "fresh_if_nothing_to_resume"):
        if getattr(args, flag) and not args.resume:
            raise ConfigError(f"--{flag.replace('_', '-')} only applies with --resume")
    root = run(cfg, phases=phases, evaluate=evaluate, resume=args.resume, overwrite=args.overwrite,
               accept_config_change=args.accept_config_change,
               fresh_if_nothing_to_resume=args.fresh_if_nothing_to_resume)
    if dist.is_main():
        print(f"run directory: {root}", flush=True)
    return 0


def train_command(args) -> int:
    from .training.signals import FLAG

    FLAG.install()
    cfg = load_config(args.config, args.overrides)
    phase = args.phase
    if phase is None:
        if len(cfg.phases) != 1:
            raise ConfigError(f"{args.config}: has phases {', '.join(cfg.phases)}; choose one with --phase "
                              "(or run them all with `xrobust pipeline`)")
        phase = next(iter(cfg.phases))
    return _run_command(cfg, args, [phase], evaluate=False)


def pipeline_command(args) -> int:
    from .training.signals import FLAG

    FLAG.install()
    return _run_command(load_config(args.config, args.overrides), args, None, evaluate=not args.no_eval)
