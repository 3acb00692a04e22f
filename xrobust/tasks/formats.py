"""Task formats: one object per format, the one place that says what a format is.

`get_format(name)` (or `TaskSpec.task_format`) returns the `TaskFormat` of classification,
multiple_choice, span_qa, tagging or retrieval. Each owns:
- its columns: the canonical example schema (`features()`; `features(raw=True)` is what an adapter
  emits, labels still as strings), the columns loading and featurizing require, its text fields;
- its head class, the head's number of outputs, how the model's inputs are laid out for it, its
  target keys (a batch's gold: the loss's inputs, never the encoder's) and its loss;
- how a divergence between two predictions reduces to a scalar (SMART, R3F);
- which fields RS-DA may rewrite;
- its featurizer (canonical examples -> features: xrobust.tasks.featurizers, with the tokenizer
  helpers the formats share) and the post-processing of its logits into example-level predictions
  (xrobust.tasks.postprocessors, numpy);
- its gold answers, how they and the predictions are written in the official file layout, and the
  family of scores it is evaluated with.

Format names stay strings in configs, the task registry and saved heads (heads.json); this module
turns them into objects.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from xrobust.errors import ConfigError, DataError

from . import featurizers, postprocessors
from .featurizers import IGNORE_INDEX

_MASKED = -1e9  # exp underflows to exactly 0 in fp32: masked positions carry no probability

# A per-unit divergence: (a, b, dim) -> the divergence summed over `dim`.
Unit = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


def wide(x: torch.Tensor) -> torch.Tensor:
    """Losses are computed in fp32 or wider: half-precision logits are upcast, fp64 stays fp64."""
    return x if x.dtype == torch.float64 else x.float()


# -- heads: they read the encoder's last hidden state (B, L, d) -----------------------------------
class ClassificationHead(nn.Module):
    """RoBERTa-style: dense + tanh on <s>, then the output projection."""

    def __init__(self, hidden: int, num_labels: int, dropout: float):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, num_labels)

    def forward(self, hidden_states, **_):
        x = self.dropout(hidden_states[:, 0])
        x = self.dropout(torch.tanh(self.dense(x)))
        return self.out(x)


class MultipleChoiceHead(nn.Module):
    """Scores each (prompt, choice) row on <s>; inputs arrive flattened to (B * n, L)."""

    def __init__(self, hidden: int, num_labels: int, dropout: float):
        super().__init__()
        self.num_choices = num_labels
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, 1)

    def forward(self, hidden_states, num_choices: int, **_):
        return self.out(self.dropout(hidden_states[:, 0])).view(-1, num_choices)


class SpanHead(nn.Module):
    def __init__(self, hidden: int, num_labels: int, dropout: float):
        super().__init__()
        self.out = nn.Linear(hidden, 2)

    def forward(self, hidden_states, **_):
        return self.out(hidden_states)  # (B, L, 2): start, end


class TaggingHead(nn.Module):
    def __init__(self, hidden: int, num_labels: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, num_labels)

    def forward(self, hidden_states, **_):
        return self.out(self.dropout(hidden_states))


# -- the formats --------------------------------------------------------------------------------------
# Column kinds: "text" (str), "texts" (list[str]), "label" (one label), "labels" (one per token),
# "answers" (SQuAD's {"text": [...], "answer_start": [...]}). Labels are indices once loaded.
class TaskFormat:
    name: str
    columns: Mapping[str, str]  # canonical column -> kind, in the canonical order
    raw_columns: Mapping[str, str] = {}  # extra columns an adapter emits (retrieval's other side)
    required: tuple[str, ...]  # columns every example needs (id is filled in when absent)
    unlabeled: tuple[str, ...] = ()  # required columns prediction can do without
    text_fields: tuple[str, ...]  # text an example must carry (blank text means a wrong column)
    augmentable: Mapping[str, str] = {}  # RS-DA: field -> "text" (rewritten), "texts", "words" (1 for 1)
    # featurizer(spec, tokenizer, *, max_length, doc_stride, max_query_length, train) -> the batched
    # map function (xrobust.tasks.featurizers)
    featurizer: Callable
    # postprocess(spec, examples, features, logits) -> one prediction per example (xrobust.tasks.postprocessors);
    # None without a head
    postprocess: Callable | None = None
    head: type | None = None  # None: no head (scored by embedding similarity)
    target_keys: tuple[str, ...] = ()
    label_column: str | None = None  # the column whose values index spec.labels
    score_kind: str | None = None  # "accuracy", "seqeval" or "qa" (evaluation.predict.score)
    headline_metric: str | None = None  # the number a robustness curve plots
    # Long texts are cut into overlapping windows (doc_stride, max_query_length); prediction features
    # carry offsets instead of targets, and a training example whose answer is not at answer_start
    # makes no feature.
    windowed: bool = False

    @property
    def has_head(self) -> bool:
        return self.head is not None

    def __repr__(self) -> str:
        return f"TaskFormat({self.name!r})"

    # columns
    def features(self, raw: bool = False):
        """The `datasets.Features` of canonical examples (raw: as adapters emit them, labels as strings)."""
        import datasets

        text, label = datasets.Value("string"), datasets.Value("string" if raw else "int64")
        kinds = {"text": text, "texts": datasets.List(text), "label": label, "labels": datasets.List(label),
                 "answers": {"text": datasets.List(text), "answer_start": datasets.List(datasets.Value("int32"))}}
        columns = {**self.columns, **(self.raw_columns if raw else {})}
        return datasets.Features({c: kinds[k] for c, k in columns.items()})

    def required_columns(self, spec) -> tuple[str, ...]:
        """Columns a loaded file must have for task `spec`."""
        return self.required

    def featurize_columns(self, train: bool) -> tuple[str, ...]:
        """Columns the featurizer needs (prediction features need no labels)."""
        return ("id",) + tuple(c for c in self.required if train or c not in self.unlabeled)

    # the model
    def num_outputs(self, spec) -> int:
        return len(spec.labels)

    def encoder_inputs(self, inputs: dict) -> tuple[dict, dict]:
        """(the encoder's inputs in its (rows, L) layout, the head's extra arguments)."""
        return inputs, {}

    def loss(self, logits, targets: Mapping[str, Any]):
        """The task loss from the logits and the target keys; None when the batch has no targets."""
        labels = targets.get("labels")
        return None if labels is None else F.cross_entropy(wide(logits), labels)

    def reduce_divergence(self, unit: Unit, a, b, *, attention_mask=None, labels=None):
        """A divergence between predictions a and b (wide logits) as a scalar: `unit` over classes,
        mean over examples."""
        return unit(a, b, -1).mean()

    # RS-DA
    def augment(self, example: dict, text: Callable[[str], str], word: Callable[[str], str]) -> dict:
        """A copy of `example` with its augmentable fields rewritten by `text` (a whole text) and
        `word` (one word)."""
        if not self.augmentable:
            raise DataError(f"rs-da: format {self.name!r} has no training text to augment")
        out = dict(example)
        for field, kind in self.augmentable.items():
            value = out.get(field)
            if value is None:
                continue
            if kind == "text":
                out[field] = text(value)
            elif kind == "texts":
                out[field] = [text(v) for v in value]
            else:
                out[field] = [word(v) for v in value]
        return out

    # evaluation
    def gold(self, spec, examples) -> list:
        """Example-level gold answers in the official file's terms."""
        return [spec.labels[i] for i in examples[self.label_column]]

    def prediction_file(self, predictions) -> tuple[str, Any]:
        """(file suffix, contents) of a prediction file: text for ".tsv", an object for ".json"."""
        return ".tsv", "".join(f"{p}\n" for p in predictions)

    def gold_file(self, golds) -> tuple[str, Any]:
        return self.prediction_file(golds)


class _OneLabel(TaskFormat):
    """One label per example (an index into spec.labels, or the right choice), scored by accuracy."""

    target_keys = ("labels",)
    label_column = "label"
    score_kind = "accuracy"
    headline_metric = "accuracy"


class Classification(_OneLabel):
    name = "classification"
    columns = {"id": "text", "text_a": "text", "text_b": "text", "label": "label"}
    required = ("text_a", "label")
    text_fields = ("text_a", "text_b")  # text_b for pair tasks only
    augmentable = {"text_a": "text", "text_b": "text"}
    featurizer = staticmethod(featurizers.classification)
    postprocess = staticmethod(postprocessors.classification)
    head = ClassificationHead

    def required_columns(self, spec) -> tuple[str, ...]:
        return self.required + (("text_b",) if spec.pair else ())


class MultipleChoice(_OneLabel):
    name = "multiple_choice"
    columns = {"id": "text", "prompt": "text", "choices": "texts", "label": "label"}
    required = ("prompt", "choices", "label")
    text_fields = ("prompt", "choices")
    augmentable = {"prompt": "text", "choices": "texts"}
    featurizer = staticmethod(featurizers.multiple_choice)
    postprocess = staticmethod(postprocessors.multiple_choice)
    head = MultipleChoiceHead

    def encoder_inputs(self, inputs: dict) -> tuple[dict, dict]:
        """(B, n, L) -> (B * n, L): each (prompt, choice) is one encoder row."""
        num_choices = inputs["input_ids"].size(1)
        flat = {k: None if v is None else v.flatten(0, 1) for k, v in inputs.items()}
        return flat, {"num_choices": num_choices}

    def gold(self, spec, examples) -> list:
        return list(examples["label"])


class SpanQA(TaskFormat):
    name = "span_qa"
    columns = {"id": "text", "question": "text", "context": "text", "answers": "answers"}
    required = ("question", "context", "answers")
    text_fields = ("question", "context")
    augmentable = {"question": "text"}  # the context (and the answer offsets into it) stay untouched
    featurizer = staticmethod(featurizers.span_qa)
    postprocess = staticmethod(postprocessors.span_qa)
    head = SpanHead
    target_keys = ("start_positions", "end_positions")
    score_kind = "qa"
    headline_metric = "f1"
    windowed = True

    def num_outputs(self, spec) -> int:
        return 2  # start, end

    def loss(self, logits, targets):
        start, end = targets.get("start_positions"), targets.get("end_positions")
        if start is None:
            return None
        length = logits.size(1)
        start = start.clamp(0, length - 1)
        end = end.clamp(0, length - 1)
        return (F.cross_entropy(wide(logits[..., 0]), start) + F.cross_entropy(wide(logits[..., 1]), end)) / 2

    def reduce_divergence(self, unit, a, b, *, attention_mask=None, labels=None):
        """Over the start and over the end distribution, each over the attended positions only,
        averaged, mean over examples."""
        if attention_mask is not None:
            pad = (attention_mask == 0).unsqueeze(-1)  # (B, L, 1)
            a = a.masked_fill(pad, _MASKED)
            b = b.masked_fill(pad, _MASKED)
        return unit(a, b, 1).mean()  # (B, 2): start, end

    def gold(self, spec, examples) -> list:
        return [(str(i), list(a["text"])) for i, a in zip(examples["id"], examples["answers"])]

    def prediction_file(self, predictions):
        return ".json", predictions

    def gold_file(self, golds):
        articles = [{"paragraphs": [{"qas": [{"id": qid, "answers": [{"text": t} for t in answers]}]}]}
                    for qid, answers in golds]
        return ".json", {"data": articles}


class Tagging(TaskFormat):
    name = "tagging"
    columns = {"id": "text", "tokens": "texts", "tags": "labels"}
    required = ("tokens", "tags")
    unlabeled = ("tags",)
    text_fields = ("tokens",)
    augmentable = {"tokens": "words"}  # one word for one word: tags stay aligned
    featurizer = staticmethod(featurizers.tagging)
    postprocess = staticmethod(postprocessors.tagging)
    head = TaggingHead
    target_keys = ("labels",)
    label_column = "tags"
    score_kind = "seqeval"
    headline_metric = "f1"

    def loss(self, logits, targets):
        labels = targets.get("labels")
        if labels is None:
            return None
        return F.cross_entropy(wide(logits).flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)

    def reduce_divergence(self, unit, a, b, *, attention_mask=None, labels=None):
        """Over classes per token, mean over the tokens that carry a label or, without labels, over
        the attended tokens."""
        per_token = unit(a, b, -1)  # (B, L)
        if labels is not None:
            keep = labels != IGNORE_INDEX
        elif attention_mask is not None:
            keep = attention_mask != 0
        else:
            keep = torch.ones_like(per_token, dtype=torch.bool)
        keep = keep.to(per_token.dtype)
        return (per_token * keep).sum() / keep.sum().clamp(min=1)

    def gold(self, spec, examples) -> list:
        return [[spec.labels[t] for t in tags] for tags in examples["tags"]]

    def prediction_file(self, predictions):
        return ".tsv", "".join("\n".join(tags) + "\n\n" for tags in predictions)


class Retrieval(TaskFormat):
    """One side of a bitext per example; gold pairs are loaded separately (data.loading.load_bitext)."""

    name = "retrieval"
    columns = {"id": "text", "text": "text"}
    raw_columns = {"target_id": "text", "target_text": "text"}
    required = ("text",)
    text_fields = ("text",)
    featurizer = staticmethod(featurizers.retrieval)

    def num_outputs(self, spec) -> int:
        raise ConfigError(f"task {spec.name!r}: retrieval has no head (it is scored by embedding similarity)")

    def gold(self, spec, examples) -> list:
        raise ConfigError(f"task {spec.name!r}: retrieval gold is a set of pairs (data.loading.load_bitext)")


FORMATS: dict[str, TaskFormat] = {f.name: f for f in (Classification(), MultipleChoice(), SpanQA(), Tagging(),
                                                      Retrieval())}
# Every format's gold fields: the collator keeps them as tensors, strategies keep them off the encoder.
TARGET_KEYS = tuple(dict.fromkeys(k for f in FORMATS.values() for k in f.target_keys))


def get_format(name) -> TaskFormat:
    """The format object of `name` (a format name; a TaskFormat is returned as it is)."""
    if isinstance(name, TaskFormat):
        return name
    try:
        return FORMATS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown task format {name!r}; expected one of {', '.join(FORMATS)}") from None
