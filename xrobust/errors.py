"""One exception family, and the boundary that turns any other exception into one line.

The CLI prints an XRobustError as `error: ...` and exits 2, with no traceback. Any other exception
(torch, transformers, tokenizers, pyarrow, a bug) is printed the same way, prefixed with what was
being done when it happened (`context`), and its traceback goes to the run's log file.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from pathlib import Path


class XRobustError(Exception):
    """A user-facing error: the message names the file, key or line and what was expected."""


class ConfigError(XRobustError):
    pass


class DataError(XRobustError):
    pass


class CheckpointError(XRobustError):
    pass


class LaunchError(XRobustError):
    pass


class TrainingError(XRobustError):
    """Training produced no usable model: non-finite losses or gradients, nothing learned."""


class RunInUseError(XRobustError):
    """Another process holds the run directory's lock."""


class KernelError(XRobustError, ValueError):
    """Bad arguments to a perturbation kernel, or a backend that cannot run here."""


# -- context for exceptions that are not ours ------------------------------------------------------

@contextmanager
def context(what: str):
    """Name what is being done (the file, key, row or checkpoint) for any foreign exception raised
    inside; the innermost context comes first in the message."""
    try:
        yield
    except XRobustError:
        raise
    except Exception as exc:
        if not hasattr(exc, "xrobust_context"):
            exc.xrobust_context = []
        exc.xrobust_context.append(what)
        raise


def describe(exc: BaseException) -> str:
    """`<what was being done> (<outer contexts>): <ExceptionType>: <its message, first lines>`."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    first = "; ".join(lines[:3])
    first = first if len(first) <= 400 else first[:397] + "..."
    kind = type(exc).__name__
    where = list(getattr(exc, "xrobust_context", []))
    head = where[0] if where else "unexpected failure"
    if where[1:]:
        head += f" ({'; '.join(where[1:])})"
    return f"{head}: {kind}: {first}" if first else f"{head}: {kind}"


_log_dir: Path | None = None


def set_log_dir(path: str | os.PathLike | None) -> None:
    """Where tracebacks go: the run directory while one is open, else the temp folder."""
    global _log_dir
    _log_dir = Path(path) if path is not None else None


def write_traceback(exc: BaseException) -> Path | None:
    """Append the full traceback to <run>/logs/error-rank<r>.log (or a temp file); its path."""
    rank = os.environ.get("RANK", "0")
    if _log_dir is not None and _log_dir.is_dir():
        path = _log_dir / "logs" / f"error-rank{rank}.log"
    else:
        path = Path(tempfile.gettempdir()) / f"xrobust-error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    header = (f"=== {time.strftime('%Y-%m-%dT%H:%M:%S%z')} host {socket.gethostname()} pid {os.getpid()} "
              f"rank {rank}\n$ {' '.join(sys.argv)}\n{describe(exc)}\n")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(header + "".join(traceback.format_exception(exc)) + "\n")
    except OSError:
        return None
    return path
