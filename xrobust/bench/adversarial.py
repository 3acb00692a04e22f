"""`xrobust bench adversarial`: optimizer-step time of each method relative to plain training,
under ZeRO-3 with 2 ranks (the command launches the 2-rank job itself with torchrun).

Method, so that ratios hold from run to run on a shared machine:
- every method has its own engine, built up front; then rounds: in each round every method runs
  one optimizer step in turn (the order rotates from round to round), so a scheduler hiccup or
  a change of load hits one step of one method, not a whole block of one method;
- a method's ratio in a round is its step time over the plain step of the same round; the
  command prints min / median / max over rounds of step times and of ratios, and judges the
  median ratio against the floors (FreeLB-K <= 1.15 K, PGD-K <= 1.15 (K + 1), R3F <= 2.3 x plain);
  the exit status is 1 when a floor is missed;
- a model whose step is dominated by compute (default hidden 256, 4 layers, sequence 128),
  fp32, dropout 0, GAS 1, ZeRO-3 with stage3_param_persistence_threshold 0 (every parameter
  gathered per pass, as for a large model);
- also printed: gradient-reduction collectives per optimizer step (FreeLB-K with and without
  engine.coalesce_grad_reduction()), load average before and after, threads per rank.

`--profile N` adds a torch.profiler breakdown of N more steps per method on rank 0 (self CPU
time): collectives (ZeRO-3 parameter gathers, gradient reductions and the barriers, over gloo),
ZeRO-3's gather/release autograd hooks around every module (they wait for the gathers), matrix
products (GEMMs and attention), other tensor ops, and the rest (Python and framework overhead
outside any op), per optimizer step and per forward/backward pass, plus the largest ops.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

# (label, method, the method's settings (docs/ADVERSARIAL.md), floor kind)
CASES = [
    ("plain", "none", {}, None),
    ("fgm", "fgm", {"epsilon": 0.1}, None),
    ("pgd-{K}", "pgd", {"sigma": 0.0}, "pgd"),  # zero start: K + 1 passes, the floor's count
    ("pgd-{K}-random-start", "pgd", {"sigma": 0.1}, None),  # one more ascent
    ("freelb-{K}", "freelb", {}, "freelb"),
    ("freelb-{K}-uncoalesced", "freelb", {"coalesce": False}, "freelb"),
    ("smart-1", "smart", {"steps": 1, "eta": 1e-3, "sigma": 1e-5, "epsilon": 1e-5, "norm": "linf"}, None),
    ("r3f", "r3f", {"eps": 1e-5}, "r3f"),
    ("rs-rp", "rs-rp", {"sigma": 0.1}, None),
]
COLLECTIVES = ("all_reduce", "reduce_scatter", "reduce_scatter_tensor", "_reduce_scatter_base",
               "all_reduce_coalesced", "reduce_scatter_coalesced")
COMM_WORDS = ("all_gather", "allgather", "reduce_scatter", "all_reduce", "allreduce", "broadcast", "gloo",
              "c10d::", "record_param_comms", "barrier")
MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_scaled_dot_product",
              "aten::scaled_dot_product", "aten::_efficient_attention", "aten::_flash_attention",
              "LinearFunctionForZeroStage3")
ZERO3_HOOKS = ("PreBackwardFunction", "PostBackwardFunction")  # ZeRO-3 gather/release around each module


def add_arguments(parser) -> None:
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds (one step of every method each)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument("--k", type=int, default=2, help="K for PGD-K and FreeLB-K")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8, help="micro-batch per rank")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--methods", default=None, help="comma-separated labels to run (plain always runs)")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="profile N extra steps per method")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--worker", action="store_true", help=__import__("argparse").SUPPRESS)
    parser.add_argument("--out", default=None, help=__import__("argparse").SUPPRESS)
    parser.add_argument("--local_rank", type=int, default=0, help=__import__("argparse").SUPPRESS)


def _model_config(args):
    from transformers import XLMRobertaConfig

    return XLMRobertaConfig(vocab_size=1200, hidden_size=args.hidden, num_hidden_layers=args.layers,
                            num_attention_heads=max(1, args.hidden // 64), intermediate_size=4 * args.hidden,
                            max_position_embeddings=args.seq_len + 2, hidden_dropout_prob=0.0,
                            attention_probs_dropout_prob=0.0)


def _cases(args):
    K = args.k
    chosen = None if not args.methods else {m.strip() for m in args.methods.split(",")}
    out = []
    for label, method, settings, floor in CASES:
        label = label.format(K=K)
        if chosen is not None and label != "plain" and label not in chosen:
            continue
        settings = dict(settings)
        if method in ("pgd", "freelb"):
            settings["steps"] = K
        out.append((label, method, settings, floor))
    return out


def _passes(method, settings) -> float:
    """Forward+backward passes one step makes (the method's own count: Strategy.passes)."""
    from xrobust.adversarial import strategy_class

    cls = strategy_class(method)
    return cls.passes(cls.Config(**settings))


def _categorize(events) -> dict[str, float]:
    """Self CPU time (s) of profiler events grouped as comm / zero3 hooks / matmul / other ops."""
    out = {"comm": 0.0, "zero3_hooks": 0.0, "matmul": 0.0, "other_ops": 0.0}
    for e in events:
        name = e.key
        t = e.self_cpu_time_total / 1e6
        if any(w in name.lower() for w in COMM_WORDS):
            out["comm"] += t
        elif any(w in name for w in ZERO3_HOOKS):
            out["zero3_hooks"] += t
        elif name.startswith(MATMUL_OPS):
            out["matmul"] += t
        else:
            out["other_ops"] += t
    return out


def _worker(args) -> int:
    import deepspeed
    import torch
    import torch.distributed as dist
    from transformers import AutoModel

    from xrobust.adversarial import build_strategy, strategy_class
    from xrobust.bench.kernels import cpu_model
    from xrobust.kernels.builds import build_deepspeed_comm_ops
    from xrobust.modeling.model import HeadSpec, XRobustModel

    counts = {"n": 0}

    def wrap(fn):
        def counted(*a, **kw):
            counts["n"] += 1
            return fn(*a, **kw)
        return counted

    for name in COLLECTIVES:  # before init: DeepSpeed's comm backend captures some of these
        if hasattr(dist, name):
            setattr(dist, name, wrap(getattr(dist, name)))
    build_deepspeed_comm_ops()  # a killed earlier build must not hang this one
    deepspeed.init_distributed(dist_backend="gloo")
    rank = dist.get_rank()
    cfg = _model_config(args)
    cases = _cases(args)
    runners = []
    for label, method, settings, floor in cases:
        settings = dict(settings)
        torch.manual_seed(0)
        encoder = AutoModel.from_config(cfg, add_pooling_layer=False)
        model = XRobustModel(encoder, [HeadSpec("cls", "classification", 3)], dropout=0.0)
        ds = {"train_micro_batch_size_per_gpu": args.batch, "gradient_accumulation_steps": 1,
              "gradient_clipping": 1.0, "zero_allow_untested_optimizer": True, "steps_per_print": 10**9,
              "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0}}
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
        engine, *_ = deepspeed.initialize(model=model, optimizer=opt, config=ds)
        strategy = build_strategy(strategy_class(method).Config(**settings), engine.module)
        runners.append({"label": label, "method": method, "floor": floor, "engine": engine, "strategy": strategy,
                        "passes": _passes(method, settings), "times": [], "reductions": []})
    g = torch.Generator().manual_seed(rank)

    def batch():
        return {"head": "cls",
                "input_ids": torch.randint(3, cfg.vocab_size, (args.batch, args.seq_len), generator=g),
                "attention_mask": torch.ones(args.batch, args.seq_len, dtype=torch.long),
                "labels": torch.randint(0, 3, (args.batch,), generator=g)}

    def one_step(r):
        b = batch()
        dist.barrier()
        t0 = time.perf_counter()
        counts["n"] = 0
        r["strategy"].step(r["engine"], b)
        n = counts["n"]
        r["engine"].step()
        dist.barrier()
        return time.perf_counter() - t0, n

    load_before = os.getloadavg()
    n = len(runners)
    for rnd in range(args.warmup + args.rounds):
        for i in range(n):
            r = runners[(rnd + i) % n]  # rotating order: no method always runs right after another
            t, red = one_step(r)
            if rnd >= args.warmup:
                r["times"].append(t)
                r["reductions"].append(red)
    load_after = os.getloadavg()

    profile = {}
    if args.profile:
        from torch.profiler import ProfilerActivity, profile as torch_profile

        for r in runners:
            with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
                t0 = time.perf_counter()
                for _ in range(args.profile):
                    one_step(r)
                wall = time.perf_counter() - t0
            events = prof.key_averages()
            cats = {k: v / args.profile for k, v in _categorize(events).items()}
            cats["python_and_rest"] = max(0.0, wall / args.profile - sum(cats.values()))
            top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:12]
            cats["top_ops"] = [(e.key, e.count / args.profile, e.self_cpu_time_total / 1e6 / args.profile)
                               for e in top]
            profile[r["label"]] = cats

    for r in runners:
        r["strategy"].close()
        r["engine"].destroy()
    if rank == 0:
        meta = {"hidden": cfg.hidden_size, "layers": cfg.num_hidden_layers, "heads": cfg.num_attention_heads,
                "seq_len": args.seq_len, "batch_per_rank": args.batch, "ranks": dist.get_world_size(), "K": args.k,
                "rounds": args.rounds, "warmup_rounds": args.warmup, "torch_threads": torch.get_num_threads(),
                "load_average_before": load_before, "load_average_after": load_after, "cpu": cpu_model()}
        results = [{k: r[k] for k in ("label", "method", "floor", "passes", "times", "reductions")}
                   for r in runners]
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump({"meta": meta, "results": results, "profile": profile}, fh, indent=1)
    dist.barrier()
    return 0




def floor_for(kind, K):
    if kind == "freelb":
        return 1.15 * K
    if kind == "pgd":
        return 1.15 * (K + 1)
    if kind == "r3f":
        return 2.3
    return None


def summarize(data: dict) -> tuple[list[dict], bool]:
    """Per method: step-time and per-round ratio spread, floor and verdict (median ratio)."""
    meta, results = data["meta"], data["results"]
    plain = next(r for r in results if r["label"] == "plain")["times"]
    rows, ok = [], True
    for r in results:
        ratios = [t / p for t, p in zip(r["times"], plain)]
        limit = floor_for(r["floor"], meta["K"])
        med = statistics.median(ratios)
        within = limit is None or med <= limit
        ok &= within
        rows.append({"label": r["label"], "passes": r["passes"],
                     "step_s": (min(r["times"]), statistics.median(r["times"]), max(r["times"])),
                     "ratio": (min(ratios), med, max(ratios)), "floor": limit, "within": within,
                     "reductions_per_step": statistics.median(r["reductions"])})
    return rows, ok


def report(data: dict) -> bool:
    meta = data["meta"]
    rows, ok = summarize(data)
    print(f"model: XLM-R config hidden {meta['hidden']}, {meta['layers']} layers, {meta['heads']} attention heads; "
          f"sequence {meta['seq_len']}, micro-batch {meta['batch_per_rank']}/rank, {meta['ranks']} ranks ZeRO-3 fp32, "
          f"{meta['torch_threads']} thread(s)/rank; CPU: {meta['cpu']}")
    print(f"{meta['rounds']} interleaved rounds after {meta['warmup_rounds']} warm-up rounds; load average "
          f"{meta['load_average_before'][0]:.1f} before, {meta['load_average_after'][0]:.1f} after "
          f"(1-minute; {os.cpu_count()} CPUs)")
    print(f"{'method':<24}{'passes':>7}{'step s min/med/max':>24}{'x plain min/med/max':>24}{'floor':>7}"
          f"{'reductions':>12}  verdict")
    for r in rows:
        s, q = r["step_s"], r["ratio"]
        lim = f"{r['floor']:.2f}" if r["floor"] else "-"
        verdict = "" if r["floor"] is None else ("PASS" if r["within"] else "FAIL (median over floor)")
        print(f"{r['label']:<24}{r['passes']:>7}{s[0]:>8.3f}{s[1]:>8.3f}{s[2]:>8.3f}"
              f"{q[0]:>8.2f}{q[1]:>8.2f}{q[2]:>8.2f}{lim:>7}{r['reductions_per_step']:>12}  {verdict}")
    if data.get("profile"):
        print("\nprofile (rank 0), ms per optimizer step: collectives | ZeRO-3 gather/release hooks | "
              "matmul/attention | other ops | Python and the rest | total; per pass")
        for label, c in data["profile"].items():
            passes = next(r["passes"] for r in rows if r["label"] == label)
            total = sum(v for k, v in c.items() if k != "top_ops")
            print(f"{label:<24}{c['comm'] * 1e3:>8.1f}{c['zero3_hooks'] * 1e3:>8.1f}{c['matmul'] * 1e3:>8.1f}"
                  f"{c['other_ops'] * 1e3:>8.1f}"
                  f"{c['python_and_rest'] * 1e3:>8.1f}{total * 1e3:>9.1f}   {total * 1e3 / passes:>7.1f}/pass")
    if data.get("profile"):
        print("\nlargest self times per step (ms, calls): " + "; ".join(
            f"{label}: " + ", ".join(f"{n} {t * 1e3:.0f} ({c:.0f})" for n, c, t in prof["top_ops"][:5])
            for label, prof in data["profile"].items()))
    print("\nresult:", "all floors met" if ok else "a floor is missed (exit status 1)")
    return ok


def run(args) -> int:
    if args.worker:
        return _worker(args)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "bench.json")
        threads = max(1, (os.cpu_count() or 2) // args.nproc)
        env = dict(os.environ, DS_ACCELERATOR=os.environ.get("DS_ACCELERATOR", "cpu"),
                   OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", str(threads)))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.nproc),
               "-m", "xrobust.bench.adversarial", "--worker", "--out", out,
               "--rounds", str(args.rounds), "--warmup", str(args.warmup), "--k", str(args.k),
               "--hidden", str(args.hidden), "--layers", str(args.layers), "--seq-len", str(args.seq_len),
               "--batch", str(args.batch), "--profile", str(args.profile)]
        if args.methods:
            cmd += ["--methods", args.methods]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0 or not os.path.exists(out):
            from xrobust.errors import XRobustError

            raise XRobustError(f"adversarial benchmark job failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
        with open(out, encoding="utf-8") as fh:
            data = json.load(fh)
    ok = report(data)
    if args.json:
        from xrobust.io import atomic_write_json

        atomic_write_json(args.json, data)
    return 0 if ok else 1


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(prog="xrobust bench adversarial")
    add_arguments(p)
    sys.exit(run(p.parse_args()))
