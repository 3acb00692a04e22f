"""Preemption: a signal sets a flag; the loop checks it at step boundaries with every rank agreeing."""

from __future__ import annotations

import signal

PREEMPTED_EXIT_CODE = 3  # checkpointed on a signal: the job script requeues


class PreemptionFlag:
    SIGNALS = (signal.SIGUSR1, signal.SIGTERM)

    def __init__(self):
        self.received: int | None = None
        self._previous = {}

    def _handler(self, signum, frame):
        self.received = signum

    def install(self) -> "PreemptionFlag":
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    @property
    def set(self) -> bool:
        return self.received is not None


class Preempted(Exception):
    """Raised after the checkpoint is written; the CLI exits with PREEMPTED_EXIT_CODE."""

    def __init__(self, step: int, checkpoint: str):
        super().__init__(f"preempted: checkpoint at step {step} written to {checkpoint}")
        self.step = step
        self.checkpoint = checkpoint
