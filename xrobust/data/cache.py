"""On-disk cache of featurized datasets.

The key covers everything that changes the features: the tokenizer (hash of its backend:
vocab, normalizer, specials + class; and the inputs it returns, which decide whether the features
carry token_type_ids), max_length, doc_stride, max_query_length, train mode,
the featurizer version, the task's format/labels/pair and the examples' datasets fingerprint.
Entries are written with save_to_disk into a temp dir and renamed into place, so a crash or a
concurrent writer never leaves a half-written entry that a later run would load.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from xrobust.data import featurize as _featurize_mod
from xrobust.data.tokenizer import tokenizer_fingerprint
from xrobust.errors import DataError
from xrobust.tasks.featurizers import FEATURIZER_VERSION


def cache_key(examples, spec, tokenizer, *, max_length, doc_stride=128, max_query_length=64, train: bool) -> str:
    fingerprint = getattr(examples, "_fingerprint", None)
    if not fingerprint:
        raise DataError(f"task {getattr(spec, 'name', '?')!r}: examples have no datasets fingerprint; "
                        "expected a datasets.Dataset")
    parts = {
        "featurizer_version": FEATURIZER_VERSION,
        "tokenizer": tokenizer_fingerprint(tokenizer),
        # whether token_type_ids come back is the tokenizer's model_input_names, not its backend
        "model_inputs": list(getattr(tokenizer, "model_input_names", None) or []),
        "format": spec.format,
        "labels": list(getattr(spec, "labels", None) or []),
        "pair": bool(getattr(spec, "pair", False)),
        "max_length": int(max_length),
        # stride and query length only shape span-QA features; kept for every format for simplicity
        "doc_stride": int(doc_stride),
        "max_query_length": int(max_query_length),
        "train": bool(train),
        "data": fingerprint,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def cached_featurize(examples, spec, tokenizer, cache_dir, *, max_length, doc_stride=128, max_query_length=64,
                     train: bool, **kw):
    """`featurize(...)` through the cache in `cache_dir`: loads the entry if present, else builds and stores it."""
    from datasets import load_from_disk

    key = cache_key(examples, spec, tokenizer, max_length=max_length, doc_stride=doc_stride,
                    max_query_length=max_query_length, train=train)
    cache_dir = Path(cache_dir)
    final = cache_dir / f"{_safe(spec.name)}-{'train' if train else 'eval'}-{key}"
    if final.is_dir():
        try:
            return load_from_disk(str(final))
        except Exception as exc:  # a corrupt entry (e.g. disk trouble): rebuild rather than fail the run
            shutil.rmtree(final, ignore_errors=True)
            if final.exists():
                raise DataError(f"feature cache entry {final} is unreadable ({exc}) and could not be removed") from exc

    feats = _featurize_mod.featurize(examples, spec, tokenizer, max_length=max_length, doc_stride=doc_stride,
                                     max_query_length=max_query_length, train=train, **kw)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        feats.save_to_disk(str(tmp / "data"))
        try:
            os.rename(tmp / "data", final)
        except OSError:
            if not final.is_dir():  # not a lost race with another writer: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    # reload from disk: memory-mapped, and identical to what the next run will get
    return load_from_disk(str(final))


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))
