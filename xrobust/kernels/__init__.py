"""Fused adversarial-step kernels: the normalized ascent step on the embedding perturbation delta
and its FreeLB initialisation, with eager (reference), compiled CPU and Triton backends.

See docs/KERNELS.md.
"""

from xrobust.errors import KernelError
from xrobust.kernels.api import (
    perturbation_init,
    perturbation_step,
    perturbation_step_with_status,
    resolve_backend,
)

__all__ = [
    "KernelError",
    "perturbation_init",
    "perturbation_step",
    "perturbation_step_with_status",
    "resolve_backend",
]
