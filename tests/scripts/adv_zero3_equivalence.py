"""2-rank ZeRO-3 run of every adversarial method vs a single-process eager re-implementation.

Launched by tests/test_adversarial_zero3.py:
    torchrun --nproc_per_node 2 tests/scripts/adv_zero3_equivalence.py --out result.json
Each rank trains with the xrobust strategy under DeepSpeed ZeRO-3 (fp32, dropout 0, GAS 2,
clipping 1.0, plain SGD) a model with four heads, one head per optimizer step, rotating (as the
multi-task sampler does); rank 0 replays the same micro-batches with plain PyTorch code written
here from the papers' formulas, and checks

- the idle-head contract: the three heads an optimizer step does not use get an exactly zero
  gradient and are bit-identical before and after the step (ZeRO-3 would otherwise step them
  with their last, stale gradient);
- the full accumulated gradient of every optimizer step, per parameter tensor, relative;
- the per-micro-batch statistics (losses, delta norm, delta-gradient norm in loss units);
- the final parameters, relative to the size of the update they made.

Why the verdict does not depend on the CPU or the thread count (BLAS kernels sum in different
orders on Intel and AMD builds and with 1 or 2 OpenMP threads, so fp32 results differ in their
rounding): every quantity is compared with the exact value, an fp64 replay of the reference
(random draws in fp32, cast), with the allowance

    max(TOL x its scale, ROUNDING x |fp32 reference - fp64 replay|)

- The first term is the tight relative test for well-conditioned quantities (fp32 rounding is
  ~1e-7 of them). Scales: a gradient tensor's own norm, floored at GRAD_FLOOR x the global
  gradient norm (tensors whose exact gradient is ~0, such as the span and multiple-choice output
  bias, hold only rounding noise); a statistic's own value, floored at STAT_FLOOR in loss units
  (a KL of two nearly equal predictions is a difference of log-probabilities of size ~1, so its
  rounding error is absolute); for the final parameters, the update they made (plain SGD is
  linear in the gradient, so the parameter error is lr x the gradient error; Adam is not used:
  it divides by sqrt(v) and turns rounding noise on near-zero gradients into +-lr updates).
- The second term is the rounding error this very computation has in fp32, measured. Some
  gradients are sums with heavy cancellation (measured: in the multiple-choice step of plain
  training, bias and token-type gradients are 1e-4 away from the exact value in fp32, eager and
  DeepSpeed alike), and the final parameters carry their own fp32 ulp, which is larger than
  1e-5 of a small update. Two fp32 computations of the same sums in different orders have errors
  of the same size: measured, DeepSpeed's error is at most 1.2x the eager one across methods and
  on 1 and 2 threads, hence ROUNDING = 10.
A wrong scale (1/GAS, 1/K, a missing term, a different ascent objective) fails by orders of
magnitude on tensors that carry a real gradient.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from adv_common import FORMATS, HEAD_OF, join_process_group, make_batch, tiny_model  # noqa: E402

STEPS, GAS, WORLD = 3, 2, 2
LR, CLIP = 0.1, 1.0
TOL = 1e-5
GRAD_FLOOR = 1e-2
ROUNDING = 10.0
STAT_FLOOR = 1e-6
STAT_KEYS = ("loss", "clean_loss", "adv_loss", "delta_norm", "delta_grad_norm")

CASES = {  # projection radius active everywhere it exists (step_size > max_norm)
    "none": dict(),
    "fgm": dict(step_size=0.5, max_norm=0.3),
    "pgd": dict(steps=2, step_size=0.5, max_norm=0.3, init_mag=0.1),
    "pgd-zero-start": dict(steps=3, step_size=0.5, max_norm=0.3, init_mag=0.0),
    "freelb": dict(steps=3, step_size=0.5, max_norm=0.3, init_mag=0.1),
    "freelb-linf": dict(steps=2, step_size=0.05, max_norm=0.02, init_mag=0.01, norm="linf"),
    "smart": dict(steps=2, step_size=1e-2, max_norm=5e-3, init_mag=1e-3, weight=2.0),
    "r3f": dict(init_mag=1e-2, weight=1.5, noise="normal"),
    "rs-rp": dict(init_mag=0.1, noise="uniform"),
}


def method_of(case):
    return case.removesuffix("-linf").removesuffix("-zero-start")


def format_of(case_i, s):
    """The head of optimizer step s: rotates, so every head is idle in some step after being used."""
    return FORMATS[(case_i + s) % len(FORMATS)]


def batch_for(case_i, s, r, m):
    return make_batch(format_of(case_i, s), 1000 * s + 10 * r + m + 100000 * case_i)


def rng_seed(case_i, s, r, m):
    return 7 + 1000 * s + 10 * r + m + 100000 * case_i


def head_params(names, head):
    return [n for n in names if n.startswith(f"heads.{head}.")]


# ---------------------------------------------------------------- eager reference ---------------
# The reference runs twice: in fp32 and in fp64 (random draws always in fp32, then cast, so both
# see the same numbers). fp64 is the exact answer for our purpose; fp32 minus fp64 is the rounding
# error of this very computation, which sets the allowance for tensors whose gradient is a sum
# with heavy cancellation (see the module docstring).
DT = torch.float32


def rand(shape):
    return torch.rand(shape, dtype=torch.float32).to(DT)


def randn(shape):
    return torch.randn(shape, dtype=torch.float32).to(DT)


def flat_mask(batch):
    mask = batch["attention_mask"]
    return mask.flatten(0, 1) if mask.dim() == 3 else mask


def ascend(delta, g, real, alpha, eps, norm, dims):
    g = g * real
    gn = g.pow(2).sum(dims, keepdim=True).sqrt() if norm == "l2" else g.abs().amax(dims, keepdim=True)
    new = delta + alpha * g / gn.clamp(min=1e-8)
    if eps > 0:
        if norm == "l2":
            n = new.pow(2).sum(dims, keepdim=True).sqrt()
            new = torch.where(n > eps, new * (eps / n), new)
        else:
            new = new.clamp(-eps, eps)
    return new * real


def random_start(shape, real, mag, eps, norm):
    u = rand(shape) * 2 - 1
    if norm == "l2":
        u = u * (mag / torch.sqrt(real.sum((1, 2), keepdim=True).clamp(min=1) * shape[2]))
        u = u * real
        n = u.flatten(1).norm(dim=1).view(-1, 1, 1)
        return torch.where(n > eps, u * (eps / n), u) if eps > 0 else u
    u = u * mag * real
    return u.clamp(-eps, eps) if eps > 0 else u


def noise(shape, real, mag, kind):
    z = randn(shape) * mag if kind == "normal" else (rand(shape) * 2 - 1) * mag
    return z * real


def kl(p, q, dim):  # KL(p || q) over dim
    lp, lq = p.log_softmax(dim), q.log_softmax(dim)
    return (lp.exp() * (lp - lq)).sum(dim)


def sym_kl(fmt, a, b, batch, detach):
    """KL(a||b) + KL(b||a) per format, as in docs/ADVERSARIAL.md; detach: each target side detached."""
    a, b = a.to(DT), b.to(DT)

    def pair(dim, x, y):
        return kl(x.detach() if detach else x, y, dim) + kl(y.detach() if detach else y, x, dim)

    if fmt in ("classification", "multiple_choice"):
        return pair(-1, a, b).mean()
    if fmt == "span_qa":
        pad = (flat_mask(batch) == 0).unsqueeze(-1)
        return pair(1, a.masked_fill(pad, -1e9), b.masked_fill(pad, -1e9)).mean()
    keep = (batch["labels"] != -100).to(DT)
    return (pair(-1, a, b) * keep).sum() / keep.sum()


def eager_micro(case, model, holder, batch, cfg, scale):
    """One micro-batch of `case`: accumulates scale * d(objective) into .grad; returns stats."""
    method = method_of(case)
    fmt = model.head_specs[batch["head"]].format
    mask = flat_mask(batch)
    real = (mask != 0).unsqueeze(-1).to(DT)
    shape = (mask.size(0), mask.size(1), model.encoder.config.hidden_size)
    norm = cfg.get("norm", "l2")
    K, alpha, eps, mag = cfg.get("steps", 2), cfg.get("step_size"), cfg.get("max_norm", 0.3), cfg.get("init_mag")
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "start_positions", "end_positions")}
    gnorms = []

    def fwd(delta, b=batch, detach_embeddings=False):
        holder["delta"], holder["detach"] = delta, detach_embeddings
        try:
            return model(**b)
        finally:
            holder["delta"], holder["detach"] = None, False

    def ex_norm(d):
        f = d.detach().flatten(1)
        return (f.norm(dim=1) if norm == "l2" else f.abs().amax(dim=1)).mean().item()

    def record(g):
        gnorms.append(g.flatten(1).norm(dim=1).mean().item())

    st = {}
    if method == "none":
        loss = model(**batch).loss
        (loss * scale).backward()
        return {"loss": loss.item()}
    if method == "fgm":
        d = torch.zeros(shape, dtype=DT, requires_grad=True)
        clean = fwd(d).loss
        (g,) = torch.autograd.grad(clean, d, retain_graph=True)
        (clean * scale).backward()
        record(g)
        delta = ascend(torch.zeros(shape, dtype=DT), g, real, alpha, eps, norm, (1, 2))
        adv = fwd(delta).loss
        (adv * scale).backward()
        st = dict(loss=(clean + adv).item(), clean_loss=clean.item(), adv_loss=adv.item(), delta_norm=ex_norm(delta))
    elif method == "pgd":  # the snippet's order: clean pass first; a zero start ascends from its gradient
        delta = random_start(shape, real, mag, eps, norm) if mag > 0 else None
        d = torch.zeros(shape, dtype=DT, requires_grad=True)
        clean = fwd(d).loss
        (g,) = torch.autograd.grad(clean, d, retain_graph=True)
        (clean * scale).backward()
        steps = K
        if delta is None:
            record(g)
            delta = ascend(torch.zeros(shape, dtype=DT), g, real, alpha, eps, norm, (1, 2))
            steps -= 1
        for _ in range(steps):
            d = delta.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(fwd(d).loss, d)
            record(g)
            delta = ascend(delta, g, real, alpha, eps, norm, (1, 2))
        adv = fwd(delta).loss
        (adv * scale).backward()
        st = dict(loss=(clean + adv).item(), clean_loss=clean.item(), adv_loss=adv.item(), delta_norm=ex_norm(delta))
    elif method == "freelb":
        delta = random_start(shape, real, mag, eps, norm)
        losses = []
        for t in range(K):
            d = delta.clone().requires_grad_(True)
            loss = fwd(d).loss
            (g,) = torch.autograd.grad(loss, d, retain_graph=True)
            (loss / K * scale).backward()
            losses.append(loss.item())
            used = d
            if t < K - 1:
                record(g)
                delta = ascend(delta, g, real, alpha, eps, norm, (1, 2))
        st = dict(loss=sum(losses) / K, clean_loss=losses[0], adv_loss=losses[-1], delta_norm=ex_norm(used))
    elif method == "smart":
        out = model(**batch)  # one clean forward: loss, ascent target, clean side of the KL
        target = out.logits.detach()
        delta = randn(shape) * mag * real
        for _ in range(K):  # ascent on the full symmetric KL against the constant target
            d = delta.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(sym_kl(fmt, fwd(d, inputs).logits, target, batch, False), d)
            record(g)
            delta = ascend(delta, g, real, alpha, eps, norm, (2,))
        adv_logits = fwd(delta, inputs).logits
        reg = sym_kl(fmt, adv_logits, out.logits, batch, True)
        loss = out.loss + cfg["weight"] * reg
        (loss * scale).backward()
        st = dict(loss=loss.item(), clean_loss=out.loss.item(), adv_loss=reg.item(), delta_norm=ex_norm(delta))
    elif method == "r3f":
        z = noise(shape, real, mag, cfg["noise"])
        out = model(**batch)
        noisy = fwd(z, inputs, detach_embeddings=True).logits
        reg = sym_kl(fmt, noisy, out.logits, batch, False)
        loss = out.loss + cfg["weight"] * reg
        (loss * scale).backward()
        st = dict(loss=loss.item(), clean_loss=out.loss.item(), adv_loss=reg.item(), delta_norm=ex_norm(z))
    elif method == "rs-rp":
        z = noise(shape, real, mag, cfg["noise"])
        loss = fwd(z).loss
        (loss * scale).backward()
        st = dict(loss=loss.item(), adv_loss=loss.item(), delta_norm=ex_norm(z))
    if gnorms:
        st["delta_grad_norm"] = sum(gnorms) / len(gnorms)
    return st


def eager_run(case_i, case, dtype=torch.float32):
    global DT
    DT = dtype
    cfg = CASES[case]
    model = tiny_model().to(dtype)
    holder = {"delta": None, "detach": False}

    def hook(mod, inp, out):
        if holder["delta"] is None:
            return out
        return (out.detach() if holder["detach"] else out) + holder["delta"]

    model.word_embeddings().register_forward_hook(hook)
    params = list(model.parameters())
    opt = torch.optim.SGD(params, lr=LR)
    stats, grads = {}, []
    for s in range(STEPS):
        opt.zero_grad(set_to_none=True)
        for m in range(GAS):
            for r in range(WORLD):
                torch.manual_seed(rng_seed(case_i, s, r, m))
                stats[f"{s}/{r}/{m}"] = eager_micro(case, model, holder, batch_for(case_i, s, r, m), cfg,
                                                    1.0 / (GAS * WORLD))
        # a parameter without any gradient (an idle head if the model's contract broke) counts as 0
        grads.append({n: p.grad.clone() if p.grad is not None else torch.zeros_like(p)
                      for n, p in model.named_parameters()})
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
    return stats, grads, {n: p.detach().clone() for n, p in model.named_parameters()}


# ---------------------------------------------------------------- DeepSpeed ZeRO-3 ----------------
def ds_run(case_i, case, rank):
    import deepspeed
    from deepspeed.utils import safe_get_full_fp32_param, safe_get_full_grad

    from xrobust.adversarial import build_strategy
    from xrobust.config.schema import AdversarialConfig

    method = method_of(case)
    model = tiny_model()
    config = {"train_micro_batch_size_per_gpu": 3, "gradient_accumulation_steps": GAS, "gradient_clipping": CLIP,
              "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
              "zero_allow_untested_optimizer": True, "steps_per_print": 10**9}
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    engine, *_ = deepspeed.initialize(model=model, optimizer=opt, config=config)
    strategy = build_strategy(AdversarialConfig(method=method, backend="auto", **CASES[case]), engine.module)
    named = dict(engine.module.named_parameters())
    stats, grads, idle = {}, [], []
    for s in range(STEPS):
        used = HEAD_OF[format_of(case_i, s)]
        idle_names = [n for n in named if n.startswith("heads.") and not n.startswith(f"heads.{used}.")]
        before = {n: safe_get_full_fp32_param(named[n]).clone() for n in idle_names}
        for m in range(GAS):
            torch.manual_seed(rng_seed(case_i, s, rank, m))
            stats[f"{s}/{rank}/{m}"] = strategy.step(engine, batch_for(case_i, s, rank, m))
            if m == GAS - 1:
                grads.append({n: safe_get_full_grad(p).clone() for n, p in named.items()})
            engine.step()
        after = {n: safe_get_full_fp32_param(named[n]) for n in idle_names}
        idle.append({"step": s, "used": used,
                     "moved": [n for n in idle_names if not torch.equal(before[n], after[n])],
                     "nonzero_grad": [n for n in idle_names if bool(grads[-1][n].ne(0).any())]})
    final = {n: safe_get_full_fp32_param(p).clone() for n, p in named.items()}
    strategy.close()
    engine.destroy()
    return stats, grads, final, idle


def _norm(x) -> float:
    return float(x.double().norm())


def grad_error(got: dict, exact: dict, fp32: dict) -> tuple[float, str]:
    """Max over tensors of ||got - exact|| / allowance, and the worst tensor; <= 1 passes.

    allowance = max(TOL x max(||exact_t||, GRAD_FLOOR x ||exact||), ROUNDING x ||fp32_t - exact_t||)."""
    total = math.sqrt(sum(_norm(e) ** 2 for e in exact.values()))
    worst, where = 0.0, ""
    for k, e in exact.items():
        allow = max(TOL * max(_norm(e), GRAD_FLOOR * total), ROUNDING * _norm(fp32[k].double() - e))
        err = _norm(got[k].double() - e) / allow
        if err > worst:
            worst, where = err, k
    return worst, where


def update_error(got: dict, exact: dict, fp32: dict, start: dict, names) -> float:
    """||got - exact|| over `names`, relative to max(TOL x the update exact - start, ROUNDING x the
    fp32 reference's own error); <= 1 passes."""
    def dist(a, b):
        return math.sqrt(sum(_norm(a[n].double() - b[n].double()) ** 2 for n in names))

    allow = max(TOL * dist(exact, start), ROUNDING * dist(fp32, exact))
    return dist(got, exact) / allow if allow > 0 else math.inf


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--local_rank", type=int, default=0)
    args = ap.parse_args()
    join_process_group()
    rank = torch.distributed.get_rank()
    assert torch.distributed.get_world_size() == WORLD
    results, ok = {}, True
    for case in args.cases.split(","):
        case_i = list(CASES).index(case)
        t0 = time.monotonic()
        stats, grads, final, idle = ds_run(case_i, case, rank)
        gathered = [None] * WORLD
        torch.distributed.all_gather_object(gathered, stats)
        if rank == 0:
            ds_stats = {k: v for part in gathered for k, v in part.items()}
            ref_stats, ref_grads, ref_final = eager_run(case_i, case, torch.float32)
            ex_stats, ex_grads, ex_final = eager_run(case_i, case, torch.float64)
            start = dict(tiny_model().named_parameters())
            stat_err = 0.0
            for key, ex in ex_stats.items():
                got, ref = ds_stats[key], ref_stats[key]
                for name in STAT_KEYS:
                    if name in ex or name in got:
                        if name not in ex or name not in got:
                            stat_err = math.inf
                            continue
                        allow = max(TOL * abs(ex[name]), ROUNDING * abs(ref[name] - ex[name]), STAT_FLOOR)
                        stat_err = max(stat_err, abs(got[name] - ex[name]) / allow)
            grad_err, grad_where = max((*grad_error(g, e, r), s) for s, (g, e, r)
                                       in enumerate(zip(grads, ex_grads, ref_grads)))[:2]
            used_heads = {HEAD_OF[format_of(case_i, s)] for s in range(STEPS)}
            param_err = update_error(final, ex_final, ref_final, start, list(start))
            head_err = max(update_error(final, ex_final, ref_final, start, head_params(start, h)) for h in used_heads)
            idle_moved = [f"step {i['step']} (uses {i['used']}): {n}" for i in idle for n in i["moved"]]
            idle_grad = [f"step {i['step']} (uses {i['used']}): {n}" for i in idle for n in i["nonzero_grad"]]
            ref_idle_grad = [f"step {s}: {n}" for s in range(STEPS) for n in start
                             if n.startswith("heads.") and not n.startswith(f"heads.{HEAD_OF[format_of(case_i, s)]}.")
                             and bool(ref_grads[s][n].ne(0).any())]
            moved = max(float((ref_final[n] - p).abs().max()) for n, p in start.items())
            passed = (max(stat_err, grad_err, param_err, head_err) <= 1.0 and moved > 1e-4
                      and not idle_moved and not idle_grad and not ref_idle_grad)
            ok &= passed
            results[case] = dict(stat_err=stat_err, grad_err=grad_err, grad_worst_tensor=grad_where,
                                 param_err=param_err, used_head_err=head_err, moved=moved,
                                 idle_heads_moved=idle_moved, idle_heads_nonzero_grad=idle_grad,
                                 eager_idle_heads_nonzero_grad=ref_idle_grad, passed=passed,
                                 seconds=round(time.monotonic() - t0, 2),
                                 resets=sum(v.get("nonfinite_resets", 0) for v in ds_stats.values()))
            print(f"{case}: {results[case]}", flush=True)
    if rank == 0:
        Path(args.out).write_text(json.dumps({"ok": ok, "results": results, "tolerance": TOL,
                                              "threads": torch.get_num_threads()}, indent=1))
    torch.distributed.barrier()
    return 0 if ok or rank else 1


if __name__ == "__main__":
    sys.exit(main())
