"""Host (CPU) memory allocator settings for runs whose tensors live in host memory.

glibc serves an allocation below its mmap threshold from a heap and keeps freed blocks there for
reuse; after a large block is freed it also raises that threshold (up to 32 MiB). ZeRO-3 gathers
and releases every layer's parameters several times per step (4 MiB per attention matrix at
XLM-R Large's size), interleaved with small allocations that live on, so freed layers stay
resident: 1.3 GiB per rank of XLM-R Large FreeLB training on 2 CPU ranks (docs/BENCHMARKS.md,
"Where the peak goes"). With a fixed 1 MiB threshold each such buffer is its own mapping and goes
back to the system when freed.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
MMAP_THRESHOLD_BYTES = 1 << 20


def fix_mmap_threshold() -> bool:
    """Set glibc's mmap threshold to 1 MiB (fixed) unless the user set MALLOC_MMAP_THRESHOLD_;
    true when it was set. Not glibc (macOS, musl): nothing to do."""
    if sys.platform != "linux" or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))


def configure_for(device_type: str) -> bool:
    """Tune the host allocator when model tensors live in host memory (a CPU run)."""
    return fix_mmap_threshold() if device_type == "cpu" else False
