"""Compiled CPU backend: a small C++/OpenMP extension built once with torch.utils.cpp_extension.load_inline.

The build is cached by PyTorch under $TORCH_EXTENSIONS_DIR (default ~/.cache/torch_extensions), keyed
by the source hash, so only the first use on a machine pays the compile (see docs/KERNELS.md).
"""

from __future__ import annotations

import functools
import threading

import torch

from xrobust.errors import KernelError

_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def _build():
    from torch.utils.cpp_extension import load_inline

    from xrobust.kernels._cpu_source import SOURCE
    from xrobust.kernels.builds import exclusive_build
    flags = ["-O3", "-fopenmp", "-march=native"]
    try:
        with exclusive_build("xrobust_kernels_cpu"):
            return load_inline(name="xrobust_kernels_cpu", cpp_sources=[SOURCE], functions=["step", "init_scale"],
                               extra_cflags=flags, extra_ldflags=["-fopenmp"], verbose=False)
    except Exception as exc:  # compiler missing or broken: say which backend to use instead
        raise KernelError(f"backend='compiled': building the CPU extension failed ({exc}); use backend='eager'") from exc


def extension():
    with _lock:
        return _build()


def _bool_mask(mask):
    return (mask != 0).contiguous()


def step_with_status(delta, grad, mask, step_size, max_norm, norm, granularity):
    ext = extension()
    out, finite = ext.step(
        delta.contiguous(), grad.contiguous(), _bool_mask(mask), step_size, max_norm, norm == "linf",
        granularity == "token",
    )
    return out, finite


def init(shape_like, mask, init_mag, norm, generator):
    ext = extension()
    B, L, d = shape_like.shape
    real = _bool_mask(mask)
    # Same random stream and the same fp32 scale arithmetic as the eager reference.
    u = torch.rand((B, L, d), generator=generator, dtype=torch.float32)
    if norm == "l2":
        tokens = real.sum(dim=1).clamp(min=1).float()
        scale = init_mag / torch.sqrt(tokens * d)
    else:
        scale = torch.full((B,), init_mag, dtype=torch.float32)
    ext.init_scale(u, real, scale.contiguous())
    return u
