"""`xrobust bench gpu`: one command for a GPU machine (docs/BENCHMARKS.md, "GPU").

On every visible NVIDIA GPU (one rank each, launched with torchrun): XLM-R Large from its config
(random weights) under ZeRO-3 in bf16 at sequence length 128, plain and FreeLB-2 optimizer-step time,
tokens/s, model FLOP utilisation and peak memory per device; then the fused perturbation kernels'
bandwidth against a device copy of the same bytes (Triton vs eager, `xrobust bench kernels`); and the
environment. `--device cpu` runs the same code as a dry run: the demo-sized model on 2 CPU ranks.

MFU = model FLOPs per second / (bf16 dense peak per device x devices). Model FLOPs per token, forward
plus backward: 6 N + 12 L s d, with N the weights of the encoder's linear layers (a matmul costs
2 FLOPs per weight and token forward, 4 backward; embeddings are lookups and cost none), L layers,
s the sequence length, d the hidden size (attention scores and their weighted sum: 4 s d per layer
and token forward). A FreeLB-K step runs K forward/backward passes: K times the FLOPs of a plain step.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..errors import XRobustError
from .kernels import cpu_model
from .models import count_weights, model_config, train_flops_per_token

# bf16 dense tensor-core peak per GPU, TFLOP/s, from NVIDIA's datasheets (the "with sparsity" figures
# halved). Matched against torch.cuda.get_device_name() as whole words, the most specific name first.
BF16_DENSE_PEAK_TFLOPS = (
    ("H200 NVL", 835.5, "H200 NVL"),
    ("GH200", 989.4, "GH200 Grace Hopper"),
    ("H200", 989.4, "H200 SXM"),
    ("H100 NVL", 835.5, "H100 NVL"),
    ("H100 PCIe", 756.5, "H100 PCIe"),
    ("H100", 989.4, "H100 SXM"),
    ("B200", 2250.0, "HGX B200"),
    ("A100", 312.0, "A100 (SXM and PCIe)"),
    ("A800", 312.0, "A800"),
    ("L40S", 362.0, "L40S"),
    ("L40", 181.0, "L40"),
    ("L4", 121.0, "L4"),
    ("A10", 125.0, "A10"),
)

DEFAULTS = {  # per device kind: a full-size measurement on GPU, a quick dry run on CPU
    "cuda": dict(model="xlmr-large", micro_batch=32, steps=10, warmup=3, kernel_shapes="32x128x1024,8x384x1024",
                 kernel_repeats=30),
    "cpu": dict(model="tiny", micro_batch=4, steps=2, warmup=1, kernel_shapes="4x32x64", kernel_repeats=3),
}


def add_arguments(parser) -> None:
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                        help="auto: cuda when a GPU is visible; cpu is a dry run with a tiny model")
    parser.add_argument("--model", choices=("xlmr-large", "tiny"), help="default: xlmr-large on GPU, tiny on CPU")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--micro-batch", type=int, help="sequences per device per step (default 32 GPU, 4 CPU)")
    parser.add_argument("--steps", type=int, help="timed optimizer steps per mode (default 10 GPU, 2 CPU)")
    parser.add_argument("--warmup", type=int, help="untimed optimizer steps per mode (default 3 GPU, 1 CPU)")
    parser.add_argument("--freelb-steps", type=int, default=2, help="K of the FreeLB-K mode")
    parser.add_argument("--ranks", type=int, default=0, help="ranks (default: every visible GPU; 2 on CPU)")
    parser.add_argument("--peak-tflops", type=float, help="bf16 dense peak per device, TFLOP/s (default: the table)")
    parser.add_argument("--kernel-shapes", help="BxLxD list for the kernel bandwidth part")
    parser.add_argument("--kernel-repeats", type=int)
    parser.add_argument("--time-limit", type=float, default=420.0,
                        help="seconds the training job may take before it is stopped (default: %(default)s)")
    parser.add_argument("--json", help="also write every figure to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)


# -- peak ------------------------------------------------------------------------------------------

def bf16_peak(device_name: str) -> tuple[float, str] | None:
    """(TFLOP/s, datasheet name) for a GPU name, or None when the table does not know it."""
    for key, tflops, source in BF16_DENSE_PEAK_TFLOPS:
        if re.search(rf"(^|[\s-]){re.escape(key)}($|[\s-])", device_name):
            return tflops, source
    return None


# -- environment ------------------------------------------------------------------------------------

def environment(cuda: bool) -> dict:
    import deepspeed
    import torch
    import transformers

    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "deepspeed": deepspeed.__version__, "transformers": transformers.__version__, "triton": None,
           "cpu": cpu_model(), "gpus": [], "driver": None}
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        pass
    if cuda:
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            env["gpus"].append({"name": props.name, "memory_bytes": props.total_memory,
                                "capability": f"{props.major}.{props.minor}"})
        env["driver"] = _nvidia_smi("driver_version")
    return env


def _nvidia_smi(field: str) -> str | None:
    try:
        proc = subprocess.run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.splitlines()[0].strip() if proc.returncode == 0 and proc.stdout.strip() else None


# -- the training job (one process per rank) ------------------------------------------------------

def _worker(args) -> int:
    import torch
    from transformers import AutoModel

    from ..adversarial import MethodConfig, build_strategy
    from ..adversarial.strategies import FreeLBConfig
    from ..config.schema import PhaseConfig
    from ..modeling import HeadSpec, XRobustModel
    from .. import distributed as dist
    from ..training.engine import ZeroInitContext, build_engine, resolve_ds_config

    dist.init_distributed()
    cuda = torch.cuda.is_available()
    world, device = dist.world_size(), dist.device()
    dtype = torch.bfloat16 if cuda else torch.float32
    phase = PhaseConfig(tasks=["bench"], batch_size=args.micro_batch * world, micro_batch_size=args.micro_batch,
                        lr=1e-5, warmup_ratio=0.0)
    ds_config = resolve_ds_config("zero3" if cuda else "cpu", phase, world, dtype)
    zero_ctx = ZeroInitContext(ds_config)
    torch.manual_seed(0)
    config = model_config(args.model)
    t0 = time.perf_counter()
    encoder = AutoModel.from_config(config, dtype=dtype, add_pooling_layer=False)
    model = XRobustModel(encoder, [HeadSpec("bench", "classification", 3)], dropout=0.0)
    engine, _, _ = build_engine(model, phase, ds_config, total_steps=10**6)
    build_s = time.perf_counter() - t0
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    gen = torch.Generator().manual_seed(1 + dist.rank())

    def batch():
        shape = (args.micro_batch, args.seq_len)
        return {"head": "bench", "input_ids": torch.randint(5, config.vocab_size, shape, generator=gen).to(device),
                "attention_mask": torch.ones(shape, dtype=torch.long, device=device),
                "labels": torch.randint(0, 3, (args.micro_batch,), generator=gen).to(device)}

    runs = {}
    freelb = FreeLBConfig(steps=args.freelb_steps)
    for label, method_config in (("plain", MethodConfig()), (f"freelb-{args.freelb_steps}", freelb)):
        strategy = build_strategy(method_config, engine.module)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        times, losses = [], []
        for step in range(args.warmup + args.steps):
            b = batch()
            sync()
            dist.barrier()
            t = time.perf_counter()
            stats = strategy.step(engine, b)
            engine.step()
            sync()
            if step >= args.warmup:
                times.append(time.perf_counter() - t)
            losses.append(stats["loss"])
        strategy.close()
        memory = [torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()] if cuda else [None, None]
        gathered = dist.gather_objects({"times": times, "memory": memory})
        # a step ends when the slowest rank ends it
        step_times = [max(g["times"][i] for g in gathered) for i in range(len(times))]
        runs[label] = {"method": method_config.method, "passes": strategy.passes(method_config),
                       "step_s": statistics.median(step_times), "step_s_all": step_times, "losses": losses,
                       "peak_allocated_bytes_per_device": [g["memory"][0] for g in gathered],
                       "peak_reserved_bytes_per_device": [g["memory"][1] for g in gathered]}
    if dist.is_main():
        Path(args.out).write_text(json.dumps({"ranks": world, "dtype": str(dtype).replace("torch.", ""),
                                              "build_s": build_s, "environment": environment(cuda), "runs": runs}))
    dist.barrier()
    zero_ctx.close()
    return 0


def _launch(args, device: str, ranks: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "train.json"
        worker = ["-m", "xrobust.cli", "bench", "gpu", "--worker", "--out", str(out), "--device", device,
                  "--model", args.model, "--seq-len", str(args.seq_len), "--micro-batch", str(args.micro_batch),
                  "--steps", str(args.steps), "--warmup", str(args.warmup), "--freelb-steps", str(args.freelb_steps)]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks), *worker]
        env = dict(os.environ, DS_ACCELERATOR=device)
        if device == "cpu":
            env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) // ranks)))
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.time_limit)
        except subprocess.TimeoutExpired:
            raise XRobustError(f"bench gpu: the training job took more than --time-limit {args.time_limit:.0f} s "
                               "(fewer --steps or a smaller --micro-batch make it shorter)") from None
        if proc.returncode != 0 or not out.is_file():
            raise XRobustError(f"bench gpu: the {ranks}-rank training job failed (exit {proc.returncode}):\n"
                               f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
        return json.loads(out.read_text())


def _kernels(args, device: str) -> dict:
    from . import kernels as kernel_bench

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "kernels.json"
        ns = argparse.Namespace(shapes=args.kernel_shapes, device=device, threads=0, warmup=3,
                                repeats=args.kernel_repeats, norm="l2", granularity="example", grad_dtype="float32",
                                footprint_mb=256.0, json=str(out))
        kernel_bench.run(ns)
        return json.loads(out.read_text())


# -- the command ------------------------------------------------------------------------------------

def run(args) -> int:
    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise XRobustError("bench gpu --device cuda: no CUDA device is visible (use --device cpu for a dry run)")
    for key, value in DEFAULTS[device].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.worker:
        return _worker(args)
    ranks = args.ranks or (torch.cuda.device_count() if device == "cuda" else 2)
    t_start = time.perf_counter()
    train = _launch(args, device, ranks)
    env = train.pop("environment")

    config = model_config(args.model)
    parameters, n_matmul = count_weights(config)
    layers, hidden = config.num_hidden_layers, config.hidden_size
    per_token = train_flops_per_token(n_matmul, layers, args.seq_len, hidden)
    formula = (f"6 N + 12 L s d = 6 x {n_matmul:,} + 12 x {layers} x {args.seq_len} x {hidden} = "
               f"{per_token:,} FLOPs per token (forward + backward; N: encoder linear-layer weights)")
    gpu_name = env["gpus"][0]["name"] if env["gpus"] else None
    peak = (args.peak_tflops, "--peak-tflops") if args.peak_tflops else (bf16_peak(gpu_name) if gpu_name else None)
    tokens_per_step = args.micro_batch * args.seq_len * ranks
    for r in train["runs"].values():
        r["tokens_per_s"] = tokens_per_step / r["step_s"]
        r["model_tflops"] = r["passes"] * per_token * r["tokens_per_s"] / 1e12
        r["mfu"] = r["model_tflops"] / (peak[0] * ranks) if peak else None
    report = {"device": device, "ranks": ranks, "model": args.model, "parameters": parameters,
              "seq_len": args.seq_len, "micro_batch_per_device": args.micro_batch, "timed_steps": args.steps,
              "warmup_steps": args.warmup, "dtype": train["dtype"], "build_s": train["build_s"],
              "flops": {"formula": formula, "per_token": per_token, "n_matmul": n_matmul, "layers": layers,
                        "hidden": hidden},
              "peak_tflops_per_device": peak[0] if peak else None, "peak_source": peak[1] if peak else None,
              "runs": train["runs"], "environment": env}
    _print(report)
    print("kernels: fused perturbation step (per-example L2, fp32 grad) against a device copy of the same bytes")
    report["kernels"] = _kernels(args, device)
    report["wall_s"] = time.perf_counter() - t_start
    print(f"total {report['wall_s']:.0f} s")
    if args.json:
        from ..io import atomic_write_json

        atomic_write_json(args.json, report)
    return 0


def _print(r: dict) -> None:
    env = r["environment"]
    gpus = ", ".join(g["name"] for g in env["gpus"]) or f"none (CPU: {env['cpu']})"
    print(f"environment: {gpus}; driver {env['driver']}, CUDA {env['cuda']}, torch {env['torch']}, "
          f"DeepSpeed {env['deepspeed']}, transformers {env['transformers']}, triton {env['triton']}")
    print(f"model: {r['model']} ({r['parameters']:,} parameters), ZeRO-3 {r['dtype']}, seq {r['seq_len']}, "
          f"micro-batch {r['micro_batch_per_device']} x {r['ranks']} rank(s); median of {r['timed_steps']} steps "
          f"after {r['warmup_steps']}; engine built in {r['build_s']:.1f} s")
    print(f"FLOPs: {r['flops']['formula']}; FreeLB-K counts K passes")
    if r["peak_tflops_per_device"]:
        print(f"MFU = model TFLOP/s / ({r['peak_tflops_per_device']} TFLOP/s bf16 dense per device "
              f"[{r['peak_source']}] x {r['ranks']})")
    else:
        print("MFU: no bf16 peak known for this device (give --peak-tflops)")
    print(f"{'mode':<10}{'step s':>9}{'tokens/s':>11}{'TFLOP/s':>9}{'MFU':>7}{'peak alloc GiB/dev':>20}"
          f"{'peak reserved GiB/dev':>23}")
    for label, run in r["runs"].items():
        mfu = f"{100 * run['mfu']:.1f}%" if run["mfu"] is not None else "-"
        alloc = "/".join(f"{b / 2**30:.1f}" for b in run["peak_allocated_bytes_per_device"] if b is not None) or "-"
        res = "/".join(f"{b / 2**30:.1f}" for b in run["peak_reserved_bytes_per_device"] if b is not None) or "-"
        print(f"{label:<10}{run['step_s']:>9.3f}{run['tokens_per_s']:>11,.0f}{run['model_tflops']:>9.2f}{mfu:>7}"
              f"{alloc:>20}{res:>23}")
