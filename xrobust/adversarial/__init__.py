"""Adversarial and noise-robust training strategies (FGM, PGD, FreeLB, SMART, R3F, RS-RP, RS-DA).

See docs/ADVERSARIAL.md.
"""

from .divergence import divergence, symmetric_kl
from .strategies import METHODS, Strategy, build_strategy, validate_adversarial

__all__ = ["METHODS", "Strategy", "build_strategy", "validate_adversarial", "symmetric_kl", "divergence",
           "augment_examples", "read_neighbours"]


def __getattr__(name):  # the data-level method imports `datasets` only when used
    if name in ("augment_examples", "read_neighbours"):
        from . import augment

        return getattr(augment, name)
    raise AttributeError(name)
