"""Plain PyTorch reference for the perturbation step and init: the oracle every backend is tested against.

Written for clarity, not speed (it makes several passes over memory); see docs/KERNELS.md.
"""

from __future__ import annotations

import torch

NORM_EPS = 1e-8


def _unit_dims(granularity: str) -> tuple[int, ...]:
    # "example": a unit is one example (all L*d values); "token": one position (d values).
    return (1, 2) if granularity == "example" else (2,)


def step_with_status(delta, grad, mask, step_size, max_norm, norm, granularity):
    real = (mask != 0).unsqueeze(-1)  # (B, L, 1)
    zero = torch.zeros((), dtype=torch.float32, device=delta.device)
    g = torch.where(real, grad.float(), zero)  # grad at padding is ignored, even if non-finite
    d = torch.where(real, delta.float(), zero)
    dims = _unit_dims(granularity)

    finite = torch.isfinite(g).flatten(1).all(dim=1)

    if norm == "l2":
        gnorm = torch.sqrt((g * g).sum(dim=dims, keepdim=True))
    else:
        gnorm = g.abs().amax(dim=dims, keepdim=True)
    new = d + step_size * g / torch.clamp(gnorm, min=NORM_EPS)

    if max_norm > 0:
        if norm == "l2":
            n = torch.sqrt((new * new).sum(dim=dims, keepdim=True))
            scale = torch.where(n > max_norm, max_norm / n, torch.ones_like(n))
            new = new * scale
        else:
            new = torch.clamp(new, -max_norm, max_norm)
    new = torch.where(real, new, zero)
    return new, finite


def init(shape_like, mask, init_mag, norm, generator):
    B, L, d = shape_like.shape
    real = (mask != 0).unsqueeze(-1)
    u = torch.rand((B, L, d), generator=generator, device=shape_like.device, dtype=torch.float32)
    u = 2.0 * u - 1.0  # U(-1, 1)
    if norm == "l2":
        tokens = real.sum(dim=(1, 2), keepdim=True).clamp(min=1).float()
        u = u * (init_mag / torch.sqrt(tokens * d))
    else:
        u = u * init_mag
    return torch.where(real, u, torch.zeros((), dtype=torch.float32, device=u.device))
