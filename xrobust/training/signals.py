"""Preemption and Ctrl-C: a signal sets a flag; training checks it at step boundaries (every rank
agreeing) and evaluation before every batch, then stops cleanly with xrobust.launch.env.PREEMPTED_EXIT_CODE.

SIGUSR1 (Slurm's warning before the time limit), SIGTERM (scancel, launchers) and SIGINT (Ctrl-C)
behave the same: no KeyboardInterrupt on any rank. A second Ctrl-C stops at once.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path


class PreemptionFlag:
    SIGNALS = (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received: int | None = None
        self._previous = {}

    def _handler(self, signum, frame):
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            raise KeyboardInterrupt  # Ctrl-C twice: the user does not want to wait for the checkpoint
        self.received = signum

    def install(self) -> "PreemptionFlag":
        """Idempotent. Installed by the CLI before the slow imports: a signal that arrives while
        deepspeed loads must not kill the rank."""
        if not self._previous:
            self.received = None  # nothing was caught while no handler was installed
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

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received is not None else "no signal"


FLAG = PreemptionFlag()


def mark_preempted() -> None:
    """Tell the job script this exit is a preemption checkpoint (launchers may rewrite exit codes)."""
    marker = os.environ.get("XROBUST_PREEMPT_MARKER")
    if marker:
        Path(marker).parent.mkdir(parents=True, exist_ok=True)
        Path(marker).touch()


class Preempted(Exception):
    """Raised after the checkpoint is written (or, in evaluation, before the next batch); the CLI
    prints the message and exits with launch.env.PREEMPTED_EXIT_CODE."""

    def __init__(self, step: int | None, checkpoint: str | None, signame: str = "a signal", what: str = ""):
        kind = "interrupted" if signame == "SIGINT" else "preempted"
        if checkpoint is not None:
            text = f"{kind}: checkpoint at step {step} written to {checkpoint} (on {signame}); continue with --resume"
        else:
            text = f"{kind}: stopped {what} on {signame}; run it again to finish"
        super().__init__(text)
        self.step = step
        self.checkpoint = checkpoint
