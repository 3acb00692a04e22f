"""Whether Triton runs in its interpreter (TRITON_INTERPRET set): how tests run the Triton kernels
on CPU. Read by the dispatcher without importing triton, and by the Triton backend."""

from __future__ import annotations

import os


def triton_interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "") not in ("", "0")
