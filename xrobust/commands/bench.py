"""`xrobust bench <area>`: benchmarks whose figures go into docs/BENCHMARKS.md.

Each area module exposes add_arguments(parser) and run(args) -> int.
"""

from __future__ import annotations

import importlib

AREAS = {
    "train": ("xrobust.bench.training", "training throughput and per-rank model-state memory"),
    "eval": ("xrobust.bench.evaluation", "evaluation padding throughput and retrieval mining"),
    "kernels": ("xrobust.bench.kernels", "fused perturbation-step bandwidth per backend"),
    "adversarial": ("xrobust.bench.adversarial", "step time of each method relative to plain training"),
    "gpu": ("xrobust.bench.gpu", "XLM-R Large ZeRO-3 bf16 on every visible GPU: step time, MFU, memory, "
            "kernel bandwidth, environment (--device cpu: dry run)"),
    "study": ("xrobust.bench.study", "study report (bootstrap intervals, tables, plots) on a synthetic grid"),
}


def add_parsers(sub) -> None:
    bench = sub.add_parser("bench", help="run a benchmark")
    areas = bench.add_subparsers(dest="area", required=True)
    for name, (module_name, help_text) in AREAS.items():
        parser = areas.add_parser(name, help=help_text)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            parser.set_defaults(func=lambda args, n=name: _missing(n))
            continue
        module.add_arguments(parser)
        parser.set_defaults(func=module.run)


def _missing(name: str) -> int:
    from xrobust.errors import XRobustError

    raise XRobustError(f"benchmark '{name}' is not available in this build")
