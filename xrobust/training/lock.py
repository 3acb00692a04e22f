"""An exclusive advisory lock on a run directory, held by rank 0 while a command writes there.

`flock` on RUN/.xrobust.lock: the kernel drops it when the holder exits, however it exits, so a
crashed or killed run never blocks the next one. The file also records who holds it (host, pid,
process start time, Slurm job, command line): a second writer is told whom it waits for, and on a
file system where flock is not enforced a live holder on this host is still recognised by its pid
and start time (a record whose process is gone is stale and taken over).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from ..errors import RunInUseError

LOCK_FILE = ".xrobust.lock"


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _start_ticks(pid: int) -> int | None:
    """The process start time (clock ticks since boot): a pid reused by another process differs."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2:].split()[19])


def _record(root: Path) -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "boot_id": _boot_id(),
            "start_ticks": _start_ticks(os.getpid()), "path": str(root.resolve()),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "slurm_job": os.environ.get("SLURM_JOB_ID"),
            "command": " ".join(sys.argv)}


def _read(fd: int) -> dict | None:
    os.lseek(fd, 0, os.SEEK_SET)
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    try:
        rec = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def _alive_here(rec: dict) -> bool:
    """The recorded process runs on this host now (same boot, same pid, same start time)."""
    if rec.get("host") != socket.gethostname() or rec.get("boot_id") != _boot_id():
        return False
    pid = rec.get("pid")
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    ticks = _start_ticks(pid)
    return ticks is not None and ticks == rec.get("start_ticks")


def holder_text(rec: dict | None) -> str:
    if not rec:
        return "another process (it has not recorded itself yet)"
    job = f", Slurm job {rec['slurm_job']}" if rec.get("slurm_job") else ""
    return (f"pid {rec.get('pid')} on host {rec.get('host')}{job}, since {rec.get('since')} "
            f"(`{rec.get('command', '?')}`)")


class RunLock:
    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, root: Path) -> "RunLock":
        """Take the lock of an existing directory `root` or raise RunInUseError naming the holder."""
        root = Path(root)
        path = root / LOCK_FILE
        for _ in range(5):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(fd)
                os.close(fd)
                raise RunInUseError(f"{root}: the run directory is in use by {holder_text(holder)}; wait for it to "
                                    "finish or stop it first (two writers would corrupt metrics, checkpoints "
                                    "and model/)") from None
            try:  # the holder we waited behind may have removed the directory (a failed fresh run)
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                root.mkdir(parents=True, exist_ok=True)
                continue
            previous = _read(fd)
            if previous and previous.get("path") == str(root.resolve()) and _alive_here(previous):
                os.close(fd)
                raise RunInUseError(f"{root}: the run directory is in use by {holder_text(previous)} (this file "
                                    f"system does not enforce {path.name}'s lock, but that process is alive)")
            if previous and previous.get("path") == str(root.resolve()):
                print(f"warning: {path}: stale lock of {holder_text(previous)}, which is no longer running; "
                      "taking it over", file=sys.stderr, flush=True)
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(_record(root)) + "\n").encode("utf-8"), 0)
            os.fsync(fd)
            return cls(path, fd)
        raise RunInUseError(f"{root}: could not take {path} (the directory keeps being replaced)")

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # a clean exit leaves no holder behind
        except OSError:
            pass
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None
