"""W&B on rank 0 only: offline-safe, never blocks past init_timeout, resumable under requeue.

Settings come from the config's `tracking` section (mode, project, entity, group, tags, run_id,
log_artifact, init_timeout). The run id is, in order: tracking.run_id, XROBUST_RUN_ID, the id saved
in RUN_DIR/wandb_run_id.txt by an earlier session (when resuming), the Slurm-derived id
(xrobust.launch.env.stable_run_id), else a new one. It is saved to RUN_DIR/wandb_run_id.txt.
If W&B cannot start, a warning is printed and training goes on with its local logs only.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any

from ..io import atomic_write_text

RUN_ID_FILE = "wandb_run_id.txt"


def _tracking_section(cfg: dict) -> dict:
    section = cfg.get("tracking") if isinstance(cfg, dict) else None
    return dict(section or {})


def _study_axes() -> dict | None:
    """A study cell's axes (`xrobust study` sets XROBUST_STUDY_AXES for its runs): W&B config fields."""
    import json

    text = os.environ.get("XROBUST_STUDY_AXES")
    return json.loads(text) if text else None


class Tracker:
    def __init__(self, cfg_dict: dict, run_dir: str | os.PathLike, rank: int = 0, resume_step: int | None = None):
        axes = _study_axes()
        self.cfg = {**cfg_dict, "study": axes} if axes else cfg_dict
        self.settings = _tracking_section(cfg_dict)
        if axes and not self.settings.get("group"):
            self.settings["group"] = axes.get("study")  # the study name groups its runs in the W&B UI
        self.run_dir = Path(run_dir)
        self.rank = int(rank)
        self.resume_step = resume_step
        self.run = None
        self.run_id: str | None = None
        self.error: str | None = None
        mode = self.settings.get("mode", "disabled")
        if self.rank != 0 or mode == "disabled":
            return
        if mode not in ("online", "offline"):
            raise ValueError(f"tracking.mode must be online, offline or disabled, got {mode!r}")
        self._init(mode)

    @property
    def active(self) -> bool:
        return self.run is not None

    def _pick_run_id(self) -> str:
        from ..launch.env import stable_run_id

        saved = self.run_dir / RUN_ID_FILE
        if self.settings.get("run_id"):
            return str(self.settings["run_id"])
        if os.environ.get("XROBUST_RUN_ID"):
            return os.environ["XROBUST_RUN_ID"]
        if self.resume_step is not None and saved.is_file() and saved.read_text().strip():
            return saved.read_text().strip()
        derived = stable_run_id()
        if derived:
            return derived
        import secrets
        import string

        alphabet = string.ascii_lowercase + string.digits
        return "".join(secrets.choice(alphabet) for _ in range(8))

    def _init(self, mode: str) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run_id = re.sub(r"[^A-Za-z0-9_-]", "-", self._pick_run_id())
        atomic_write_text(self.run_dir / RUN_ID_FILE, self.run_id + "\n")
        # keep W&B's files in the run dir unless the user pointed them elsewhere
        for var, sub in (("WANDB_DIR", ""), ("WANDB_CACHE_DIR", "wandb_cache"), ("WANDB_DATA_DIR", "wandb_data")):
            if not os.environ.get(var):
                path = self.run_dir / sub if sub else self.run_dir
                path.mkdir(parents=True, exist_ok=True)
                os.environ[var] = str(path)
        try:
            import wandb

            timeout = float(self.settings.get("init_timeout", 30.0))
            self.run = wandb.init(
                project=self.settings.get("project") or "xrobust",
                entity=self.settings.get("entity"),
                group=self.settings.get("group"),
                tags=list(self.settings.get("tags") or []) or None,
                name=self.cfg.get("name") or None,
                id=self.run_id,
                resume="allow",
                mode=mode,
                config=self.cfg,
                dir=os.environ["WANDB_DIR"],
                settings=wandb.Settings(init_timeout=timeout, console="off", silent=True),
            )
        except Exception as exc:  # wandb raises many kinds (UsageError, CommError, timeouts)
            self.run = None
            self.error = f"{type(exc).__name__}: {exc}".strip()
            msg = (f"W&B could not start (mode={mode}, run id {self.run_id}): {self.error}. "
                   f"Training continues with local logs only; set tracking.mode=offline to log offline.")
            warnings.warn(msg, RuntimeWarning, stacklevel=3)
            print(f"warning: {msg}", file=sys.stderr)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        if self.run is not None:
            self.run.log(dict(metrics), step=int(step))

    def summary(self, values: dict[str, Any]) -> None:
        if self.run is not None:
            for key, value in values.items():
                self.run.summary[key] = value

    def table(self, name: str, columns: list[str], rows: list[list[Any]], step: int | None = None) -> None:
        if self.run is not None:
            import wandb

            data = {name: wandb.Table(columns=list(columns), data=[list(r) for r in rows])}
            if step is None:
                self.run.log(data)
            else:
                self.run.log(data, step=int(step))

    def artifact(self, path: str | os.PathLike, name: str, type: str = "model") -> None:
        """Upload a file or folder as an artifact, only when tracking.log_artifact is true."""
        if self.run is None or not self.settings.get("log_artifact", False):
            return
        import wandb

        art = wandb.Artifact(re.sub(r"[^A-Za-z0-9_.-]", "-", name), type=type)
        p = Path(path)
        if p.is_dir():
            art.add_dir(str(p))
        else:
            art.add_file(str(p))
        self.run.log_artifact(art)

    def finish(self, exit_code: int | None = None) -> None:
        if self.run is not None:
            run, self.run = self.run, None
            run.finish(exit_code=exit_code)
