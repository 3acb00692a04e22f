"""Self-describing run directories: resolved config, environment, metrics.jsonl, checkpoints, model."""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..errors import XRobustError
from ..io import atomic_write_json, atomic_write_text

CONFIG_FILE = "config.yaml"
MARKER = "config.yaml"


def prepare_run_dir(path: Path, *, resume: bool, overwrite: bool) -> bool:
    """Create the run dir. Returns True when an existing run is being resumed.

    An existing run is never touched unless asked: --resume continues it, --overwrite starts afresh.
    """
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        if resume:
            return True
        if overwrite:
            if not (path / MARKER).is_file():
                raise XRobustError(f"{path}: refusing to --overwrite a directory that is not an xrobust run "
                                   f"(no {MARKER} inside)")
            shutil.rmtree(path)
        else:
            raise XRobustError(f"{path}: run directory exists; pass --resume to continue it or --overwrite to "
                               "replace it")
    path.mkdir(parents=True, exist_ok=True)
    return False


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
