"""Triton backend (CUDA; on CPU only under TRITON_INTERPRET=1, for testing).

Per-example units take two launches: phase 1 writes per-(example, chunk) partial sums (gg, dg, dd or
max|g|, plus a non-finite count) to a small buffer; phase 2 reduces the partials of its example,
derives the coefficient and the projection analytically, and streams the update. Per-token units
take one launch: a whole row is loaded once, reduced and updated in registers. See docs/KERNELS.md.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from xrobust.kernels.interpreter import triton_interpret

NORM_EPS: tl.constexpr = tl.constexpr(1e-8)  # constexpr: jit functions may only read constexpr globals
# triton.jit picks the interpreter when this module is imported; the backend check reads this.
INTERPRETED = triton_interpret()
_PROGRAMS_TARGET = 1024  # enough programs per launch to fill a large GPU several times over
_SINGLE_PASS_MAX_D = 8192  # per-token rows up to this width are held in registers (one pass)


def _configs(pairs):
    if triton_interpret():  # the interpreter runs every config: keep one
        pairs = pairs[:1]
    return [triton.Config({"ROWS": r, "BLOCK_D": b}, num_warps=w) for r, b, w in pairs]


_EXAMPLE_CONFIGS = _configs([(4, 256, 4), (2, 512, 4), (8, 256, 8), (4, 1024, 8), (1, 1024, 4), (16, 128, 4)])


@triton.autotune(configs=_EXAMPLE_CONFIGS, key=["D", "RPC", "LINF"])
@triton.jit
def _example_sums(d_ptr, g_ptr, m_ptr, part_ptr, L, D, C, RPC,
                  LINF: tl.constexpr, ROWS: tl.constexpr, BLOCK_D: tl.constexpr):
    b = tl.program_id(0)
    c = tl.program_id(1)
    l_begin = c * RPC
    l_end = tl.minimum(l_begin + RPC, L)
    acc0 = tl.zeros((ROWS, BLOCK_D), tl.float32)  # gg, or max|g| for linf
    acc1 = tl.zeros((ROWS, BLOCK_D), tl.float32)  # dg
    acc2 = tl.zeros((ROWS, BLOCK_D), tl.float32)  # dd
    bad = tl.zeros((ROWS, BLOCK_D), tl.int32)
    for l0 in range(l_begin, l_end, ROWS):
        offs_l = l0 + tl.arange(0, ROWS)
        row_ok = offs_l < l_end
        real = tl.load(m_ptr + b * L + offs_l, mask=row_ok, other=0) != 0
        base = (b * L + offs_l).to(tl.int64) * D
        for d0 in range(0, D, BLOCK_D):
            offs_d = d0 + tl.arange(0, BLOCK_D)
            msk = real[:, None] & (offs_d < D)[None, :]
            idx = base[:, None] + offs_d[None, :]
            g = tl.load(g_ptr + idx, mask=msk, other=0.0).to(tl.float32)
            bad += (msk & ~(tl.abs(g) < float("inf"))).to(tl.int32)  # NaN fails the comparison too
            if LINF:
                acc0 = tl.maximum(acc0, tl.abs(g))
            else:
                dv = tl.load(d_ptr + idx, mask=msk, other=0.0)
                acc0 += g * g
                acc1 += dv * g
                acc2 += dv * dv
    out = part_ptr + (b * C + c) * 4
    if LINF:
        tl.store(out, tl.max(tl.max(acc0, axis=1), axis=0))
    else:
        tl.store(out, tl.sum(tl.sum(acc0, axis=1), axis=0))
        tl.store(out + 1, tl.sum(tl.sum(acc1, axis=1), axis=0))
        tl.store(out + 2, tl.sum(tl.sum(acc2, axis=1), axis=0))
    tl.store(out + 3, tl.sum(tl.sum(bad, axis=1), axis=0).to(tl.float32))


@triton.autotune(configs=_EXAMPLE_CONFIGS, key=["D", "RPC", "LINF"])
@triton.jit
def _example_update(d_ptr, g_ptr, m_ptr, part_ptr, o_ptr, fin_ptr, L, D, C, RPC, step, max_norm,
                    LINF: tl.constexpr, BLOCK_C: tl.constexpr, ROWS: tl.constexpr, BLOCK_D: tl.constexpr):
    b = tl.program_id(0)
    c = tl.program_id(1)
    offs_c = tl.arange(0, BLOCK_C)
    pm = offs_c < C
    pbase = part_ptr + (b * C + offs_c) * 4
    nbad = tl.sum(tl.load(pbase + 3, mask=pm, other=0.0), axis=0)
    if LINF:
        gmax = tl.max(tl.load(pbase, mask=pm, other=0.0), axis=0)
        coef = step / tl.maximum(gmax, NORM_EPS)
        scale = 1.0
    else:
        gg = tl.sum(tl.load(pbase, mask=pm, other=0.0), axis=0)
        dg = tl.sum(tl.load(pbase + 1, mask=pm, other=0.0), axis=0)
        dd = tl.sum(tl.load(pbase + 2, mask=pm, other=0.0), axis=0)
        coef = step / tl.maximum(tl.sqrt(gg), NORM_EPS)
        # ||delta + c g||^2 = dd + 2c dg + c^2 gg: the updated norm without a third pass
        n = tl.sqrt(tl.maximum(dd + 2.0 * coef * dg + coef * coef * gg, 0.0))
        scale = tl.where((max_norm > 0) & (n > max_norm), max_norm / n, 1.0)
    if c == 0:
        tl.store(fin_ptr + b, (nbad == 0).to(tl.int8))
    l_begin = c * RPC
    l_end = tl.minimum(l_begin + RPC, L)
    for l0 in range(l_begin, l_end, ROWS):
        offs_l = l0 + tl.arange(0, ROWS)
        row_ok = offs_l < l_end
        real = tl.load(m_ptr + b * L + offs_l, mask=row_ok, other=0) != 0
        base = (b * L + offs_l).to(tl.int64) * D
        for d0 in range(0, D, BLOCK_D):
            offs_d = d0 + tl.arange(0, BLOCK_D)
            col = (offs_d < D)[None, :]
            msk = real[:, None] & col
            idx = base[:, None] + offs_d[None, :]
            # padding loads 0 for g and delta, so the stored value there is exactly 0
            g = tl.load(g_ptr + idx, mask=msk, other=0.0).to(tl.float32)
            dv = tl.load(d_ptr + idx, mask=msk, other=0.0)
            if LINF:
                new = dv + coef * g
                if max_norm > 0:
                    new = tl.minimum(tl.maximum(new, -max_norm), max_norm)
            else:
                new = (dv + coef * g) * scale
            tl.store(o_ptr + idx, new, mask=row_ok[:, None] & col)


_TOKEN_CONFIGS = [triton.Config({"ROWS": r}, num_warps=w) for r, w in ((4, 4), (1, 4), (2, 4), (8, 8), (16, 8))]
if triton_interpret():
    _TOKEN_CONFIGS = _TOKEN_CONFIGS[:1]


@triton.autotune(configs=_TOKEN_CONFIGS, key=["D", "LINF", "BLOCK_D"])
@triton.jit
def _token_step(d_ptr, g_ptr, m_ptr, o_ptr, bad_ptr, R, D, step, max_norm,
                LINF: tl.constexpr, BLOCK_D: tl.constexpr, SINGLE: tl.constexpr, ROWS: tl.constexpr):
    offs_r = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    row_ok = offs_r < R
    real = tl.load(m_ptr + offs_r, mask=row_ok, other=0) != 0
    base = offs_r.to(tl.int64) * D
    if SINGLE:
        # The whole row fits one block: load it once, reduce and update in registers.
        offs_d = tl.arange(0, BLOCK_D)
        col = (offs_d < D)[None, :]
        msk = real[:, None] & col
        idx = base[:, None] + offs_d[None, :]
        g = tl.load(g_ptr + idx, mask=msk, other=0.0).to(tl.float32)
        dv = tl.load(d_ptr + idx, mask=msk, other=0.0)
        nbad = tl.sum((msk & ~(tl.abs(g) < float("inf"))).to(tl.int32), axis=1)
        if LINF:
            coef = step / tl.maximum(tl.max(tl.abs(g), axis=1), NORM_EPS)
            new = dv + coef[:, None] * g
            if max_norm > 0:
                new = tl.minimum(tl.maximum(new, -max_norm), max_norm)
        else:
            gg = tl.sum(g * g, axis=1)
            coef = step / tl.maximum(tl.sqrt(gg), NORM_EPS)
            n2 = tl.sum(dv * dv, axis=1) + 2.0 * coef * tl.sum(dv * g, axis=1) + coef * coef * gg
            n = tl.sqrt(tl.maximum(n2, 0.0))
            scale = tl.where((max_norm > 0) & (n > max_norm), max_norm / n, 1.0)
            new = (dv + coef[:, None] * g) * scale[:, None]
        tl.store(o_ptr + idx, new, mask=row_ok[:, None] & col)
    else:
        # Very wide rows: reduce in blocks, then a second sweep re-reads the row (from cache).
        acc0 = tl.zeros((ROWS, BLOCK_D), tl.float32)
        acc1 = tl.zeros((ROWS, BLOCK_D), tl.float32)
        acc2 = tl.zeros((ROWS, BLOCK_D), tl.float32)
        bad = tl.zeros((ROWS, BLOCK_D), tl.int32)
        for d0 in range(0, D, BLOCK_D):
            offs_d = d0 + tl.arange(0, BLOCK_D)
            msk = real[:, None] & (offs_d < D)[None, :]
            idx = base[:, None] + offs_d[None, :]
            g = tl.load(g_ptr + idx, mask=msk, other=0.0).to(tl.float32)
            dv = tl.load(d_ptr + idx, mask=msk, other=0.0)
            bad += (msk & ~(tl.abs(g) < float("inf"))).to(tl.int32)
            if LINF:
                acc0 = tl.maximum(acc0, tl.abs(g))
            else:
                acc0 += g * g
                acc1 += dv * g
                acc2 += dv * dv
        nbad = tl.sum(bad, axis=1)
        if LINF:
            coef = step / tl.maximum(tl.max(acc0, axis=1), NORM_EPS)
            scale = tl.full((ROWS,), 1.0, tl.float32)
        else:
            gg = tl.sum(acc0, axis=1)
            coef = step / tl.maximum(tl.sqrt(gg), NORM_EPS)
            n2 = tl.sum(acc2, axis=1) + 2.0 * coef * tl.sum(acc1, axis=1) + coef * coef * gg
            n = tl.sqrt(tl.maximum(n2, 0.0))
            scale = tl.where((max_norm > 0) & (n > max_norm), max_norm / n, 1.0)
        for d0 in range(0, D, BLOCK_D):
            offs_d = d0 + tl.arange(0, BLOCK_D)
            col = (offs_d < D)[None, :]
            msk = real[:, None] & col
            idx = base[:, None] + offs_d[None, :]
            g = tl.load(g_ptr + idx, mask=msk, other=0.0).to(tl.float32)
            dv = tl.load(d_ptr + idx, mask=msk, other=0.0)
            new = dv + coef[:, None] * g
            if LINF:
                if max_norm > 0:
                    new = tl.minimum(tl.maximum(new, -max_norm), max_norm)
            else:
                new = new * scale[:, None]
            tl.store(o_ptr + idx, new, mask=row_ok[:, None] & col)
    tl.store(bad_ptr + offs_r, nbad != 0, mask=row_ok)


@triton.jit
def _init(o_ptr, m_ptr, scale_ptr, seed_ptr, R, L, D, ROWS: tl.constexpr, BLOCK_D: tl.constexpr):
    offs_r = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    row_ok = offs_r < R
    real = tl.load(m_ptr + offs_r, mask=row_ok, other=0) != 0
    scale = tl.load(scale_ptr + offs_r // L, mask=row_ok, other=0.0)
    seed = tl.load(seed_ptr)
    base = offs_r.to(tl.int64) * D
    for d0 in range(0, D, BLOCK_D):
        offs_d = d0 + tl.arange(0, BLOCK_D)
        col = (offs_d < D)[None, :]
        idx = base[:, None] + offs_d[None, :]
        u = tl.rand(seed, idx)  # Philox counter = element index: independent of the launch layout
        val = tl.where(real[:, None], (2.0 * u - 1.0) * scale[:, None], 0.0)
        tl.store(o_ptr + idx, val, mask=row_ok[:, None] & col)


def _mask_u8(mask):
    return (mask != 0).to(torch.uint8).contiguous()


def step_with_status(delta, grad, mask, step_size, max_norm, norm, granularity):
    delta = delta.contiguous()
    grad = grad.contiguous()
    m = _mask_u8(mask)
    B, L, D = delta.shape
    out = torch.empty_like(delta)
    linf = norm == "linf"
    if granularity == "token":
        R = B * L
        block_d = triton.next_power_of_2(D)
        single = block_d <= _SINGLE_PASS_MAX_D
        block_d = min(block_d, _SINGLE_PASS_MAX_D)
        bad = torch.empty(R, dtype=torch.bool, device=delta.device)
        grid = lambda meta: (triton.cdiv(R, meta["ROWS"]),)  # noqa: E731
        _token_step[grid](delta, grad, m, out, bad, R, D, float(step_size), float(max_norm),
                          LINF=linf, BLOCK_D=block_d, SINGLE=single)
        return out, ~bad.view(B, L).any(dim=1)
    C = max(1, min(L, triton.cdiv(_PROGRAMS_TARGET, B)))
    rpc = triton.cdiv(L, C)
    C = triton.cdiv(L, rpc)
    part = torch.empty((B, C, 4), dtype=torch.float32, device=delta.device)
    finite = torch.empty(B, dtype=torch.int8, device=delta.device)
    _example_sums[(B, C)](delta, grad, m, part, L, D, C, rpc, LINF=linf)
    _example_update[(B, C)](delta, grad, m, part, out, finite, L, D, C, rpc, float(step_size), float(max_norm),
                            LINF=linf, BLOCK_C=triton.next_power_of_2(C))
    return out, finite.bool()


def init(shape_like, mask, init_mag, norm, generator):
    B, L, D = shape_like.shape
    device = shape_like.device
    m = _mask_u8(mask)
    # The seed is drawn from the generator on the device, so no host sync is needed.
    seed = torch.randint(0, 2**31 - 1, (1,), generator=generator, device=device, dtype=torch.int64).to(torch.int32)
    if norm == "l2":
        tokens = (mask != 0).sum(dim=1).clamp(min=1).float()
        scale = init_mag / torch.sqrt(tokens * D)
    else:
        scale = torch.full((B,), init_mag, dtype=torch.float32, device=device)
    out = torch.empty((B, L, D), dtype=torch.float32, device=device)
    R = B * L
    rows = 4
    block_d = min(triton.next_power_of_2(D), 1024)
    _init[(triton.cdiv(R, rows),)](out, m, scale.contiguous(), seed, R, L, D, ROWS=rows, BLOCK_D=block_d)
    return out
