"""Tests for xrobust.kernels: the eager reference against hand-computed values and invariants, then
every other backend against eager.

The Triton backend runs on CPU only under TRITON_INTERPRET=1, which triton.jit reads when the kernels
are imported; those tests therefore run in a child pytest process with the variable set (and are
skipped in the parent). On a CUDA machine the compiled Triton kernels are tested directly.
"""

import json
import math
import os
import subprocess
import sys

import pytest
import torch

from xrobust.kernels import KernelError, perturbation_init, perturbation_step, perturbation_step_with_status
from xrobust.kernels.api import resolve_backend

IN_TRITON_CHILD = os.environ.get("XROBUST_TRITON_CHILD") == "1"
HAS_CUDA = torch.cuda.is_available()
COMBOS = [(n, g) for n in ("l2", "linf") for g in ("example", "token")]


def make_case(B, L, D, *, grad_dtype=torch.float32, device="cpu", seed=0):
    gen = torch.Generator().manual_seed(seed)
    delta = 0.05 * torch.randn(B, L, D, generator=gen)
    grad = torch.randn(B, L, D, generator=gen)
    mask = (torch.rand(B, L, generator=gen) > 0.3).long()
    mask[:, 0] = 1
    if B >= 3:
        mask[1] = 0  # an all-padding example
        grad[2] = 0.0  # a zero-gradient example
    return delta.to(device), grad.to(grad_dtype).to(device), mask.to(device)


def unit_norms(x, mask, norm, granularity):
    x = x * (mask != 0).unsqueeze(-1)
    dims = (1, 2) if granularity == "example" else (2,)
    return torch.sqrt((x * x).sum(dims)) if norm == "l2" else x.abs().amax(dims)


def assert_matches_eager(delta, grad, mask, backend, *, norm, granularity, max_norm, step_size=0.1):
    kw = dict(step_size=step_size, max_norm=max_norm, norm=norm, granularity=granularity)
    ref, ref_ok = perturbation_step_with_status(delta.cpu(), grad.cpu(), mask.cpu(), backend="eager", **kw)
    out, ok = perturbation_step_with_status(delta, grad, mask, backend=backend, **kw)
    assert out.dtype == torch.float32 and out.shape == delta.shape and ok.dtype == torch.bool
    assert torch.equal(ok.cpu(), ref_ok)
    # values near zero get an absolute floor: 1e-6 of the largest magnitude in the result
    kept = ref[ref_ok]
    atol = 1e-6 * float(kept.abs().max()) + 1e-12 if kept.numel() else 1e-12
    torch.testing.assert_close(out.cpu()[ref_ok], kept, rtol=1e-6, atol=atol)
    padding = (mask == 0).cpu()
    assert torch.all(out.cpu()[padding] == 0)
    return out.cpu()


# ---------------------------------------------------------------- eager reference

@pytest.mark.skipif(IN_TRITON_CHILD, reason="parent-only")
class TestEager:
    def test_example_l2_hand_computed(self):
        delta = torch.zeros(1, 2, 2)
        grad = torch.tensor([[[3.0, 0.0], [0.0, 4.0]]])
        out = perturbation_step(delta, grad, torch.ones(1, 2), step_size=1.0, max_norm=0.0, backend="eager")
        torch.testing.assert_close(out, torch.tensor([[[0.6, 0.0], [0.0, 0.8]]]))

    def test_token_l2_and_projection_hand_computed(self):
        delta = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
        grad = torch.tensor([[[0.0, 5.0], [2.0, 0.0]]])
        out = perturbation_step(delta, grad, torch.ones(1, 2), step_size=1.0, max_norm=1.0,
                                granularity="token", backend="eager")
        s = 1 / math.sqrt(2)  # row 0 becomes (1, 1), norm sqrt(2) > 1: rescaled onto the unit sphere
        torch.testing.assert_close(out, torch.tensor([[[s, s], [1.0, 0.0]]]))

    def test_linf_hand_computed(self):
        delta = torch.tensor([[[0.25, -0.25, 0.0]]])
        grad = torch.tensor([[[2.0, -4.0, 1.0]]])
        out = perturbation_step(delta, grad, torch.ones(1, 1), step_size=0.5, max_norm=0.3, norm="linf",
                                backend="eager")
        torch.testing.assert_close(out, torch.tensor([[[0.3, -0.3, 0.125]]]))

    def test_zero_gradient_keeps_delta_then_projects(self):
        delta = torch.tensor([[[3.0, 4.0]]])
        out = perturbation_step(delta, torch.zeros(1, 1, 2), torch.ones(1, 1), step_size=1.0, max_norm=1.0,
                                backend="eager")
        torch.testing.assert_close(out, torch.tensor([[[0.6, 0.8]]]))
        out = perturbation_step(delta, torch.zeros(1, 1, 2), torch.ones(1, 1), step_size=1.0, max_norm=0.0,
                                backend="eager")
        torch.testing.assert_close(out, delta)

    def test_padding_ignored_even_if_nonfinite(self):
        delta = torch.ones(1, 2, 2)
        grad = torch.tensor([[[1.0, 0.0], [float("nan"), float("inf")]]])
        out, ok = perturbation_step_with_status(delta, grad, torch.tensor([[1, 0]]), step_size=1.0, max_norm=0.0,
                                                backend="eager")
        assert ok.tolist() == [True]
        torch.testing.assert_close(out, torch.tensor([[[2.0, 1.0], [0.0, 0.0]]]))


# ---------------------------------------------------------------- invariants, every CPU backend

CPU_BACKENDS = ["eager", "compiled"]


@pytest.mark.skipif(IN_TRITON_CHILD, reason="parent-only")
@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("norm,granularity", COMBOS)
def test_projection_and_padding(backend, norm, granularity):
    delta, grad, mask = make_case(4, 9, 31)
    delta = delta * 20  # start outside the ball so the projection is active
    out = perturbation_step(delta, grad, mask, step_size=0.5, max_norm=0.3, norm=norm, granularity=granularity,
                            backend=backend)
    assert torch.all(out[mask == 0] == 0)
    assert torch.all(unit_norms(out, mask, norm, granularity) <= 0.3 * (1 + 1e-6))


# ---------------------------------------------------------------- compiled CPU vs eager

SHAPES = [(3, 5, 7), (1, 1, 1), (4, 1, 1027), (3, 17, 100)]


@pytest.mark.skipif(IN_TRITON_CHILD, reason="parent-only")
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("grad_dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("norm,granularity", COMBOS)
def test_compiled_matches_eager(shape, grad_dtype, norm, granularity):
    delta, grad, mask = make_case(*shape, grad_dtype=grad_dtype)
    for max_norm in (0.0, 0.02, 100.0):
        assert_matches_eager(delta, grad, mask, "compiled", norm=norm, granularity=granularity, max_norm=max_norm)


@pytest.mark.skipif(IN_TRITON_CHILD, reason="parent-only")
@pytest.mark.parametrize("norm,granularity", COMBOS)
def test_compiled_row_split_path(norm, granularity):
    # fewer examples than threads takes the row-parallel two-phase path
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        delta, grad, mask = make_case(1, 37, 65)
        assert_matches_eager(delta, grad, mask, "compiled", norm=norm, granularity=granularity, max_norm=0.05)
    finally:
        torch.set_num_threads(old)


def nonfinite_case(device="cpu"):
    delta, grad, mask = make_case(4, 6, 10, device=device)
    grad = grad.clone()
    grad[0, 0, 3] = float("nan")
    grad[3, 0, 0] = float("inf")
    mask = mask.clone()
    mask[2, -1] = 0
    grad[2, -1, 1] = float("nan")  # at padding: ignored
    return delta, grad, mask


@pytest.mark.skipif(IN_TRITON_CHILD, reason="parent-only")
@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("norm,granularity", COMBOS)
def test_nonfinite_reported(backend, norm, granularity):
    delta, grad, mask = nonfinite_case()
    out, ok = perturbation_step_with_status(delta, grad, mask, step_size=0.1, max_norm=0.3, norm=norm,
                                            granularity=granularity, backend=backend)
    assert ok.tolist() == [False, True, True, False]
    assert torch.isfinite(out[ok]).all()
    assert_matches_eager(delta, grad, mask, backend, norm=norm, granularity=granularity, max_norm=0.3)


# ---------------------------------------------------------------- init

@pytest.mark.skipif(IN_TRITON_CHILD, reason="parent-only")
@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_init_statistics_and_reproducibility(backend, norm):
    B, L, D = 4, 50, 96
    mask = torch.ones(B, L, dtype=torch.long)
    mask[0, 20:] = 0
    mask[3] = 0
    like = torch.empty(B, L, D)
    a = perturbation_init(like, mask, init_mag=0.1, norm=norm, generator=torch.Generator().manual_seed(7),
                          backend=backend)
    b = perturbation_init(like, mask, init_mag=0.1, norm=norm, generator=torch.Generator().manual_seed(7),
                          backend=backend)
    c = perturbation_init(like, mask, init_mag=0.1, norm=norm, generator=torch.Generator().manual_seed(8),
                          backend=backend)
    assert a.dtype == torch.float32 and torch.equal(a, b) and not torch.equal(a, c)
    assert torch.all(a[mask == 0] == 0)
    for ex in range(3):
        n = int(mask[ex].sum())
        bound = 0.1 / math.sqrt(n * D) if norm == "l2" else 0.1
        vals = a[ex][mask[ex] != 0]
        assert vals.abs().max() <= bound * (1 + 1e-6)
        assert abs(float(vals.mean())) < 0.05 * bound
        assert float(vals.var()) == pytest.approx(bound**2 / 3, rel=0.05)  # U(-b, b) variance
    if backend == "compiled":  # same random stream as eager
        ref = perturbation_init(like, mask, init_mag=0.1, norm=norm, generator=torch.Generator().manual_seed(7),
                                backend="eager")
        assert torch.equal(a, ref)


# ---------------------------------------------------------------- errors and dispatch

@pytest.mark.skipif(IN_TRITON_CHILD, reason="parent-only")
class TestErrors:
    def setup_method(self):
        self.delta, self.grad, self.mask = make_case(2, 3, 4)

    def step(self, **over):
        kw = dict(delta=self.delta, grad=self.grad, mask=self.mask, step_size=0.1, max_norm=0.3, backend="eager")
        kw.update(over)
        d, g, m = kw.pop("delta"), kw.pop("grad"), kw.pop("mask")
        return perturbation_step(d, g, m, **kw)

    @pytest.mark.parametrize("over,word", [
        (dict(delta=torch.zeros(2, 3, 4, dtype=torch.float64)), "delta"),
        (dict(delta=torch.zeros(2, 3)), "delta"),
        (dict(grad=torch.zeros(2, 3, 5)), "grad"),
        (dict(grad=torch.zeros(2, 3, 4, dtype=torch.int32)), "grad"),
        (dict(mask=torch.ones(2, 4)), "mask"),
        (dict(norm="l1"), "norm"),
        (dict(granularity="batch"), "granularity"),
        (dict(backend="cuda"), "backend"),
        (dict(step_size=float("nan")), "step_size"),
        (dict(max_norm="x"), "max_norm"),
    ])
    def test_bad_arguments_named(self, over, word):
        with pytest.raises(KernelError, match=word):
            self.step(**over)

    def test_kernel_error_is_xrobust_and_value_error(self):
        from xrobust.errors import XRobustError

        assert issubclass(KernelError, XRobustError) and issubclass(KernelError, ValueError)

    def test_init_bad_arguments(self):
        with pytest.raises(KernelError, match="shape_like"):
            perturbation_init(torch.zeros(2, 3), self.mask, init_mag=0.1)
        with pytest.raises(KernelError, match="init_mag"):
            perturbation_init(self.delta, self.mask, init_mag=-1.0)
        with pytest.raises(KernelError, match="generator"):
            perturbation_init(self.delta, self.mask, init_mag=0.1, generator=123)

    @pytest.mark.skipif(os.environ.get("TRITON_INTERPRET", "") not in ("", "0"), reason="interpreter enabled")
    def test_triton_on_cpu_needs_interpreter(self):
        with pytest.raises(KernelError, match="TRITON_INTERPRET"):
            self.step(backend="triton")

    def test_auto_resolution(self):
        assert resolve_backend("auto", torch.device("cpu")) == "compiled"
        assert resolve_backend("auto", torch.device("cuda", 0)) == "triton"


# ---------------------------------------------------------------- Triton (interpreter child / CUDA)

TRITON_SHAPES = [(3, 5, 7), (1, 1, 1), (3, 6, 33)]


@pytest.mark.skipif(IN_TRITON_CHILD or HAS_CUDA, reason="parent-only; CUDA runs the kernels directly")
def test_triton_interpreter_in_child_process():
    env = dict(os.environ, TRITON_INTERPRET="1", XROBUST_TRITON_CHILD="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k", "triton"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


triton_only = pytest.mark.skipif(not (IN_TRITON_CHILD or HAS_CUDA), reason="needs CUDA or the interpreter child")
TRITON_DEVICE = "cuda" if HAS_CUDA else "cpu"


@triton_only
@pytest.mark.parametrize("norm,granularity", COMBOS)
def test_triton_matches_eager(norm, granularity):
    for shape in TRITON_SHAPES + ([(32, 128, 1024), (8, 384, 1000)] if HAS_CUDA else []):
        for grad_dtype in (torch.float32, torch.bfloat16):
            delta, grad, mask = make_case(*shape, grad_dtype=grad_dtype, device=TRITON_DEVICE)
            for max_norm in (0.0, 0.02):
                assert_matches_eager(delta, grad, mask, "triton", norm=norm, granularity=granularity,
                                     max_norm=max_norm)


@triton_only
@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_triton_token_wide_row_path(monkeypatch, norm):
    from xrobust.kernels import triton_kernels

    monkeypatch.setattr(triton_kernels, "_SINGLE_PASS_MAX_D", 16)  # force the blocked two-sweep variant
    delta, grad, mask = make_case(3, 4, 37, device=TRITON_DEVICE)
    assert_matches_eager(delta, grad, mask, "triton", norm=norm, granularity="token", max_norm=0.05)


@triton_only
@pytest.mark.parametrize("norm,granularity", COMBOS)
def test_triton_nonfinite_and_projection(norm, granularity):
    delta, grad, mask = nonfinite_case(TRITON_DEVICE)
    out, ok = perturbation_step_with_status(delta, grad, mask, step_size=0.5, max_norm=0.05, norm=norm,
                                            granularity=granularity, backend="triton")
    assert ok.tolist() == [False, True, True, False]
    assert torch.all(unit_norms(out[ok], mask[ok], norm, granularity) <= 0.05 * (1 + 1e-6))
    assert_matches_eager(delta, grad, mask, "triton", norm=norm, granularity=granularity, max_norm=0.05)


@triton_only
@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_triton_init(norm):
    B, L, D = 3, 40, 64
    mask = torch.ones(B, L, dtype=torch.long, device=TRITON_DEVICE)
    mask[0, 10:] = 0
    mask[2] = 0
    like = torch.empty(B, L, D, device=TRITON_DEVICE)
    gen = lambda s: torch.Generator(device=TRITON_DEVICE).manual_seed(s)  # noqa: E731
    a = perturbation_init(like, mask, init_mag=0.2, norm=norm, generator=gen(1), backend="triton")
    b = perturbation_init(like, mask, init_mag=0.2, norm=norm, generator=gen(1), backend="triton")
    c = perturbation_init(like, mask, init_mag=0.2, norm=norm, generator=gen(2), backend="triton")
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.all(a[mask == 0] == 0)
    for ex in range(2):
        n = int(mask[ex].sum())
        bound = 0.2 / math.sqrt(n * D) if norm == "l2" else 0.2
        vals = a[ex][mask[ex] != 0].cpu()
        assert vals.abs().max() <= bound * (1 + 1e-6)
        assert float(vals.var()) == pytest.approx(bound**2 / 3, rel=0.1)


# ---------------------------------------------------------------- benchmark command

@pytest.mark.skipif(IN_TRITON_CHILD, reason="parent-only")
def test_bench_smoke(tmp_path):
    import argparse

    from xrobust.bench import kernels as bench

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    out = tmp_path / "k.json"
    args = parser.parse_args(["--shapes", "2x8x64", "--repeats", "3", "--warmup", "1", "--json", str(out)])
    assert bench.run(args) == 0
    data = json.loads(out.read_text())
    backends = {r["backend"] for r in data["results"]}
    assert {"eager", "compiled", "copy"} <= backends
    assert all(r["median_s"] > 0 and r["gbps"] > 0 for r in data["results"])
    assert data["threads"] >= 1


# Every Triton kernel variant lowered to a CUDA binary (sm_90) with Triton's bundled ptxas: catches
# code-generation errors the interpreter cannot (e.g. non-constexpr globals) on a machine without a GPU.
KERNEL_SIGNATURES = {
    "_example_sums": (
        {"d_ptr": "*fp32", "g_ptr": "*bf16", "m_ptr": "*u8", "part_ptr": "*fp32", "L": "i32", "D": "i32",
         "C": "i32", "RPC": "i32"}, ["LINF", "ROWS", "BLOCK_D"]),
    "_example_update": (
        {"d_ptr": "*fp32", "g_ptr": "*fp32", "m_ptr": "*u8", "part_ptr": "*fp32", "o_ptr": "*fp32",
         "fin_ptr": "*i8", "L": "i32", "D": "i32", "C": "i32", "RPC": "i32", "step": "fp32", "max_norm": "fp32"},
        ["LINF", "BLOCK_C", "ROWS", "BLOCK_D"]),
    "_token_step": (
        {"d_ptr": "*fp32", "g_ptr": "*bf16", "m_ptr": "*u8", "o_ptr": "*fp32", "bad_ptr": "*i1", "R": "i32",
         "D": "i32", "step": "fp32", "max_norm": "fp32"}, ["LINF", "BLOCK_D", "SINGLE", "ROWS"]),
    "_init": (
        {"o_ptr": "*fp32", "m_ptr": "*u8", "scale_ptr": "*fp32", "seed_ptr": "*i32", "R": "i32", "L": "i32",
         "D": "i32"}, ["ROWS", "BLOCK_D"]),
}
CONSTEXPR_VALUES = {"ROWS": 4, "BLOCK_D": 256, "BLOCK_C": 32}


@pytest.mark.skipif(IN_TRITON_CHILD or HAS_CUDA or os.environ.get("TRITON_INTERPRET", "") not in ("", "0"),
                    reason="CPU machines only, kernels not interpreted")
@pytest.mark.parametrize("linf", [False, True])
def test_triton_kernels_compile_for_cuda(linf, monkeypatch):
    pytest.importorskip("triton")
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.runtime.jit import JITFunction

    from xrobust.kernels import triton_kernels

    monkeypatch.setenv("TRITON_DEFAULT_FP_FUSION", "1")
    for name, (signature, constexprs) in KERNEL_SIGNATURES.items():
        for single in ([True, False] if name == "_token_step" else [None]):
            if name == "_init" and linf:
                continue
            fn = getattr(triton_kernels, name)
            while not isinstance(fn, JITFunction):
                fn = fn.fn  # unwrap the autotuner
            sig = dict(signature, **{c: "constexpr" for c in constexprs})
            values = dict(CONSTEXPR_VALUES, LINF=linf, SINGLE=single)
            if single:
                values["BLOCK_D"] = 1024
            consts = {(list(sig).index(c),): values[c] for c in constexprs}
            compiled = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=consts), target=GPUTarget("cuda", 90, 32))
            assert "cubin" in compiled.asm, name
