"""`xrobust bench eval`: evaluation benchmarks.

Implemented: retrieval mining (Tatoeba nearest neighbour, BUCC margin mining) on random
embeddings. Peak memory is the resident-set-size (RSS) high-water mark above the level measured
just before each search, sampled from /proc/self/statm every 2 ms in a thread and cross-checked
with the kernel's ru_maxrss; tracemalloc is not used because it misses torch's allocations.

Hook: `bench_padding(args)` (length-grouped dynamic padding vs fixed max-length padding) returns
None until the featurizers/model exist; its dict then goes under the "padding" key of the output.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import threading
import time

import numpy as np
import torch

from xrobust.io import atomic_write_json

from . import retrieval as R

TIME_FLOOR_S = 60.0
MEMORY_FLOOR_BYTES = 2 * 1024**3


def add_arguments(parser) -> None:
    parser.add_argument("--n", type=int, default=10_000, help="sentences per side (default 10000)")
    parser.add_argument("--dim", type=int, default=1024, help="embedding width (default 1024)")
    parser.add_argument("--k", type=int, default=4, help="BUCC margin neighbourhood (default 4)")
    parser.add_argument("--backend", default="torch", choices=["torch", "faiss", "auto"])
    parser.add_argument("--query-block", type=int, default=R.DEFAULT_QUERY_BLOCK)
    parser.add_argument("--db-block", type=int, default=R.DEFAULT_DB_BLOCK)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", help="also write the JSON result here")


class PeakRSS:
    """RSS high-water mark above the level at __enter__, sampled in a background thread."""

    def __init__(self, interval: float = 0.002):
        self.interval = interval
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.peak = 0
        self._stop = threading.Event()

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.interval)

    def __enter__(self):
        self.base = self._rss()
        self.peak = self.base
        self.maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.delta = self.peak - self.base
        # ru_maxrss only grows: its increase is a lower bound of the peak above an older maximum.
        self.maxrss_delta = max(0, maxrss - self.maxrss_before)
        return False


def _measure(fn) -> dict:
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        fn()
        seconds = time.perf_counter() - t0
    return {"seconds": round(seconds, 3), "peak_rss_delta_bytes": mem.delta,
            "peak_rss_delta_mib": round(mem.delta / 2**20, 1), "maxrss_delta_bytes": mem.maxrss_delta,
            "pass": seconds < TIME_FLOOR_S and mem.delta < MEMORY_FLOOR_BYTES}


def bench_retrieval(args) -> dict:
    rng = np.random.default_rng(args.seed)
    x = rng.standard_normal((args.n, args.dim), dtype=np.float32)
    y = rng.standard_normal((args.n, args.dim), dtype=np.float32)
    ids_x, ids_y = [f"x-{i}" for i in range(args.n)], [f"y-{i}" for i in range(args.n)]
    kw = {"backend": args.backend, "query_block": args.query_block, "db_block": args.db_block}
    tatoeba = _measure(lambda: R.tatoeba_retrieve(x, y, **kw))
    bucc = _measure(lambda: R.margin_candidates(x, y, ids_x, ids_y, k=args.k, **kw))
    return {"n": args.n, "dim": args.dim, "k": args.k, "backend": args.backend,
            "query_block": args.query_block, "db_block": args.db_block,
            "tatoeba": tatoeba, "bucc": bucc,
            "floors": {"seconds": TIME_FLOOR_S, "peak_rss_delta_bytes": MEMORY_FLOOR_BYTES}}


def bench_padding(args) -> dict | None:
    """Hook: length-grouped dynamic padding vs fixed max-length padding throughput.

    Returns None until implemented; a dict result is stored under the "padding" key."""
    return None


def run(args) -> int:
    result = {
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__},
        "retrieval": bench_retrieval(args),
    }
    padding = bench_padding(args)
    if padding is not None:
        result["padding"] = padding
    print(json.dumps(result, indent=2))
    if args.output:
        atomic_write_json(args.output, result)
    ok = result["retrieval"]["tatoeba"]["pass"] and result["retrieval"]["bucc"]["pass"]
    return 0 if ok else 1
