"""`xrobust bench kernels`: time and effective bandwidth of the perturbation step per backend.

Effective bandwidth = 12 bytes/element (the 3N fp32 lower bound: read grad, read delta, write delta)
divided by the median time. The reference is a plain copy into a preallocated delta-sized tensor:
read N + write N floats, 8 bytes/element / time, on the same device and thread count.
"""

from __future__ import annotations

import platform
import statistics
import time

import torch

from xrobust.errors import XRobustError

DEFAULT_SHAPES = "32x128x1024,8x384x1024"


def add_arguments(parser) -> None:
    parser.add_argument("--shapes", default=DEFAULT_SHAPES, help="comma-separated BxLxD (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (cuda when available)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: all cores torch sees)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--norm", default="l2", choices=["l2", "linf"])
    parser.add_argument("--granularity", default="example", choices=["example", "token"])
    parser.add_argument("--grad-dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON")


def _parse_shapes(text):
    shapes = []
    for item in text.split(","):
        try:
            B, L, D = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise XRobustError(f"--shapes: {item!r} is not BxLxD (e.g. 32x128x1024)") from None
        if min(B, L, D) < 1:
            raise XRobustError(f"--shapes: {item!r} has a zero dimension")
        shapes.append((B, L, D))
    return shapes


def _time(fn, device, warmup, repeats):
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run(args) -> int:
    from xrobust.kernels import perturbation_step

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise XRobustError("--device cuda: no CUDA device is available")
    backends = ["eager", "compiled"] if device.type == "cpu" else ["eager", "triton"]
    grad_dtype = getattr(torch, args.grad_dtype)
    results = []
    for B, L, D in _parse_shapes(args.shapes):
        n = B * L * D
        gen = torch.Generator().manual_seed(0)
        delta = (0.01 * torch.randn(B, L, D, generator=gen)).to(device)
        grad = torch.randn(B, L, D, generator=gen).to(device=device, dtype=grad_dtype)
        mask = torch.ones(B, L, dtype=torch.long, device=device)
        mask[B // 2:, (3 * L) // 4:] = 0  # some padding, as in a length-grouped batch
        for backend in backends:
            def step(backend=backend):
                perturbation_step(delta, grad, mask, step_size=0.1, max_norm=0.3, norm=args.norm,
                                  granularity=args.granularity, backend=backend)
            step()  # first call builds/compiles outside the timed region
            t = _time(step, device, args.warmup, args.repeats)
            results.append(dict(shape=[B, L, D], backend=backend, median_s=t, gbps=12 * n / t / 1e9,
                                bytes_per_element=12))
        dst = torch.empty_like(delta)
        t = _time(lambda: dst.copy_(delta), device, args.warmup, args.repeats)
        results.append(dict(shape=[B, L, D], backend="copy", median_s=t, gbps=8 * n / t / 1e9, bytes_per_element=8))

    machine = _cpu_model() if device.type == "cpu" else torch.cuda.get_device_name(device)
    report = dict(device=device.type, machine=machine, threads=torch.get_num_threads(), norm=args.norm,
                  granularity=args.granularity, grad_dtype=args.grad_dtype, warmup=args.warmup,
                  repeats=args.repeats, torch=torch.__version__, results=results)
    print(f"device={device.type} ({machine}) threads={report['threads']} norm={args.norm} "
          f"granularity={args.granularity} grad={args.grad_dtype} median of {args.repeats}")
    print(f"{'shape':<16}{'backend':<10}{'time ms':>10}{'GB/s':>9}{'% copy':>8}{'x eager':>9}")
    for r in results:
        same = [x for x in results if x["shape"] == r["shape"]]
        copy = next(x for x in same if x["backend"] == "copy")
        eager = next(x for x in same if x["backend"] == "eager")
        shape = "x".join(map(str, r["shape"]))
        rel = "" if r["backend"] == "copy" else f"{100 * r['gbps'] / copy['gbps']:.0f}%"
        speed = "" if r["backend"] == "copy" else f"{eager['median_s'] / r['median_s']:.1f}"
        print(f"{shape:<16}{r['backend']:<10}{1e3 * r['median_s']:>10.3f}{r['gbps']:>9.1f}{rel:>8}{speed:>9}")
    if args.json:
        from xrobust.io import atomic_write_json

        atomic_write_json(args.json, report)
    return 0
