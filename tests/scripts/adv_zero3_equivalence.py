"""2-rank ZeRO-3 run of every adversarial method vs a single-process eager re-implementation.

Launched by tests/test_adversarial_zero3.py:
    torchrun --nproc_per_node 2 tests/scripts/adv_zero3_equivalence.py --out result.json
Each rank trains with the xrobust strategy under DeepSpeed ZeRO-3 (fp32, dropout 0, GAS 2,
clipping 1.0, torch AdamW); rank 0 then replays the same 4 micro-batches per optimizer step with
plain PyTorch code written here from the papers' formulas, and compares, per optimizer step,
the full accumulated gradients (before clipping), the per-micro-batch statistics (losses, delta
norm, delta-gradient norm in loss units) and finally the parameters.
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
from adv_common import FORMATS, make_batch, tiny_model  # noqa: E402
from xrobust.kernels.builds import build_deepspeed_comm_ops  # noqa: E402

STEPS, GAS, WORLD = 3, 2, 2
LR, WD, CLIP = 1e-3, 0.01, 1.0
# Some gradients are zero in exact arithmetic (span/multiple-choice output bias, last LayerNorm
# bias: a constant shift of every position's/choice's logit) and only float roundoff remains;
# Adam with eps 1e-8 turns that noise into +-lr updates. eps 1e-6 damps it to ~1e-3 lr.
ADAM_EPS = 1e-6
TOL = 1e-5
STAT_KEYS = ("loss", "clean_loss", "adv_loss", "delta_norm", "delta_grad_norm")

CASES = {  # projection radius active everywhere it exists (step_size > max_norm)
    "none": dict(),
    "fgm": dict(step_size=0.5, max_norm=0.3),
    "pgd": dict(steps=2, step_size=0.5, max_norm=0.3, init_mag=0.1),
    "freelb": dict(steps=3, step_size=0.5, max_norm=0.3, init_mag=0.1),
    "freelb-linf": dict(steps=2, step_size=0.05, max_norm=0.02, init_mag=0.01, norm="linf"),
    "smart": dict(steps=2, step_size=1e-2, max_norm=5e-3, init_mag=1e-3, weight=2.0),
    "r3f": dict(init_mag=1e-2, weight=1.5, noise="normal"),
    "rs-rp": dict(init_mag=0.1, noise="uniform"),
}


def method_of(case):
    return case.split("-linf")[0]


def batch_for(case_i, s, r, m):
    # One head per case for all its steps: under ZeRO-3 a parameter that gets no gradient in an
    # optimizer step keeps the previous step's reduced gradient (measured here with DeepSpeed
    # 0.19.8), so rotating heads between steps would compare DeepSpeed's stale gradients.
    fmt = FORMATS[case_i % len(FORMATS)]
    return make_batch(fmt, 1000 * s + 10 * r + m + 100000 * case_i)


def rng_seed(case_i, s, r, m):
    return 7 + 1000 * s + 10 * r + m + 100000 * case_i


# ---------------------------------------------------------------- eager reference ---------------
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
    u = torch.rand(shape) * 2 - 1
    if norm == "l2":
        u = u * (mag / torch.sqrt(real.sum((1, 2), keepdim=True).clamp(min=1) * shape[2]))
        u = u * real
        n = u.flatten(1).norm(dim=1).view(-1, 1, 1)
        return torch.where(n > eps, u * (eps / n), u) if eps > 0 else u
    u = u * mag * real
    return u.clamp(-eps, eps) if eps > 0 else u


def noise(shape, real, mag, kind):
    z = torch.randn(shape) * mag if kind == "normal" else (torch.rand(shape) * 2 - 1) * mag
    return z * real


def sym_kl(fmt, a, b, batch, detach):
    """KL(a||b) + KL(b||a) per format, as in docs/ADVERSARIAL.md."""
    a, b = a.float(), b.float()

    def kl(p, q, dim):  # KL(p || q), p possibly detached
        lp, lq = p.log_softmax(dim), q.log_softmax(dim)
        return (lp.exp() * (lp - lq)).sum(dim)

    def pair(dim, x, y):
        return kl(x.detach() if detach else x, y, dim) + kl(y.detach() if detach else y, x, dim)

    if fmt in ("classification", "multiple_choice"):
        return pair(-1, a, b).mean()
    if fmt == "span_qa":
        pad = (batch["attention_mask"] == 0).unsqueeze(-1)
        return pair(1, a.masked_fill(pad, -1e9), b.masked_fill(pad, -1e9)).mean()
    keep = (batch["labels"] != -100).float()
    return (pair(-1, a, b) * keep).sum() / keep.sum()


def eager_micro(case, model, holder, batch, cfg, scale):
    """One micro-batch of `case`: accumulates scale * d(objective) into .grad; returns stats."""
    method = method_of(case)
    fmt = model.head_specs[batch["head"]].format
    mask = flat_mask(batch)
    real = (mask != 0).unsqueeze(-1).float()
    shape = (mask.size(0), mask.size(1), model.encoder.config.hidden_size)
    norm = cfg.get("norm", "l2")
    K, alpha, eps, mag = cfg.get("steps", 2), cfg.get("step_size"), cfg.get("max_norm", 0.3), cfg.get("init_mag")
    gnorms = []

    def fwd(delta, b=batch):
        holder["delta"] = delta
        try:
            return model(**b)
        finally:
            holder["delta"] = None

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
        d = torch.zeros(shape, requires_grad=True)
        clean = fwd(d).loss
        (g,) = torch.autograd.grad(clean, d, retain_graph=True)
        (clean * scale).backward()
        record(g)
        delta = ascend(torch.zeros(shape), g, real, alpha, eps, norm, (1, 2))
        adv = fwd(delta).loss
        (adv * scale).backward()
        st = dict(loss=(clean + adv).item(), clean_loss=clean.item(), adv_loss=adv.item(), delta_norm=ex_norm(delta))
    elif method == "pgd":
        delta = random_start(shape, real, mag, eps, norm)
        for _ in range(K):
            d = delta.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(fwd(d).loss, d)
            record(g)
            delta = ascend(delta, g, real, alpha, eps, norm, (1, 2))
        clean = model(**batch).loss
        adv = fwd(delta).loss
        ((clean + adv) * scale).backward()
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
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "start_positions", "end_positions")}
        with torch.no_grad():
            target = model(**inputs).logits
        delta = torch.randn(shape) * mag * real
        for _ in range(K):
            d = delta.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(sym_kl(fmt, fwd(d, inputs).logits, target, batch, True), d)
            record(g)
            delta = ascend(delta, g, real, alpha, eps, norm, (2,))
        out = model(**batch)
        adv_logits = fwd(delta, inputs).logits
        reg = sym_kl(fmt, adv_logits, out.logits, batch, True)
        loss = out.loss + cfg["weight"] * reg
        (loss * scale).backward()
        st = dict(loss=loss.item(), clean_loss=out.loss.item(), adv_loss=reg.item(), delta_norm=ex_norm(delta))
    elif method == "r3f":
        z = noise(shape, real, mag, cfg["noise"])
        out = model(**batch)
        noisy = fwd(z).logits
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


def eager_run(case_i, case):
    cfg = CASES[case]
    model = tiny_model()
    holder = {"delta": None}
    model.word_embeddings().register_forward_hook(
        lambda mod, inp, out: out if holder["delta"] is None else out + holder["delta"])
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=WD, eps=ADAM_EPS)
    stats, grads = {}, []
    for s in range(STEPS):
        opt.zero_grad(set_to_none=True)
        for m in range(GAS):
            for r in range(WORLD):
                torch.manual_seed(rng_seed(case_i, s, r, m))
                stats[f"{s}/{r}/{m}"] = eager_micro(case, model, holder, batch_for(case_i, s, r, m), cfg,
                                                    1.0 / (GAS * WORLD))
        for p in params:  # DeepSpeed hands unused parameters a zero gradient
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
    return stats, grads, {n: p.detach().clone() for n, p in model.named_parameters()}


# ---------------------------------------------------------------- DeepSpeed ZeRO-3 ----------------
def ds_run(case_i, case, rank, coalesce=True):
    import deepspeed
    from deepspeed.utils import safe_get_full_fp32_param, safe_get_full_grad

    from xrobust.adversarial import build_strategy
    from xrobust.config.schema import AdversarialConfig

    method = method_of(case)
    model = tiny_model()
    config = {"train_micro_batch_size_per_gpu": 3, "gradient_accumulation_steps": GAS, "gradient_clipping": CLIP,
              "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
              "zero_allow_untested_optimizer": True, "steps_per_print": 10**9}
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WD, eps=ADAM_EPS)
    engine, *_ = deepspeed.initialize(model=model, optimizer=opt, config=config)
    strategy = build_strategy(AdversarialConfig(method=method, backend="auto", **CASES[case]), engine.module)
    strategy.coalesce = coalesce
    stats, grads = {}, []
    for s in range(STEPS):
        for m in range(GAS):
            torch.manual_seed(rng_seed(case_i, s, rank, m))
            stats[f"{s}/{rank}/{m}"] = strategy.step(engine, batch_for(case_i, s, rank, m))
            if m == GAS - 1:
                grads.append({n: safe_get_full_grad(p).clone() for n, p in engine.module.named_parameters()})
            engine.step()
    final = {n: safe_get_full_fp32_param(p).clone() for n, p in engine.module.named_parameters()}
    strategy.close()
    engine.destroy()
    return stats, grads, final


def compare(a, b):
    worst = 0.0
    for k in b:
        worst = max(worst, (a[k].float() - b[k].float()).abs().max().item() / (1.0 + b[k].abs().max().item()))
    return worst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--local_rank", type=int, default=0)
    args = ap.parse_args()
    import deepspeed

    build_deepspeed_comm_ops()  # a killed earlier build must not hang this one
    deepspeed.init_distributed(dist_backend="gloo")
    rank = torch.distributed.get_rank()
    assert torch.distributed.get_world_size() == WORLD
    results, ok = {}, True
    for case in args.cases.split(","):
        case_i = list(CASES).index(case)
        t0 = time.monotonic()
        stats, grads, final = ds_run(case_i, case, rank)
        gathered = [None] * WORLD
        torch.distributed.all_gather_object(gathered, stats)
        if rank == 0:
            ds_stats = {k: v for part in gathered for k, v in part.items()}
            ref_stats, ref_grads, ref_final = eager_run(case_i, case)
            stat_err = 0.0
            for key, ref in ref_stats.items():
                got = ds_stats[key]
                for name in STAT_KEYS:
                    if name in ref or name in got:
                        if name not in ref or name not in got:
                            stat_err = math.inf
                            continue
                        stat_err = max(stat_err, abs(got[name] - ref[name]) / (1.0 + abs(ref[name])))
            grad_err = max(compare(g, r) for g, r in zip(grads, ref_grads))
            param_err = compare(final, ref_final)
            moved = max((ref_final[n] - p).abs().max().item() for n, p in tiny_model().named_parameters())
            passed = max(stat_err, grad_err, param_err) <= TOL and moved > 1e-4
            ok &= passed
            results[case] = dict(stat_err=stat_err, grad_err=grad_err, param_err=param_err, moved=moved,
                                 passed=passed, seconds=round(time.monotonic() - t0, 2),
                                 resets=sum(v.get("nonfinite_resets", 0) for v in ds_stats.values()))
            print(f"{case}: {results[case]}", flush=True)
    if rank == 0:
        Path(args.out).write_text(json.dumps({"ok": ok, "results": results}, indent=1))
    torch.distributed.barrier()
    return 0 if ok or rank else 1


if __name__ == "__main__":
    sys.exit(main())
