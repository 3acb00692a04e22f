"""`xrobust bench train`: training throughput and per-rank model-state memory, ZeRO-0 on 1 rank vs
ZeRO-3 on 2 ranks (demo model, CPU); with a GPU, XLM-R Large from its config under ZeRO-3 in bf16.

The parent process launches each configuration as its own job (plain python for 1 rank, torchrun
for 2) and collects the figures rank 0 writes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed optimizer steps")
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32, help="effective batch per optimizer step")
    parser.add_argument("--model", choices=("demo", "xlmr-large"), default="demo")
    parser.add_argument("--dtype", choices=("auto", "fp32", "bf16"), default="auto",
                        help="auto: bf16 on GPU, fp32 on CPU (as training chooses)")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # the ds config of a launched job
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)


def model_state_bytes(engine) -> int:
    """Bytes this rank holds for parameters and optimizer state (master weights, moments),
    counting each storage once: under ZeRO-3 only the rank's partitions exist."""
    import torch

    tensors = []
    for p in engine.module.parameters():
        tensors.append(getattr(p, "ds_tensor", None) if hasattr(p, "ds_tensor") else p)
    opt = engine.optimizer
    inner = getattr(opt, "optimizer", opt)
    for state in inner.state.values():
        tensors += [v for v in state.values() if torch.is_tensor(v)]
    for group in inner.param_groups:
        tensors += list(group["params"])
    for name in ("fp32_partitioned_groups_flat", "fp16_partitioned_groups_flat", "single_partition_of_fp32_groups"):
        tensors += [t for t in getattr(opt, name, None) or [] if torch.is_tensor(t)]
    seen, total = set(), 0
    for t in tensors:
        if t is None or t.numel() == 0:
            continue
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
    return total


def peak_rss_bytes() -> int | None:
    """This process's peak resident memory (Linux VmHWM), None where /proc is not there."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _worker(args) -> int:
    import torch

    from ..config.schema import PhaseConfig
    from ..modeling import HeadSpec, XRobustModel
    from .. import distributed as dist
    from ..training.engine import ZeroInitContext, build_engine, resolve_ds_config, resolve_dtype
    from .models import model_config

    dist.init_distributed()
    world = dist.world_size()
    dtype = resolve_dtype(args.dtype)
    micro = max(1, args.batch // world) if args.model == "demo" else 8
    phase = PhaseConfig(tasks=["bench"], batch_size=micro * world, micro_batch_size=micro, lr=1e-5)
    ds_config = resolve_ds_config(args.worker, phase, world, dtype)
    zero_ctx = ZeroInitContext(ds_config)
    torch.manual_seed(0)
    from transformers import AutoModel

    config = model_config(args.model)
    encoder = AutoModel.from_config(config, dtype=dtype, add_pooling_layer=False)
    model = XRobustModel(encoder, [HeadSpec("bench", "classification", 3)], dropout=0.0)
    steps = args.warmup + args.steps
    engine, _, _ = build_engine(model, phase, ds_config, total_steps=steps)
    gen = torch.Generator().manual_seed(1 + dist.rank())
    batch = {"head": "bench",
             "input_ids": torch.randint(5, config.vocab_size, (micro, args.seq_len), generator=gen).to(engine.device),
             "attention_mask": torch.ones(micro, args.seq_len, dtype=torch.long, device=engine.device),
             "labels": torch.randint(0, 3, (micro,), generator=gen).to(engine.device)}
    for step in range(steps):
        if step == args.warmup:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            dist.barrier()
            t0 = time.perf_counter()
        out = engine(**batch)
        engine.backward(out.loss)
        engine.step()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    dist.barrier()
    seconds = time.perf_counter() - t0
    mem = dist.gather_objects(model_state_bytes(engine))
    peaks = dist.gather_objects(peak_rss_bytes())
    if dist.is_main():
        examples = args.steps * phase.batch_size
        n_params = sum(p.ds_numel if hasattr(p, "ds_numel") else p.numel() for p in engine.module.parameters())
        result = {"zero_stage": ds_config["zero_optimization"]["stage"], "ranks": world, "model": args.model,
                  "parameters": n_params, "seq_len": args.seq_len, "batch": phase.batch_size,
                  "dtype": str(dtype).replace("torch.", ""), "examples_per_s": examples / seconds,
                  "tokens_per_s": examples * args.seq_len / seconds,
                  "model_state_bytes_per_rank": max(mem), "peak_rss_bytes_per_rank": peaks}
        if torch.cuda.is_available():
            from .models import count_weights, train_flops_per_token

            per_token = train_flops_per_token(count_weights(config)[1], config.num_hidden_layers, args.seq_len,
                                              config.hidden_size)
            flops = examples * args.seq_len * per_token / seconds
            result.update(device=torch.cuda.get_device_name(0), model_tflops=flops / 1e12)
        Path(args.out).write_text(json.dumps(result))
    zero_ctx.close()
    return 0


def _launch(args, ds: str, ranks: int) -> dict:
    out = Path(tempfile.mkstemp(suffix=".json")[1])
    worker = ["-m", "xrobust.cli", "bench", "train", "--worker", ds, "--out", str(out), "--model", args.model, "--dtype", args.dtype,
              "--steps", str(args.steps), "--warmup", str(args.warmup), "--seq-len", str(args.seq_len),
              "--batch", str(args.batch)]
    cmd = [sys.executable, *worker] if ranks == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks), *worker]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) // ranks))))
    env.setdefault("DS_ACCELERATOR", "cpu" if not _has_cuda() else "cuda")
    subprocess.run(cmd, env=env, check=True)
    result = json.loads(out.read_text())
    out.unlink()
    return result


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def run(args) -> int:
    if args.worker:
        return _worker(args)
    gpu = _has_cuda()
    if args.model == "xlmr-large":
        runs = {"zero3_1rank": _launch(args, "zero3" if gpu else "cpu", 1)}
    else:
        runs = {"zero0_1rank": _launch(args, "zero0", 1),
                "zero3_2ranks": _launch(args, "zero3" if gpu else "cpu", 2)}
    report = {"runs": runs}
    if "zero3_2ranks" in runs:
        ratio = runs["zero3_2ranks"]["model_state_bytes_per_rank"] / runs["zero0_1rank"]["model_state_bytes_per_rank"]
        report["memory_ratio_zero3_2ranks_vs_1rank"] = ratio
        report["memory_floor_met"] = ratio <= 0.6
    print(f"{'run':<14} {'params':>10} {'ex/s':>9} {'tok/s':>10} {'state MiB/rank':>15} {'peak RSS MiB/rank':>18}")
    for name, r in runs.items():
        peaks = "/".join(f"{b / 2**20:.0f}" for b in r["peak_rss_bytes_per_rank"] if b is not None) or "-"
        print(f"{name:<14} {r['parameters']:>10} {r['examples_per_s']:>9.1f} {r['tokens_per_s']:>10.0f} "
              f"{r['model_state_bytes_per_rank'] / 2**20:>15.2f} {peaks:>18}"
              + (f"  {r['model_tflops']:.1f} TFLOP/s" if "model_tflops" in r else ""))
    if "memory_ratio_zero3_2ranks_vs_1rank" in report:
        print(f"ZeRO-3 per-rank model state / 1 rank: {report['memory_ratio_zero3_2ranks_vs_1rank']:.3f} "
              f"(floor <= 0.6: {'met' if report['memory_floor_met'] else 'NOT met'})")
    if args.json:
        from ..io import atomic_write_json

        atomic_write_json(args.json, report)
    return 0 if report.get("memory_floor_met", True) else 1
