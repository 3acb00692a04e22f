"""The host allocator setting for CPU runs (xrobust/host_memory.py): glibc's adaptive mmap threshold
keeps freed ZeRO-3 gathers resident; a fixed 1 MiB threshold maps each such buffer on its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

def _has_mallinfo2() -> bool:
    import ctypes

    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _has_mallinfo2(), reason="needs glibc 2.33 or later (mallinfo2)")

# After an 8 MiB block is freed, glibc's adaptive threshold rises above 2 MiB, so a 2 MiB block
# comes from the heap; with the fixed 1 MiB threshold it is a mapping of its own (hblks counts them).
PROBE = r"""
import ctypes, json, sys
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
from xrobust.host_memory import configure_for
changed = configure_for(sys.argv[1])
libc.free(libc.malloc(8 << 20))
before = libc.mallinfo2().hblks
block = libc.malloc(2 << 20)
mapped = libc.mallinfo2().hblks - before
libc.free(block)
print(json.dumps({"changed": changed, "mapped": mapped}))
"""


def _probe(device_type: str, **env_extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", PROBE, device_type], env=env, capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out)


def test_cpu_run_maps_mid_sized_blocks_after_large_frees():
    assert _probe("cpu") == {"changed": True, "mapped": 1}


def test_gpu_run_and_glibc_default_keep_them_in_the_heap():
    assert _probe("cuda") == {"changed": False, "mapped": 0}


def test_users_own_threshold_wins():
    assert _probe("cpu", MALLOC_MMAP_THRESHOLD_=str(64 << 20)) == {"changed": False, "mapped": 0}
