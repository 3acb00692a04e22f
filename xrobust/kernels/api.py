"""Public entry points: argument checking and backend dispatch."""

from __future__ import annotations

import math
import sys

import torch

from xrobust.errors import KernelError
from xrobust.kernels import eager
from xrobust.kernels.interpreter import triton_interpret

NORMS = ("l2", "linf")
GRANULARITIES = ("example", "token")
BACKENDS = ("auto", "eager", "triton", "compiled")
GRAD_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _check_choice(name, value, choices):
    if value not in choices:
        raise KernelError(f"{name}={value!r}: expected one of {', '.join(map(repr, choices))}")


def _check_scalar(name, value, *, positive=False):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise KernelError(f"{name}={value!r}: expected a real number") from None
    if not math.isfinite(v) or (positive and v < 0):
        raise KernelError(f"{name}={value!r}: expected a finite{' non-negative' if positive else ''} number")
    return v


def _check_mask(mask, B, L, device):
    if not isinstance(mask, torch.Tensor):
        raise KernelError(f"mask: expected a tensor, got {type(mask).__name__}")
    if mask.dim() != 2 or tuple(mask.shape) != (B, L):
        raise KernelError(f"mask: expected shape ({B}, {L}) matching (B, L), got {tuple(mask.shape)}")
    if mask.device != device:
        raise KernelError(f"mask: on {mask.device}, expected {device}")
    if mask.is_complex():
        raise KernelError(f"mask: complex dtype {mask.dtype} not supported")


def _check_step_args(delta, grad, mask, step_size, max_norm, norm, granularity, backend):
    for name, t in (("delta", delta), ("grad", grad)):
        if not isinstance(t, torch.Tensor):
            raise KernelError(f"{name}: expected a tensor, got {type(t).__name__}")
        if t.dim() != 3:
            raise KernelError(f"{name}: expected shape (B, L, d), got {tuple(t.shape)}")
    if delta.dtype != torch.float32:
        raise KernelError(f"delta: expected dtype torch.float32 (perturbations are kept in fp32), got {delta.dtype}")
    if grad.dtype not in GRAD_DTYPES:
        raise KernelError(f"grad: expected float32, bfloat16 or float16, got {grad.dtype}")
    if grad.shape != delta.shape:
        raise KernelError(f"grad: shape {tuple(grad.shape)} differs from delta {tuple(delta.shape)}")
    if grad.device != delta.device:
        raise KernelError(f"grad: on {grad.device}, delta on {delta.device}")
    B, L, _ = delta.shape
    _check_mask(mask, B, L, delta.device)
    _check_choice("norm", norm, NORMS)
    _check_choice("granularity", granularity, GRANULARITIES)
    _check_choice("backend", backend, BACKENDS)
    return _check_scalar("step_size", step_size), _check_scalar("max_norm", max_norm)


def resolve_backend(backend: str, device: torch.device) -> str:
    """Map "auto" to a concrete backend and refuse forced backends that cannot run on device."""
    if backend == "auto":
        return "triton" if device.type == "cuda" else ("compiled" if device.type == "cpu" else "eager")
    if backend == "triton" and device.type != "cuda" and not triton_interpret():
        raise KernelError(
            f"backend='triton' on a {device.type} tensor needs a CUDA device, or TRITON_INTERPRET=1 set "
            "before triton is first imported (interpreter, for testing only)"
        )
    if backend == "triton" and device.type != "cuda":
        loaded = sys.modules.get("xrobust.kernels.triton_kernels")
        if loaded is not None and not loaded.INTERPRETED:
            raise KernelError(
                "backend='triton' on CPU: TRITON_INTERPRET=1 was set after the Triton kernels were first "
                "imported in this process; set it before the first import"
            )
    if backend == "compiled" and device.type != "cpu":
        raise KernelError(f"backend='compiled' is the CPU path; tensors are on {device} (use 'triton' or 'auto')")
    return backend


def perturbation_step_with_status(
    delta, grad, mask, *, step_size, max_norm, norm="l2", granularity="example", backend="auto"
):
    """perturbation_step that also returns `finite`: a (B,) bool tensor, False where the example's grad
    (at real positions) holds a NaN or inf. Result values of such examples are unspecified: reset them."""
    step_size, max_norm = _check_step_args(delta, grad, mask, step_size, max_norm, norm, granularity, backend)
    kind = resolve_backend(backend, delta.device)
    if kind == "eager" or delta.numel() == 0:
        return eager.step_with_status(delta, grad, mask, step_size, max_norm, norm, granularity)
    if kind == "triton":
        from xrobust.kernels import triton_kernels

        return triton_kernels.step_with_status(delta, grad, mask, step_size, max_norm, norm, granularity)
    from xrobust.kernels import cpu

    return cpu.step_with_status(delta, grad, mask, step_size, max_norm, norm, granularity)


def perturbation_step(delta, grad, mask, *, step_size, max_norm, norm="l2", granularity="example", backend="auto"):
    """One normalized ascent step on delta, projected and masked; returns a new fp32 tensor."""
    return perturbation_step_with_status(
        delta, grad, mask, step_size=step_size, max_norm=max_norm, norm=norm, granularity=granularity, backend=backend
    )[0]


def perturbation_init(shape_like, mask, *, init_mag, norm="l2", generator=None, backend="auto"):
    """FreeLB initialisation of delta with the shape/device of shape_like; padding exactly 0."""
    if not isinstance(shape_like, torch.Tensor) or shape_like.dim() != 3:
        shape = tuple(shape_like.shape) if isinstance(shape_like, torch.Tensor) else type(shape_like).__name__
        raise KernelError(f"shape_like: expected a (B, L, d) tensor, got {shape}")
    B, L, _ = shape_like.shape
    _check_mask(mask, B, L, shape_like.device)
    init_mag = _check_scalar("init_mag", init_mag, positive=True)
    _check_choice("norm", norm, NORMS)
    _check_choice("backend", backend, BACKENDS)
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise KernelError(f"generator: expected a torch.Generator, got {type(generator).__name__}")
        if generator.device.type != shape_like.device.type:
            raise KernelError(f"generator: on {generator.device}, tensors on {shape_like.device}")
    kind = resolve_backend(backend, shape_like.device)
    if kind == "eager" or shape_like.numel() == 0:
        return eager.init(shape_like, mask, init_mag, norm, generator)
    if kind == "triton":
        from xrobust.kernels import triton_kernels

        return triton_kernels.init(shape_like, mask, init_mag, norm, generator)
    from xrobust.kernels import cpu

    return cpu.init(shape_like, mask, init_mag, norm, generator)
