"""Per-dataset adapters: hub column layout -> canonical examples (docs/ARCHITECTURE.md).

An adapter names the columns it needs, optionally keeps only some rows (SNLI's unlabeled pairs,
one XNLI language, TyDiQA's English training ids) and converts a batch to canonical columns.
Labels leave an adapter as strings: the class name for a ClassLabel column (so the hub's own
label order never matters), else the value as written (a name or a digit string);
xrobust.data.loading maps and checks them against the task's label set in one place. Every
output row carries `row`, its index in the source, so errors can point at it.

The output schema is given to `datasets.map` explicitly: left to itself, map writes an output
column back through the input's feature when the names match, and a ClassLabel `label` column
would turn the names straight back into the hub's integers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import datasets

from xrobust.errors import DataError
from xrobust.tasks.formats import get_format

Batch = dict[str, list]


@dataclass(frozen=True)
class Context:
    lang: str
    id_prefix: str  # used when the source has no id column: "<task>-<split>-<lang>"
    # ClassLabel names of source columns, so hub integers become names before mapping
    class_names: dict[str, list[str]]


@dataclass(frozen=True)
class Adapter:
    name: str
    format: str  # the canonical layout it produces (a task format)
    required: tuple[str, ...]
    convert: Callable[[Batch, list[int], Context], Batch]
    keep: Callable[[Batch, Context], list[bool]] | None = None
    description: str = ""


_ROW = datasets.Value("int64")


def label_name(value: Any, names: list[str] | None) -> str | None:
    """A raw label as a string: a ClassLabel integer as its class name; anything else (a name, a
    digit string, or -1 = no gold label) as written. None stays None."""
    if value is None:
        return None
    if names is not None and isinstance(value, int) and 0 <= value < len(names):
        return names[value]
    return str(value)


def _ids(batch: Batch, column: str | None, rows: list[int], ctx: Context) -> list[str]:
    if column and column in batch:
        return [str(v) for v in batch[column]]
    return [f"{ctx.id_prefix}-{r}" for r in rows]


def _pair(a: str, b: str | None, label: str, id_col: str | None):
    def convert(batch: Batch, rows: list[int], ctx: Context) -> Batch:
        names = ctx.class_names.get(label)
        return {
            "id": _ids(batch, id_col, rows, ctx),
            "text_a": batch[a],
            "text_b": batch[b] if b else [None] * len(rows),
            "label": [label_name(v, names) for v in batch[label]],
        }
    return convert


def _squad(batch: Batch, rows: list[int], ctx: Context) -> Batch:
    answers = []
    for a in batch["answers"]:
        a = a or {}
        answers.append({"text": [str(t) for t in a.get("text", [])],
                        "answer_start": [int(s) for s in a.get("answer_start", [])]})
    return {"id": _ids(batch, "id", rows, ctx), "question": batch["question"],
            "context": batch["context"], "answers": answers}


def _hellaswag(batch: Batch, rows: list[int], ctx: Context) -> Batch:
    # `ctx` is ctx_a + ctx_b; every ending continues it. Test labels are "" (hidden).
    return {"id": _ids(batch, "ind", rows, ctx), "prompt": batch["ctx"],
            "choices": [list(e) for e in batch["endings"]],
            "label": [label_name(v, None) for v in batch["label"]]}


def _cosmos_qa(batch: Batch, rows: list[int], ctx: Context) -> Batch:
    prompts = [f"{c} {q}" for c, q in zip(batch["context"], batch["question"])]
    choices = [list(c) for c in zip(*(batch[f"answer{i}"] for i in range(4)))]
    return {"id": _ids(batch, "id", rows, ctx), "prompt": prompts, "choices": choices,
            "label": [label_name(v, None) for v in batch["label"]]}


def _commonsense_qa(batch: Batch, rows: list[int], ctx: Context) -> Batch:
    labels = []
    for row, choices, key in zip(rows, batch["choices"], batch["answerKey"]):
        keys = list(choices["label"])
        # The label is the position of answerKey among the choice letters (A..E).
        labels.append(str(keys.index(key)) if key in keys else key)
    return {"id": _ids(batch, "id", rows, ctx), "prompt": batch["question"],
            "choices": [list(c["text"]) for c in batch["choices"]], "label": labels}


def _tagging(tag_col: str):
    def convert(batch: Batch, rows: list[int], ctx: Context) -> Batch:
        names = ctx.class_names.get(tag_col)
        return {"id": _ids(batch, None, rows, ctx), "tokens": [list(t) for t in batch["tokens"]],
                "tags": [[label_name(v, names) for v in seq] for seq in batch[tag_col]]}
    return convert


def _bucc(batch: Batch, rows: list[int], ctx: Context) -> Batch:
    # bucc18 fills source_lang/target_lang with the official sentence ids ("de-000000013")
    return {"id": [str(v) for v in batch["source_lang"]], "text": batch["source_sentence"],
            "target_id": [str(v) for v in batch["target_lang"]],
            "target_text": batch["target_sentence"]}


def _tatoeba(batch: Batch, rows: list[int], ctx: Context) -> Batch:
    # Row r pairs source sentence r with English sentence r, so ids are positional. source_lang
    # holds a fragment of the machine path the hub's copy was built on (the same for every row):
    # never an id. Sentences keep the file's line ends there; the text is the line without it.
    return {"id": [f"{ctx.lang}-{r}" for r in rows],
            "text": [s.rstrip("\r\n") for s in batch["source_sentence"]],
            "target_id": [f"en-{r}" for r in rows],
            "target_text": [s.rstrip("\r\n") for s in batch["target_sentence"]]}


def _keep_labeled(batch: Batch, ctx: Context) -> list[bool]:
    return [v is not None and v != -1 and v != "-1" for v in batch["label"]]


def _keep_xnli_language(batch: Batch, ctx: Context) -> list[bool]:
    return [lang == ctx.lang for lang in batch["language"]]


# TyDiQA-GoldP example ids start with the language's English name ("english-123-0").
TYDIQA_ID_PREFIXES = {
    "ar": "arabic", "bn": "bengali", "en": "english", "fi": "finnish", "id": "indonesian",
    "ko": "korean", "ru": "russian", "sw": "swahili", "te": "telugu",
}


def _keep_tydiqa_language(batch: Batch, ctx: Context) -> list[bool]:
    prefix = TYDIQA_ID_PREFIXES.get(ctx.lang, ctx.lang) + "-"
    return [str(i).startswith(prefix) for i in batch["id"]]


_SQUAD_COLS = ("context", "question", "answers")

ADAPTERS: dict[str, Adapter] = {a.name: a for a in [
    Adapter("glue_mnli", "classification", ("premise", "hypothesis", "label"),
            _pair("premise", "hypothesis", "label", "idx"), _keep_labeled,
            "premise/hypothesis -> text_a/text_b; label 0-2; id = idx; unlabeled (-1) rows dropped"),
    Adapter("glue_qqp", "classification", ("question1", "question2", "label"),
            _pair("question1", "question2", "label", "idx"), _keep_labeled,
            "question1/question2 -> text_a/text_b; label 0-1; id = idx"),
    Adapter("glue_sst2", "classification", ("sentence", "label"),
            _pair("sentence", None, "label", "idx"), _keep_labeled,
            "sentence -> text_a (text_b None); label 0-1; id = idx"),
    Adapter("anli", "classification", ("premise", "hypothesis", "label"),
            _pair("premise", "hypothesis", "label", "uid"), _keep_labeled,
            "premise/hypothesis -> text_a/text_b; label 0-2; id = uid"),
    Adapter("snli", "classification", ("premise", "hypothesis", "label"),
            _pair("premise", "hypothesis", "label", None), _keep_labeled,
            "premise/hypothesis -> text_a/text_b; rows with label -1 (no gold) dropped"),
    Adapter("squad", "span_qa", _SQUAD_COLS, _squad, None, "id/question/context/answers unchanged"),
    Adapter("hellaswag", "multiple_choice", ("ctx", "endings", "label"), _hellaswag, None,
            "ctx -> prompt; endings -> choices; label string '0'-'3'; id = ind"),
    Adapter("cosmos_qa", "multiple_choice", ("context", "question", "answer0", "answer1",
                                             "answer2", "answer3", "label"), _cosmos_qa, None,
            "context + ' ' + question -> prompt; answer0..3 -> choices; label int"),
    Adapter("commonsense_qa", "multiple_choice", ("question", "choices", "answerKey"),
            _commonsense_qa, None,
            "question -> prompt; choices.text -> choices; answerKey's position in choices.label"),
    Adapter("xtreme_xnli", "classification",
            ("language", "sentence1", "sentence2", "gold_label"),
            _pair("sentence1", "sentence2", "gold_label", None), _keep_xnli_language,
            "rows of the requested language; sentence1/2 -> text_a/b; gold_label name"),
    Adapter("xtreme_pawsx", "classification", ("sentence1", "sentence2", "label"),
            _pair("sentence1", "sentence2", "label", None), None,
            "sentence1/2 -> text_a/b; label string '0'/'1'"),
    Adapter("xtreme_udpos", "tagging", ("tokens", "pos_tags"), _tagging("pos_tags"), None,
            "tokens; pos_tags (UPOS ClassLabel) -> tags"),
    Adapter("xtreme_panx", "tagging", ("tokens", "ner_tags"), _tagging("ner_tags"), None,
            "tokens; ner_tags (BIO ClassLabel) -> tags"),
    Adapter("xtreme_squad_layout", "span_qa", _SQUAD_COLS, _squad, None,
            "XQuAD/MLQA: SQuAD layout unchanged"),
    Adapter("xtreme_tydiqa", "span_qa", ("id",) + _SQUAD_COLS, _squad, _keep_tydiqa_language,
            "SQuAD layout; rows whose id starts with the language name ('english-...')"),
    Adapter("xtreme_bucc", "retrieval", ("source_sentence", "target_sentence", "source_lang",
                                         "target_lang"), _bucc, None,
            "source_sentence -> text, target_sentence -> English side; ids from source_lang/"
            "target_lang (the official sentence ids)"),
    Adapter("xtreme_tatoeba", "retrieval", ("source_sentence", "target_sentence"), _tatoeba, None,
            "source_sentence -> text, target_sentence -> English side, line ends dropped; "
            "positional ids (source_lang is not an id)"),
]}


def class_label_names(ds: datasets.Dataset) -> dict[str, list[str]]:
    """ClassLabel names per column (also for sequences of ClassLabel, as in PAN-X tags)."""
    out = {}
    for name, feat in ds.features.items():
        inner = getattr(feat, "feature", feat)
        if isinstance(inner, datasets.ClassLabel):
            out[name] = list(inner.names)
    return out


def apply_adapter(ds: datasets.Dataset, adapter: str | Adapter, ctx_lang: str, id_prefix: str,
                  origin: str) -> datasets.Dataset:
    """Run an adapter over `ds`; `origin` names the file or hub call in error messages."""
    if isinstance(adapter, str):
        if adapter not in ADAPTERS:
            raise DataError(f"{origin}: unknown adapter {adapter!r}; known: {', '.join(ADAPTERS)}")
        adapter = ADAPTERS[adapter]
    # Id columns are optional (positional ids replace them); content columns are not.
    missing = [c for c in adapter.required if c not in ds.column_names]
    if missing:
        raise DataError(
            f"{origin}: missing column(s) {', '.join(missing)} for the {adapter.name} layout "
            f"(expected {', '.join(adapter.required)}; found {', '.join(ds.column_names)})")
    ctx = Context(lang=ctx_lang, id_prefix=id_prefix, class_names=class_label_names(ds))
    ds = ds.add_column("row", list(range(len(ds))))
    if adapter.keep is not None:
        ds = ds.filter(lambda b: adapter.keep(b, ctx), batched=True)

    def convert(batch: Batch) -> Batch:
        out = adapter.convert(batch, batch["row"], ctx)
        out["row"] = batch["row"]
        return out

    # the raw canonical columns (xrobust.tasks.formats): labels and tags are strings until loading maps them
    features = datasets.Features({**get_format(adapter.format).features(raw=True), "row": _ROW})
    return ds.map(convert, batched=True, remove_columns=ds.column_names, features=features)
