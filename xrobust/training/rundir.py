"""Self-describing run directories: resolved config, environment, metrics.jsonl, checkpoints, model.

A run directory is self-contained: `models.json` names its models relative to the directory, so
a run can be copied or moved and evaluated from any working directory. One writer at a time holds
its lock (training.lock). A resumed run keeps the config it was trained with unless a change is
accepted explicitly, and then the change is recorded.
"""

from __future__ import annotations

import fnmatch
import json
from contextlib import contextmanager
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .. import errors
from ..errors import ConfigError, RunInUseError, XRobustError
from ..io import append_jsonl, atomic_write_json, atomic_write_text
from .lock import LOCK_FILE, RunLock

CONFIG_FILE = "config.yaml"
MARKER = "config.yaml"
MODELS_FILE = "models.json"  # RunModels: {"tasks": {task: model dir}, "phases": {phase: model dir}}
CONFIG_CHANGES = "config_changes.jsonl"
MODEL_DIR = "model"  # a phase run's selected (best on English dev, else last) encoder + heads, HF format
COMPLETE = "phase_complete.json"  # a phase run's completion record, written last: a resume skips that phase

# Keys whose change on --resume does not change what is trained (where things go, what is logged,
# how often checkpoints are kept, which kernel computes the same numbers, the evaluation after it).
TRAINING_NEUTRAL = ("name", "output_dir", "tracking.*", "evaluation.*", "data.cache_dir", "phases.*.save_every",
                    "phases.*.keep_checkpoints", "phases.*.adversarial.backend", "phases.*.nonfinite.*")


def finished(run_dir: Path) -> dict | None:
    """The completion record of a finished phase run ({"total_steps", "best"}), else None."""
    path = Path(run_dir) / COMPLETE
    return json.loads(path.read_text()) if path.is_file() else None


def _has_content(path: Path) -> bool:
    return path.is_dir() and any(p.name != LOCK_FILE for p in path.iterdir())


def prepare_run_dir(path: Path, *, resume: bool, overwrite: bool,
                    fresh_if_nothing_to_resume: bool = False) -> tuple[RunLock, bool]:
    """Create or reopen the run dir and take its lock. Returns (lock, resuming an existing run).

    An existing run is never touched unless asked: --resume continues it, --overwrite starts afresh.
    """
    path = Path(path)
    exists = f"{path}: run directory exists; pass --resume to continue it or --overwrite to replace it"
    if _has_content(path) and not (path / MARKER).is_file():  # not ours: never touched, not even locked
        if resume or overwrite:
            raise XRobustError(f"{path}: refusing to {'--resume' if resume else '--overwrite'} a directory that "
                               f"is not an xrobust run (no {MARKER} inside)")
        raise XRobustError(exists)
    if resume and not _has_content(path) and not fresh_if_nothing_to_resume:
        raise XRobustError(f"{path}: nothing to resume (no such run directory); drop --resume to start it, or add "
                           "--fresh-if-nothing-to-resume")
    path.mkdir(parents=True, exist_ok=True)
    lock = RunLock.acquire(path)
    try:
        existing = _has_content(path)
        if existing and not resume:
            if not overwrite:
                raise XRobustError(exists)
            for child in path.iterdir():
                if child.name != LOCK_FILE:
                    shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    except BaseException:
        lock.release()
        raise
    return lock, existing and resume


@contextmanager
def locked_run(root: Path):
    """Rank 0 holds an existing run's lock while a command writes into it (eval, robustness)."""
    from .. import distributed as dist

    root = Path(root)
    lock, error = None, None
    if dist.is_main():
        try:
            if not root.is_dir():
                raise XRobustError(f"{root}: no such run directory")
            lock = RunLock.acquire(root)
        except XRobustError as exc:
            error = str(exc)
    error = dist.broadcast_object(error)
    if error:
        raise RunInUseError(error)
    errors.set_log_dir(root)
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


# -- the recorded config -----------------------------------------------------------------------------

def _diff(old, new, prefix: str, out: dict) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            where = f"{prefix}.{key}" if prefix else str(key)
            if key not in old or key not in new:
                out[where] = (old.get(key, "<absent>"), new.get(key, "<absent>"))
            else:
                _diff(old[key], new[key], where, out)
    elif old != new:
        out[prefix] = (old, new)


def training_changes(recorded: dict, now: dict) -> dict[str, tuple]:
    """Dotted keys whose values differ and change training: key -> (recorded, now)."""
    out: dict = {}
    _diff(recorded, now, "", out)
    return {k: v for k, v in out.items() if not any(fnmatch.fnmatchcase(k, pat) for pat in TRAINING_NEUTRAL)}


def _short(value) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def check_resumed_config(root: Path, cfg, *, accept: bool) -> None:
    """--resume: refuse a config that trains differently from the recorded one, naming the keys;
    with accept, record the change (config_changes.jsonl) and the new config."""
    from ..config import dump_yaml, to_dict
    from ..config.loader import normalize_config

    path = Path(root) / CONFIG_FILE
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        recorded = normalize_config(raw, str(path))
    except (OSError, yaml.YAMLError, ConfigError) as exc:
        raise ConfigError(f"{path}: cannot read the run's recorded config ({exc}); --resume needs it") from None
    changes = training_changes(recorded, to_dict(cfg))
    if not changes:
        return
    listed = "; ".join(f"{k}: {_short(a)} -> {_short(b)}" for k, (a, b) in changes.items())
    if not accept:
        raise ConfigError(f"{path}: --resume with a config that trains differently from the recorded one ({listed}); "
                          "resume with the same config, or pass --accept-config-change to continue with the new "
                          "values (the change is recorded in the run)")
    print(f"warning: {path}: continuing with a changed config ({listed}); recorded in {CONFIG_CHANGES}",
          file=sys.stderr, flush=True)
    append_jsonl(Path(root) / CONFIG_CHANGES, {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv),
        "changes": {k: {"recorded": a, "now": b} for k, (a, b) in changes.items()}})
    atomic_write_text(path, dump_yaml(cfg))


# -- models.json ---------------------------------------------------------------------------------------

def _recorded_root(root: Path) -> Path | None:
    """output_dir/name as the run's config.yaml records them: older runs wrote model paths under it."""
    try:
        raw = yaml.safe_load((root / CONFIG_FILE).read_text(encoding="utf-8")) or {}
        return Path(raw.get("output_dir") or "runs") / str(raw["name"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return None


def _resolve_model(root: Path, value: str, legacy_root: Path | None) -> Path:
    path = Path(value)
    if legacy_root is not None and path.parts[:len(legacy_root.parts)] == legacy_root.parts \
            and not (root / path).exists():
        return root / Path(*path.parts[len(legacy_root.parts):])  # an older run: path under output_dir/name
    return path if path.is_absolute() else root / path


@dataclass
class RunModels:
    """models.json: the model directory that carries each task's head (`tasks`) and each phase's final
    model (`phases`: the next phase's encoder, and retrieval's model)."""

    tasks: dict[str, Path] = field(default_factory=dict)
    phases: dict[str, Path] = field(default_factory=dict)

    def to_json(self, root: Path) -> dict:
        """Paths inside the run directory relative to it (portable); others absolute."""
        return {"tasks": _relative(root, self.tasks), "phases": _relative(root, self.phases)}


def _relative(root: Path, models: dict) -> dict[str, str]:
    root = Path(root).resolve()
    out = {}
    for key, value in models.items():
        path = Path(value).resolve()
        out[key] = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
    return out


LEGACY_PHASE_KEY = "phase:"  # models.json before {"tasks", "phases"}: one mapping, "phase:<name>" keys


def _sections(data) -> tuple[dict, dict] | None:
    """(tasks, phases) of either form of models.json; None if it is neither."""
    if isinstance(data, dict) and set(data) == {"tasks", "phases"}:
        tasks, phases = data["tasks"], data["phases"]
    elif isinstance(data, dict):  # the older form
        tasks = {k: v for k, v in data.items() if not k.startswith(LEGACY_PHASE_KEY)}
        phases = {k[len(LEGACY_PHASE_KEY):]: v for k, v in data.items() if k.startswith(LEGACY_PHASE_KEY)}
    else:
        return None
    if not all(isinstance(part, dict) and all(isinstance(v, str) for v in part.values()) for part in (tasks, phases)):
        return None
    return tasks, phases


def read_models(root: Path) -> RunModels:
    """models.json with every path resolved against the run directory; older runs too (their one
    mapping with "phase:<name>" keys, paths under output_dir/name)."""
    root = Path(root)
    path = root / MODELS_FILE
    if not path.is_file():
        return RunModels()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise XRobustError(f"{path}: unreadable ({exc})") from None
    sections = _sections(data)
    if sections is None:
        raise XRobustError(f'{path}: expected {{"tasks": {{task: model directory}}, "phases": {{phase: model '
                           'directory}} (or, as older runs wrote it, a mapping of task -> model directory)')
    legacy = _recorded_root(root)
    tasks, phases = ({key: _resolve_model(root, value, legacy) for key, value in part.items()} for part in sections)
    return RunModels(tasks, phases)


def write_models(root: Path, models: RunModels) -> None:
    atomic_write_json(Path(root) / MODELS_FILE, models.to_json(root))


# -- description -------------------------------------------------------------------------------------

def _git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(world_size: int) -> dict:
    import deepspeed
    import torch
    import transformers

    import xrobust

    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "xrobust": xrobust.__version__,
        "git_sha": _git_sha(),
        "torch": torch.__version__,
        "deepspeed": deepspeed.__version__,
        "transformers": transformers.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu",
        "world_size": world_size,
    }


def write_description(path: Path, config_yaml: str, world_size: int) -> None:
    atomic_write_text(Path(path) / CONFIG_FILE, config_yaml)
    atomic_write_json(Path(path) / "environment.json", environment(world_size))
