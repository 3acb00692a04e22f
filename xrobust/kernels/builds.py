"""Torch C++ extension builds (DeepSpeed's CPU shm op, the compiled kernels) that a killed builder cannot hang.

PyTorch serialises a build with a `lock` file in the build folder, created with O_EXCL and removed
when the build ends. A builder killed mid-build (preemption, Ctrl-C, a time limit) leaves the file
behind, and every later build of that extension on the machine, or on every node sharing the home
folder, waits on it forever. xrobust builds under an flock next to the build folder, which the kernel
drops however its holder exits; a `lock` file found while holding it belongs either to a program that
does not take the flock (given STALE_AFTER_S from the file's creation to finish) or to a dead builder,
and is then removed with a warning that names it.
"""

from __future__ import annotations

import contextlib
import fcntl
import time
import warnings
from pathlib import Path

STALE_AFTER_S = 600.0  # a build takes a few minutes on a loaded node; a baton older than this is dead


def build_directory(name: str) -> Path:
    from torch.utils.cpp_extension import _get_build_directory  # honours TORCH_EXTENSIONS_DIR like load()

    return Path(_get_build_directory(name, verbose=False))


def _clear_stale_baton(baton: Path, stale_after_s: float) -> None:
    while True:
        try:
            age = time.time() - baton.stat().st_mtime
        except FileNotFoundError:
            return
        if age >= stale_after_s:
            with contextlib.suppress(FileNotFoundError):
                baton.unlink()
            warnings.warn(f"removed the stale build lock {baton} (created {age:.0f} s ago by a builder "
                          f"that no longer holds it); rebuilding", RuntimeWarning, stacklevel=3)
            return
        time.sleep(min(1.0, stale_after_s - age))


@contextlib.contextmanager
def exclusive_build(name: str, stale_after_s: float | None = None):
    """Hold the build of extension `name`: no other xrobust process builds it meanwhile, no dead baton blocks it."""
    folder = build_directory(name)
    with open(folder.parent / f".{name}.xrobust-build", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            _clear_stale_baton(folder / "lock", STALE_AFTER_S if stale_after_s is None else stale_after_s)
            yield folder
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_deepspeed_comm_ops() -> None:
    """Build (or load from the cache) DeepSpeed's CPU shared-memory collectives before its init does.

    `deepspeed.init_distributed` builds this op unguarded; once it is loaded here, that call takes
    the loaded module. Accelerators without the op (CUDA) skip it.
    """
    import deepspeed
    from deepspeed.accelerator import get_accelerator

    builder = get_accelerator().create_op_builder("ShareMemCommBuilder")
    if builder is None or not deepspeed.ops.__compatible_ops__.get(builder.NAME, False):
        return
    with exclusive_build(builder.name):
        builder.load()
