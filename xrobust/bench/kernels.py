"""`xrobust bench kernels`: time and effective bandwidth of the perturbation step per backend.

Effective bandwidth = bytes of the 3N lower bound (read grad, read delta, write delta: 12 bytes/element
with fp32 grad, 10 with bf16/fp16 grad) divided by the median time (and, as a second figure, the
minimum time, which on a shared machine approximates the uncontended run). The reference is a plain copy into a preallocated delta-sized tensor:
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
    parser.add_argument("--footprint-mb", type=float, default=256.0,
                        help="cycle through enough input copies to touch this many MB per round, so "
                             "timings reflect main memory rather than a warm last-level cache (default: %(default)s)")
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


def _time_interleaved(fns, device, warmup, repeats):
    """Median seconds per callable. Rounds run every callable once in turn, so load from other
    processes on a shared machine hits all of them alike and the ratios stay meaningful."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for fn in fns:
        for _ in range(warmup):
            fn()
    sync()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, acc in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            sync()
            acc.append(time.perf_counter() - t0)
    return [(statistics.median(t), min(t)) for t in times]


def cpu_model() -> str:
    """The CPU's model name as the benchmarks report it (/proc/cpuinfo, else platform)."""
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
        copies = max(1, int(args.footprint_mb * 2**20 // (8 * n)))
        gen = torch.Generator().manual_seed(0)
        deltas = [(0.01 * torch.randn(B, L, D, generator=gen)).to(device) for _ in range(copies)]
        grads = [torch.randn(B, L, D, generator=gen).to(device=device, dtype=grad_dtype) for _ in range(copies)]
        mask = torch.ones(B, L, dtype=torch.long, device=device)
        mask[B // 2:, (3 * L) // 4:] = 0  # some padding, as in a length-grouped batch
        counter = [0]

        def next_index():
            counter[0] += 1
            return counter[0] % copies

        def make_step(backend):
            def step():
                i = next_index()
                perturbation_step(deltas[i], grads[i], mask, step_size=0.1, max_norm=0.3, norm=args.norm,
                                  granularity=args.granularity, backend=backend)
            return step

        dsts = [torch.empty_like(deltas[0]) for _ in range(copies)]

        def copy():
            i = next_index()
            dsts[i].copy_(deltas[i])

        fns = [make_step(backend) for backend in backends] + [copy]
        fns[-2]()  # the first call of a compiled backend builds it: keep that out of the timings
        timings = _time_interleaved(fns, device, args.warmup, args.repeats)
        for name, (t, t_min) in zip(backends + ["copy"], timings):
            per_element = 8 if name == "copy" else 8 + grads[0].element_size()
            results.append(dict(shape=[B, L, D], backend=name, median_s=t, min_s=t_min,
                                gbps=per_element * n / t / 1e9, gbps_at_min=per_element * n / t_min / 1e9,
                                bytes_per_element=per_element))
        del deltas, grads, dsts

    machine = cpu_model() if device.type == "cpu" else torch.cuda.get_device_name(device)
    report = dict(device=device.type, machine=machine, threads=torch.get_num_threads(), norm=args.norm,
                  granularity=args.granularity, grad_dtype=args.grad_dtype, warmup=args.warmup,
                  repeats=args.repeats, footprint_mb=args.footprint_mb, torch=torch.__version__, results=results)
    print(f"device={device.type} ({machine}) threads={report['threads']} norm={args.norm} "
          f"granularity={args.granularity} grad={args.grad_dtype} median of {args.repeats}")
    print(f"{'shape':<14}{'backend':<10}{'median ms':>10}{'GB/s':>7}{'% copy':>8}{'x eager':>9}"
          f"{'min ms':>9}{'GB/s':>7}{'% copy':>8}")
    for r in results:
        same = [x for x in results if x["shape"] == r["shape"]]
        copy = next(x for x in same if x["backend"] == "copy")
        eager = next(x for x in same if x["backend"] == "eager")
        shape = "x".join(map(str, r["shape"]))
        rel = "" if r["backend"] == "copy" else f"{100 * r['gbps'] / copy['gbps']:.0f}%"
        rel_min = "" if r["backend"] == "copy" else f"{100 * r['gbps_at_min'] / copy['gbps_at_min']:.0f}%"
        speed = "" if r["backend"] == "copy" else f"{eager['median_s'] / r['median_s']:.1f}"
        print(f"{shape:<14}{r['backend']:<10}{1e3 * r['median_s']:>10.3f}{r['gbps']:>7.1f}{rel:>8}{speed:>9}"
              f"{1e3 * r['min_s']:>9.3f}{r['gbps_at_min']:>7.1f}{rel_min:>8}")
    if args.json:
        from xrobust.io import atomic_write_json

        atomic_write_json(args.json, report)
    return 0
