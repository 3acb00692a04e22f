"""`xrobust bench eval`: evaluation benchmarks.

Implemented: retrieval mining (Tatoeba nearest neighbour, BUCC margin mining) on random
embeddings. Peak memory is the resident-set-size (RSS) high-water mark above the level measured
just before each search, sampled from /proc/self/statm every 2 ms in a thread and cross-checked
with the kernel's ru_maxrss; tracemalloc is not used because it misses torch's allocations.

Padding: evaluation forward throughput (examples/s) with length-grouped dynamic padding (the
batches of predict.forward_outputs: length-sorted, padded to each batch's longest) against fixed
max-length padding (every batch padded to max_length), on the same features of the demo world's
dev sets in all languages, with the demo model config and random weights. Result under "padding".
"""

from __future__ import annotations

import json
import os
import platform
import resource
import threading
import time
from pathlib import Path

import numpy as np
import torch

from xrobust.evaluation import retrieval as R
from xrobust.io import atomic_write_json

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
    pad = parser.add_argument_group("padding throughput")
    pad.add_argument("--padding-task", default="demo_xnli", choices=["demo_xnli", "demo_xqa"],
                     help="demo task whose dev sets (all languages) are evaluated (default demo_xnli)")
    pad.add_argument("--padding-world", help="an existing demo world directory (default: build a small one in a "
                                             "temporary directory)")
    pad.add_argument("--padding-batch-size", type=int, default=64, help="examples per forward (default 64)")
    pad.add_argument("--padding-max-length", type=int, default=128,
                     help="fixed padding length and featurization limit (default 128, the demo model's maximum)")
    pad.add_argument("--padding-repeats", type=int, default=3, help="timed passes per mode; the fastest counts")
    pad.add_argument("--no-padding", action="store_true", help="skip the padding benchmark")


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


PADDING_FLOOR_SPEEDUP = 2.0
# world sizes for the benchmark when no world is given: full dev sets, a smaller MLM corpus (only
# the tokenizer is trained from it; no pretraining happens here)
_PADDING_WORLD_SIZES = {"dev": 200, "test": 20, "train": 50, "tatoeba": 20, "corpus_mono": 500,
                        "corpus_parallel": 1000, "corpus_codeswitch": 1000}


def _padding_data(args, root):
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from xrobust.data.featurize import featurize
    from xrobust.data.loading import load_examples
    from xrobust.demo.world import build_world, world_paths
    from xrobust.errors import DataError
    from xrobust.modeling.model import XRobustModel, head_spec_for
    from xrobust.tasks import get_task

    if args.padding_world:  # used as it is: build_world would regenerate a world of other sizes
        if not (Path(args.padding_world) / "world.json").is_file():
            raise DataError(f"--padding-world {args.padding_world}: no world.json; expected a directory written "
                            f"by `xrobust demo` (or build_world)")
        world = world_paths(Path(args.padding_world))
    else:
        world = build_world(root, seed=0, sizes=_PADDING_WORLD_SIZES)
    spec = get_task(args.padding_task)
    tokenizer = AutoTokenizer.from_pretrained(world["tokenizer_dir"])
    config = AutoConfig.from_pretrained(world["model_config_dir"])
    torch.manual_seed(args.seed)
    model = XRobustModel(AutoModel.from_config(config, add_pooling_layer=False), [head_spec_for(spec)], dropout=0.0)
    langs = list(spec.split_languages("dev"))
    feats = []
    for lang in langs:
        examples = load_examples(spec, "dev", lang, root=world["data_root"])
        # QA: the demo preset's window settings scaled to the model's length limit
        feats += list(featurize(examples, spec, tokenizer, max_length=args.padding_max_length, doc_stride=32,
                                max_query_length=16, train=False))
    return model.eval(), tokenizer, spec, langs, feats


def _timed_pass(model, batches, collate) -> tuple[float, list]:
    outs = []
    t0 = time.perf_counter()
    with torch.no_grad():
        for batch in batches:
            b = collate(batch)
            outs.append(model(head=b["head"], input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits)
    return time.perf_counter() - t0, outs


def bench_padding(args) -> dict | None:
    """Examples/s of the evaluation forward with dynamic (length-grouped) vs fixed max-length padding."""
    if getattr(args, "no_padding", False):
        return None
    import tempfile

    from xrobust.data.collate import Collator
    from xrobust.data.featurize import feature_lengths

    with tempfile.TemporaryDirectory(prefix="xrobust-padbench-") as tmp:
        model, tokenizer, spec, langs, feats = _padding_data(args, tmp)
    head = spec.head_name
    n, bs, max_len = len(feats), args.padding_batch_size, args.padding_max_length
    lengths = np.asarray(feature_lengths({"input_ids": [f["input_ids"] for f in feats]}))
    # dynamic: the batches forward_outputs builds (longest first, stable), padded per batch
    order = np.argsort(-lengths, kind="stable")
    dyn_batches = [[feats[i] for i in order[k:k + bs]] for k in range(0, n, bs)]
    # fixed: file order, every batch padded to max_length (grouping cannot matter there)
    fix_batches = [feats[k:k + bs] for k in range(0, n, bs)]
    modes = {"dynamic": (dyn_batches, Collator(tokenizer, head=head)),
             "fixed": (fix_batches, Collator(tokenizer, head=head, padding="max_length", max_length=max_len))}
    out: dict = {}
    logits: dict = {}
    for name, (batches, collate) in modes.items():
        _timed_pass(model, batches[:2], collate)  # warm-up: allocator, first-call dispatch
        times = []
        for _ in range(max(1, args.padding_repeats)):
            seconds, outs = _timed_pass(model, batches, collate)
            times.append(seconds)
        logits[name] = outs
        padded = sum(collate(b)["input_ids"].numel() for b in batches)
        best = min(times)
        out[name] = {"seconds": round(best, 4), "seconds_all": [round(t, 4) for t in times],
                     "examples_per_s": round(n / best, 1), "padded_tokens": int(padded),
                     "real_token_fraction": round(float(lengths.sum()) / padded, 3)}
    # the two modes must compute the same thing: compare the classification logits per feature
    same = None
    if spec.format == "classification":
        dyn = torch.cat(logits["dynamic"]).numpy()[np.argsort(order, kind="stable")]
        fix = torch.cat(logits["fixed"]).numpy()
        same = bool(np.allclose(dyn, fix, atol=1e-4)) and bool((dyn.argmax(-1) == fix.argmax(-1)).all())
    speedup = out["dynamic"]["examples_per_s"] / out["fixed"]["examples_per_s"]
    return {"task": spec.name, "split": "dev", "languages": langs, "features": n, "batch_size": bs,
            "max_length": max_len, "length_mean": round(float(lengths.mean()), 1),
            "length_p50_p90_max": [int(np.percentile(lengths, 50)), int(np.percentile(lengths, 90)),
                                   int(lengths.max())],
            "model": "demo config, random weights, fp32, eval mode", **out, "speedup": round(speedup, 2),
            "same_outputs": same, "floor_speedup": PADDING_FLOOR_SPEEDUP,
            "load_average_1m": round(os.getloadavg()[0], 2), "torch_threads": torch.get_num_threads(),
            "pass": speedup >= PADDING_FLOOR_SPEEDUP and same is not False}


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
    ok = ok and (padding is None or padding["pass"])
    return 0 if ok else 1
