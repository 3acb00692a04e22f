"""Preemption: a signal sets a flag; the loop checks it at step boundaries with every rank agreeing."""

from __future__ import annotations

import os
import signal
from pathlib import Path

PREEMPTED_EXIT_CODE = 3  # checkpointed on a signal: the job script requeues


class PreemptionFlag:
    SIGNALS = (signal.SIGUSR1, signal.SIGTERM)

    def __init__(self):
        self.received: int | None = None
        self._previous = {}

    def _handler(self, signum, frame):
        self.received = signum

    def install(self) -> "PreemptionFlag":
        """Idempotent. Installed by the CLI before the slow imports: a signal that arrives while
        deepspeed loads must not kill the rank."""
        for sig in self.SIGNALS:
            if sig not in self._previous:
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    @property
    def set(self) -> bool:
        return self.received is not None


FLAG = PreemptionFlag()


def mark_preempted() -> None:
    """Tell the job script this exit is a preemption checkpoint (launchers may rewrite exit codes)."""
    marker = os.environ.get("XROBUST_PREEMPT_MARKER")
    if marker:
        Path(marker).parent.mkdir(parents=True, exist_ok=True)
        Path(marker).touch()


class Preempted(Exception):
    """Raised after the checkpoint is written; the CLI exits with PREEMPTED_EXIT_CODE."""

    def __init__(self, step: int, checkpoint: str):
        super().__init__(f"preempted: checkpoint at step {step} written to {checkpoint}")
        self.step = step
        self.checkpoint = checkpoint
