"""Canonical examples -> model features: the featurizer of each task format (`TaskFormat.featurizer`).

A featurizer is `builder(spec, tokenizer, *, max_length, doc_stride, max_query_length, train)`,
which checks its settings and returns the function `Dataset.map(batched=True)` runs (xrobust.data.featurize
calls it, caches its output and counts what it did). Input layouts are the canonical examples of
docs/ARCHITECTURE.md; outputs are lists of ints per feature (the collator pads). Every featurizer
keeps `example_id` so predictions can be mapped back to examples; all need a fast tokenizer.

What does not fit is counted in the features (xrobust.data.stats reads the counts), as XTREME
handles it: `truncated` (classification, multiple choice, retrieval: 1 when the text was cut to
max_length), `unk_words` (tagging: words fed as <unk> because they alone are longer than a window,
or the tokenizer erases them; each still gets its prediction), and span-QA training examples whose
answer is not at answer_start produce no feature (skipped, as XTREME's SQuAD preprocessing does).

Segment ids: when the tokenizer returns `token_type_ids` (BERT-style tokenizers; XLM-R's does not),
the features keep them, so the second text of a pair (classification pairs, each (prompt, choice) of
multiple choice, the context of span QA) reaches the encoder as segment 1. Tagging builds its
single-segment windows itself and leaves them out: the encoder's default, all zeros, is the same.

This module sits below xrobust.tasks.formats (which names each format's featurizer), so it owns
the label value the features and the losses share, IGNORE_INDEX.
"""

from __future__ import annotations

from typing import Any

from xrobust.errors import ConfigError, DataError

# The label of what the loss ignores: a non-first sub-token, a special token, an unlabeled example
# (torch cross_entropy's default ignore_index). Featurizers write it, the collator pads with it, the
# formats' losses and divergences skip it.
IGNORE_INDEX = -100

# Bump when any featurizer's output changes: part of the feature-cache key (xrobust.data.cache).
# 3: token_type_ids kept when the tokenizer returns them.
FEATURIZER_VERSION = "3"

SEGMENT_IDS = "token_type_ids"


# ---------------------------------------------------------------------------------------------
def _check_label(name: str, spec, example_id, label, n: int | None, what: str = "label") -> int:
    if label is None or not isinstance(label, int) or isinstance(label, bool):
        raise DataError(f"task {name!r}: example {example_id!r} has {what}={label!r}; expected an int index")
    if n is not None and not 0 <= label < n:
        raise DataError(f"task {name!r}: example {example_id!r} has {what}={label}; expected 0 <= {what} < {n}")
    return label


def _n_labels(spec) -> int | None:
    labels = getattr(spec, "labels", None)
    return len(labels) if labels else None


def _encoded(enc, rows=None) -> dict[str, list]:
    """input_ids and attention_mask of an encoding, and token_type_ids when the tokenizer made them;
    `rows` picks (a slice of) rows."""
    keys = ("input_ids", "attention_mask", SEGMENT_IDS) if SEGMENT_IDS in enc else ("input_ids", "attention_mask")
    return {k: enc[k] if rows is None else enc[k][rows] for k in keys}


def classification(spec, tokenizer, *, max_length, train, **_):
    name, pair, n = spec.name, bool(getattr(spec, "pair", False)), _n_labels(spec)

    def fn(batch):
        ids = batch["id"]
        if pair:
            for i, b in zip(ids, batch.get("text_b") or [None] * len(ids)):
                if b is None:
                    raise DataError(f"task {name!r} is a pair task but example {i!r} has text_b=None; expected a str")
            texts = (batch["text_a"], batch["text_b"])
            # longest_first trims the longer text token by token: neither side is dropped whole
            enc = tokenizer(*texts, truncation="longest_first", max_length=max_length)
        else:
            texts = (batch["text_a"],)
            enc = tokenizer(*texts, truncation=True, max_length=max_length)
        labels = []
        for i, lab in zip(ids, batch["label"]):
            if lab is None or (lab == -1 and not train):  # unlabeled test split
                labels.append(IGNORE_INDEX)
            else:
                labels.append(_check_label(name, spec, i, lab, n))
        return {**_encoded(enc), "labels": labels,
                "example_id": [str(i) for i in ids], "truncated": _cut(tokenizer, texts, max_length)}

    return fn


def _cut(tokenizer, texts, max_length: int) -> list[int]:
    """1 for each text (pair) longer than max_length tokens with special tokens, else 0."""
    full = tokenizer(*texts)["input_ids"]
    return [int(len(ids) > max_length) for ids in full]


def multiple_choice(spec, tokenizer, *, max_length, train, **_):
    name = spec.name

    def fn(batch):
        firsts, seconds, counts = [], [], []
        for i, prompt, choices in zip(batch["id"], batch["prompt"], batch["choices"]):
            if not choices:
                raise DataError(f"task {name!r}: example {i!r} has no choices; expected a non-empty list[str]")
            counts.append(len(choices))
            firsts += [prompt] * len(choices)
            seconds += list(choices)
        enc = tokenizer(firsts, seconds, truncation="longest_first", max_length=max_length)
        cut = _cut(tokenizer, (firsts, seconds), max_length)
        tokens: dict[str, list] = {k: [] for k in _encoded(enc)}
        labels, truncated, pos = [], [], 0
        for i, n, lab in zip(batch["id"], counts, batch["label"]):
            for key, rows in _encoded(enc, slice(pos, pos + n)).items():  # [n_choices][len] per example
                tokens[key].append(rows)
            truncated.append(max(cut[pos:pos + n]))
            pos += n
            if lab is None or (lab == -1 and not train):
                labels.append(IGNORE_INDEX)
            else:
                labels.append(_check_label(name, spec, i, lab, n))
        return {**tokens, "labels": labels, "example_id": [str(i) for i in batch["id"]], "truncated": truncated}

    return fn


def retrieval(spec, tokenizer, *, max_length, **_):
    def fn(batch):
        enc = tokenizer(batch["text"], truncation=True, max_length=max_length)
        return {**_encoded(enc), "example_id": [str(i) for i in batch["id"]],
                "truncated": _cut(tokenizer, (batch["text"],), max_length)}

    return fn


# ---------------------------------------------------------------------------------------------
# Span QA (SQuAD v1 recipe)
def _qa_specials(tokenizer) -> int:
    return tokenizer.num_special_tokens_to_add(pair=True)


def qa_min_max_length(tokenizer, doc_stride: int, max_query_length: int) -> int:
    """Smallest max_length for which windows of the context always advance: query + specials +
    doc_stride overlap + at least one new context token per window."""
    return max_query_length + _qa_specials(tokenizer) + doc_stride + 1


def _check_qa_lengths(name, tokenizer, max_length, doc_stride, max_query_length):
    if doc_stride is None or doc_stride < 0:
        raise ConfigError(f"task {name!r}: doc_stride={doc_stride} is invalid; expected an int >= 0")
    if max_query_length is None or max_query_length < 1:
        raise ConfigError(f"task {name!r}: max_query_length={max_query_length} is invalid; expected an int >= 1")
    need = qa_min_max_length(tokenizer, doc_stride, max_query_length)
    if max_length < need:
        raise ConfigError(
            f"task {name!r}: max_length={max_length} is too small for span QA; the minimum is {need} = "
            f"max_query_length ({max_query_length}) + special tokens ({_qa_specials(tokenizer)}) + doc_stride "
            f"({doc_stride}) + 1 context token; raise max_length or lower doc_stride / max_query_length"
        )


def _truncate_queries(tokenizer, questions: list[str], max_query_length: int) -> list[str]:
    """Cut each question at a token boundary so it keeps <= max_query_length tokens, without
    decoding ids back to text (decoding would change spacing and normalization)."""
    qs = [q.lstrip() for q in questions]  # leading spaces only waste tokens (SQuAD recipe)
    enc = tokenizer(qs, add_special_tokens=False, return_offsets_mapping=True)
    out = []
    for q, ids, offsets in zip(qs, enc["input_ids"], enc["offset_mapping"]):
        keep, n = max_query_length, len(ids)
        while n > max_query_length and keep > 0:
            # a prefix can re-tokenize into more pieces than it had inside the full text: cut shorter
            q_cut = q[: offsets[keep - 1][1]]
            n = len(tokenizer(q_cut, add_special_tokens=False)["input_ids"])
            keep -= 1
            q = q_cut if n <= max_query_length else q
        out.append(q)
    return out


def span_qa(spec, tokenizer, *, max_length, doc_stride, max_query_length, train, **_):
    name = spec.name
    _check_qa_lengths(name, tokenizer, max_length, doc_stride, max_query_length)

    def fn(batch):
        questions = _truncate_queries(tokenizer, batch["question"], max_query_length)
        enc = tokenizer(
            questions,
            batch["context"],
            truncation="only_second",
            max_length=max_length,
            stride=doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        out: dict[str, list[Any]] = {**{k: [] for k in _encoded(enc)}, "example_id": []}
        if train:
            out["start_positions"], out["end_positions"] = [], []
        else:
            out["offset_mapping"] = []
        answer_cache: dict[int, tuple[int, int] | None] = {}
        for f, ex in enumerate(enc["overflow_to_sample_mapping"]):
            seq = enc.sequence_ids(f)
            offsets = enc["offset_mapping"][f]
            if train:
                if ex not in answer_cache:
                    answer_cache[ex] = _answer_chars(name, batch["id"][ex], batch["context"][ex],
                                                     batch["answers"][ex])
                span = answer_cache[ex]
                if span is MISALIGNED:  # no feature: the example is skipped (xrobust.data.stats counts it)
                    continue
                s, e = (0, 0) if span is None else _char_span_to_tokens(offsets, seq, *span)
                out["start_positions"].append(s)
                out["end_positions"].append(e)
            else:
                out["offset_mapping"].append([list(o) if s == 1 else None for o, s in zip(offsets, seq)])
            for key, row in _encoded(enc, f).items():
                out[key].append(row)
            out["example_id"].append(str(batch["id"][ex]))
        return out

    return fn


MISALIGNED = "misaligned"  # _answer_chars: the answer text is not at answer_start


def _answer_chars(name, example_id, context: str, answers):
    """(start, end) character span of the first gold answer, end exclusive; None if unanswerable;
    MISALIGNED when the text is not at answer_start (loading already moved answers that were off by
    a few characters, so this answer is nowhere near: the example is skipped in training)."""
    texts, starts = (answers or {}).get("text") or [], (answers or {}).get("answer_start") or []
    if not texts:
        return None
    if len(starts) < 1:
        raise DataError(f"task {name!r}: example {example_id!r} has answers.text but no answers.answer_start")
    text, start = texts[0], int(starts[0])
    if context[start:start + len(text)] != text:
        return MISALIGNED
    return start, start + len(text)


def _char_span_to_tokens(offsets, seq_ids, start_char: int, end_char: int) -> tuple[int, int]:
    ctx = [i for i, s in enumerate(seq_ids) if s == 1]
    if not ctx or offsets[ctx[0]][0] > start_char or offsets[ctx[-1]][1] < end_char:
        return 0, 0  # the answer is not fully inside this window: point at <s>
    # last context token starting at or before the answer start (a bare "▁" piece shares its
    # successor's offsets, so "last" picks the piece that actually holds the character) ...
    start = max(i for i in ctx if offsets[i][0] <= start_char)
    # ... and the first context token at or after it that reaches the answer end
    end = min(i for i in ctx if i >= start and offsets[i][1] >= end_char)
    return start, end


# ---------------------------------------------------------------------------------------------
# Tagging
def tagging(spec, tokenizer, *, max_length, train, **_):
    name, n = spec.name, _n_labels(spec)
    n_special = tokenizer.num_special_tokens_to_add(pair=False)
    budget = max_length - n_special
    if budget < 1:
        raise ConfigError(f"task {name!r}: max_length={max_length} leaves no room for words; the minimum is {n_special + 1}")
    cls_id, sep_id, unk_id = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.unk_token_id

    def fn(batch):
        ids = batch["id"]
        words_batch = batch["tokens"]
        tags_batch = batch["tags"] if "tags" in batch else [None] * len(ids)
        enc = tokenizer(list(map(list, words_batch)), is_split_into_words=True, add_special_tokens=False)
        out: dict[str, list[Any]] = {k: [] for k in ("input_ids", "attention_mask", "labels", "example_id",
                                                     "word_ids", "n_words", "unk_words")}
        for b, (eid, words, tags) in enumerate(zip(ids, words_batch, tags_batch)):
            if tags is not None and len(tags) != len(words):
                raise DataError(f"task {name!r}: example {eid!r} has {len(words)} tokens but {len(tags)} tags; expected equal")
            # sub-token ids per word; a word the normalizer erases entirely (e.g. a lone zero-width
            # char) or one longer than a whole window becomes <unk> (as XTREME's preprocessing
            # does), so every word still gets exactly one prediction
            pieces: list[list[int]] = [[] for _ in words]
            for tok_id, w in zip(enc["input_ids"][b], enc.word_ids(b)):
                if w is not None:
                    pieces[w].append(tok_id)
            unk = [not p or len(p) > budget for p in pieces]
            pieces = [[unk_id] if u else p for p, u in zip(pieces, unk)]
            for lo, hi in _word_windows([len(p) for p in pieces], budget):
                input_ids, word_ids, labels = [cls_id], [-1], [IGNORE_INDEX]
                for w in range(lo, hi):
                    input_ids += pieces[w]
                    word_ids += [w] * len(pieces[w])
                    first = IGNORE_INDEX if tags is None else _check_label(name, spec, eid, tags[w], n, f"tags[{w}]")
                    labels += [first] + [IGNORE_INDEX] * (len(pieces[w]) - 1)
                input_ids.append(sep_id)
                word_ids.append(-1)
                labels.append(IGNORE_INDEX)
                out["input_ids"].append(input_ids)
                out["attention_mask"].append([1] * len(input_ids))
                out["labels"].append(labels)
                out["example_id"].append(str(eid))
                out["word_ids"].append(word_ids)  # -1 on special tokens
                out["n_words"].append(len(words))
                out["unk_words"].append(sum(unk[lo:hi]))
        return out

    return fn


def _word_windows(lengths: list[int], budget: int) -> list[tuple[int, int]]:
    """Greedy split of words into consecutive [lo, hi) windows of at most `budget` sub-tokens;
    an empty sentence still yields one (empty) window so the example is not lost."""
    windows, lo, used = [], 0, 0
    for w, n in enumerate(lengths):
        if used + n > budget:
            windows.append((lo, w))
            lo, used = w, 0
        used += n
    windows.append((lo, len(lengths)))
    return windows
