"""`xrobust bench study`: `study report` on a synthetic grid, by default 300 cells (30 intermediate x 10
methods) x 3 seeds x the 9 XTREME tasks x 40 languages x 1,000 test examples, 10,000 bootstrap samples.

Setup (not timed): one per-example cache file per run, as `study report` keeps them under cache/
(accuracy-like 0/100 scores for classification, retrieval and QA; per-sentence entity counts for
tagging and BUCC), with per-cell and per-seed effects on top of per-example difficulty. Timed: reading
those caches, per-cell statistics and the moments of every comparison (each cell against the baseline
and each method against plain training), the bootstrap intervals, and writing report.md, the CSVs,
report.json and the PNGs. The per-run reading of prediction files that fills the caches happens once
per run (in `--workers` processes) and is not part of this figure.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

XTREME = ("xnli", "pawsx", "udpos", "panx", "xquad", "mlqa", "tydiqa", "bucc2018", "tatoeba")
RATIO = ("udpos", "panx", "bucc2018")  # F1 over entities / pairs: per-sentence counts


def add_arguments(parser) -> None:
    parser.add_argument("--intermediate", type=int, default=30, help="intermediate values (rows)")
    parser.add_argument("--methods", type=int, default=10, help="methods; cells = intermediate x methods")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--languages", type=int, default=40, help="languages per task (9 XTREME tasks)")
    parser.add_argument("--examples", type=int, default=1000, help="test examples per task and language")
    parser.add_argument("--samples", type=int, default=10000, help="bootstrap replicates")
    parser.add_argument("--out", help="folder for the caches and the report (default: a temporary folder, removed)")
    parser.add_argument("--json", help="also write the figures to this file")


def _write_caches(root: Path, intermediate, methods, seeds, languages, n) -> None:
    from ..study.examples import LanguageScores, write_cache

    rng = np.random.default_rng(0)
    groups = [(t, l) for t in XTREME for l in languages]
    difficulty = rng.normal(size=(len(groups), n))
    gold = rng.integers(1, 4, size=(len(groups), n)).astype(np.float32)  # entities per sentence
    for i, inter in enumerate(intermediate):
        for j, method in enumerate(methods):
            effect = 0.05 * i / len(intermediate) + 0.02 * j / len(methods)
            for seed in seeds:
                shift = effect + rng.normal(scale=0.05)
                p = 1 / (1 + np.exp(-(difficulty + shift)))
                right = rng.random(p.shape) < p
                scores = {}
                for g, key in enumerate(groups):
                    if key[0] in RATIO:
                        tp = np.minimum(gold[g], np.round(gold[g] * p[g]))
                        num, den = 200 * tp, gold[g] + tp + right[g]
                    else:
                        num, den = 100.0 * right[g], np.ones(n, dtype=np.float32)
                    scores[key] = LanguageScores(float(num.sum() / den.sum()), num.astype(np.float32),
                                                 den.astype(np.float32), f"gold-{key[0]}-{key[1]}")
                write_cache(root / f"{inter}-{method}-s{seed}.npz", scores, "bench")


def run(args) -> int:
    from ..study.examples import read_cache
    from ..study.report import Cell, Meta, RunScores, analyse, run_scores, write_report

    intermediate = ["none"] + [f"inter{i:02d}" for i in range(1, args.intermediate)]
    methods = ["none"] + [f"method{j:02d}" for j in range(1, args.methods)]
    seeds = list(range(1, args.seeds + 1))
    languages = [f"l{k:02d}" for k in range(args.languages)]
    with tempfile.TemporaryDirectory(prefix="xrobust-bench-study-") as tmp:
        root = Path(args.out) if args.out else Path(tmp)
        caches = root / "cache"
        caches.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        _write_caches(caches, intermediate, methods, seeds, languages, args.examples)
        setup = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in caches.iterdir())

        def load(inter: str, method: str) -> Cell:
            cell = Cell(inter, method)
            for seed in seeds:
                scores = run_scores(read_cache(caches / f"{inter}-{method}-s{seed}.npz"))
                cell.runs[seed] = RunScores(*({k: v[i] for k, v in scores.items()} for i in range(3)))
            return cell

        meta = Meta("bench", ("none", "none"), seeds, intermediate, methods, {t: languages for t in XTREME})
        timings: dict = {}
        cpu0, t1 = time.process_time(), time.perf_counter()
        report = analyse(meta, load, samples=args.samples, seed=0, confidence=0.95, timings=timings)
        t2 = time.perf_counter()
        write_report(report, root / "report")
        total, cpu = time.perf_counter() - t1, time.process_time() - cpu0
    rows = sum(len(body) for c in report["comparisons"] for body in c["rows"].values())
    result = {"cells": len(intermediate) * len(methods), "seeds": len(seeds), "tasks": len(XTREME),
              "languages": len(languages), "examples": args.examples, "samples": args.samples,
              "comparisons": len(report["comparisons"]), "intervals": rows, "cache_bytes": size,
              "setup_s": setup, **timings, "write_s": total - (t2 - t1), "total_s": total, "process_cpu_s": cpu, "threads": os.environ.get("OMP_NUM_THREADS", "default"),
              "load_average": os.getloadavg()}
    print(f"{result['cells']} cells x {len(seeds)} seeds x {len(XTREME)} tasks x {len(languages)} languages x "
          f"{args.examples} examples, {args.samples} bootstrap samples: {len(report['comparisons'])} comparisons, "
          f"{rows:,} intervals")
    print(f"setup (caches, {size / 2**20:,.0f} MiB, not timed): {setup:.1f} s")
    print(f"report: {total:.1f} s wall ({cpu:.1f} s CPU of this process) = cells and moments "
          f"{timings['cells_and_moments_s']:.1f} s + bootstrap {timings['bootstrap_s']:.1f} s + files "
          f"{result['write_s']:.1f} s; load average {result['load_average'][0]:.1f}")
    if args.json:
        from ..io import atomic_write_json

        atomic_write_json(args.json, result)
    return 0 if total < 60 else 1
