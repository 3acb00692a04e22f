"""Canonical examples -> model features: checks, then the task format's featurizer
(`TaskFormat.featurizer`, xrobust.tasks.featurizers) over a `datasets.Dataset`; the lengths the batch
sampler reads. xrobust.data.cache keeps the output; xrobust.data.stats counts what did not fit.
"""

from __future__ import annotations

from xrobust.errors import ConfigError, DataError
from xrobust.tasks.formats import FORMATS


def featurize(
    examples,
    spec,
    tokenizer,
    *,
    max_length: int,
    doc_stride: int = 128,
    max_query_length: int = 64,
    train: bool,
    batch_size: int = 1000,
):
    """Featurize a `datasets.Dataset` of canonical examples for `spec.format`.

    `train` matters for span QA (start/end positions; prediction metadata otherwise) and for
    labels being required (classification, multiple choice, tagging).
    """
    fmt = getattr(spec, "format", None)
    name = getattr(spec, "name", "?")
    if fmt not in FORMATS:
        raise ConfigError(f"task {name!r}: format {fmt!r} has no featurizer; expected one of {', '.join(FORMATS)}")
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"task {name!r}: a fast tokenizer is required (offset mappings); got {type(tokenizer).__name__}")
    if max_length is None or int(max_length) < 4:
        raise ConfigError(f"task {name!r}: max_length={max_length} is too small; expected an int >= 4")
    task_format = FORMATS[fmt]
    required = list(task_format.featurize_columns(train))
    missing = [c for c in required if c not in examples.column_names]
    if missing:
        raise DataError(
            f"task {name!r} ({fmt}): examples lack column(s) {missing}; expected {required}, got {examples.column_names}"
        )

    fn = task_format.featurizer(spec, tokenizer, max_length=int(max_length), doc_stride=int(doc_stride),
                                max_query_length=int(max_query_length), train=train)
    return examples.map(
        fn,
        batched=True,
        batch_size=batch_size,
        remove_columns=examples.column_names,
        desc=f"featurize {name} ({fmt})",
    )


def feature_lengths(features) -> list[int]:
    """Token length of each feature (longest choice for multiple choice): input of the batch sampler."""
    out = []
    for ids in features["input_ids"]:
        if ids and isinstance(ids[0], list):
            out.append(max(len(c) for c in ids))
        else:
            out.append(len(ids))
    return out
