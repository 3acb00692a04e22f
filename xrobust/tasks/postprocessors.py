"""Model outputs -> example-level predictions: the post-processing of each task format with a head
(`TaskFormat.postprocess`: `step(spec, examples, features, logits)`, called by
xrobust.evaluation.predict.predictions_from_logits).

`logits` may be one array/tensor with a row per feature (padded along the token axis), a list of
per-feature rows (what xrobust.evaluation.predict.forward_outputs returns: token rows cut to the
feature's length), or a list of per-batch arrays. Logit layouts: classification (C,),
multiple_choice (n,), span_qa (L, 2) with [..., 0]=start and [..., 1]=end, tagging (L, C).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from xrobust.errors import ConfigError, DataError


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def _rows(logits, n: int, row_ndim: int, what: str) -> list[np.ndarray]:
    """Normalise the accepted logit containers to one numpy row per feature."""
    if isinstance(logits, (list, tuple)):
        rows: list[np.ndarray] = []
        for part in logits:
            a = _np(part)
            if a.ndim == row_ndim:
                rows.append(a)
            elif a.ndim == row_ndim + 1:  # a batch
                rows.extend(a)
            else:
                raise DataError(f"{what}: a logits entry has shape {a.shape}; expected {row_ndim} dims per feature")
    else:
        a = _np(logits)
        if a.ndim != row_ndim + 1:
            raise DataError(f"{what}: logits have shape {a.shape}; expected {row_ndim + 1} dims (features first)")
        rows = list(a)
    if len(rows) != n:
        raise DataError(f"{what}: {len(rows)} logit rows for {n} features; expected one row per feature")
    return rows


def _column(features, key: str) -> list:
    if isinstance(features, (list, tuple)):
        try:
            return [f[key] for f in features]
        except KeyError:
            raise DataError(f"features lack {key!r}; featurize with train=False for prediction") from None
    if key not in features.column_names:
        raise DataError(f"features lack column {key!r}; got {features.column_names} (featurize with train=False)")
    return features[key]


# ---------------------------------------------------------------------------------------------
def classification_predictions(logits, label_names: Sequence[str] | None = None) -> list:
    """argmax per feature -> label name (or the index when label_names is empty/None)."""
    a = _np(logits) if not isinstance(logits, (list, tuple)) else np.stack([_np(r) for r in logits])
    if a.ndim != 2:
        raise DataError(f"classification logits have shape {a.shape}; expected (B, C)")
    idx = a.argmax(-1).tolist()
    if not label_names:
        return idx
    if a.shape[1] != len(label_names):
        raise DataError(f"classification logits have {a.shape[1]} classes but the task has {len(label_names)} labels")
    return [label_names[i] for i in idx]


def multiple_choice_predictions(logits) -> list[int]:
    """argmax over choices per example (index into `choices`)."""
    a = _np(logits) if not isinstance(logits, (list, tuple)) else np.stack([_np(r) for r in logits])
    if a.ndim != 2:
        raise DataError(f"multiple-choice logits have shape {a.shape}; expected (B, n_choices)")
    return a.argmax(-1).tolist()


# ---------------------------------------------------------------------------------------------
def tagging_predictions(features, logits, label_names: Sequence[str]) -> dict[str, list[str]]:
    """Per example id: one tag per word, read at each word's first sub-token, windows merged.

    Every word of every example must be predicted exactly once (windows do not overlap).
    """
    ids, word_ids, n_words = _column(features, "example_id"), _column(features, "word_ids"), _column(features, "n_words")
    rows = _rows(logits, len(ids), 2, "tagging")
    preds: dict[str, list[Any]] = {}
    for eid, wids, n, row in zip(ids, word_ids, n_words, rows):
        if len(row) < len(wids):
            raise DataError(f"tagging: example {eid!r}: logits cover {len(row)} tokens but the window has {len(wids)}")
        if row.shape[-1] != len(label_names):
            raise DataError(f"tagging: logits have {row.shape[-1]} classes but the task has {len(label_names)} labels")
        out = preds.setdefault(eid, [None] * n)
        best = row[: len(wids)].argmax(-1)
        prev = -1
        for pos, w in enumerate(wids):
            if w is not None and w >= 0 and w != prev:
                if out[w] is not None:
                    raise DataError(f"tagging: example {eid!r}: word {w} is predicted by two windows; expected one")
                out[w] = label_names[int(best[pos])]
            prev = -1 if w is None else w
    for eid, tags in preds.items():
        missing = [w for w, t in enumerate(tags) if t is None]
        if missing:
            raise DataError(f"tagging: example {eid!r}: words {missing[:10]} have no prediction; "
                            "expected every word in exactly one window (features incomplete?)")
    return preds


# ---------------------------------------------------------------------------------------------
def span_qa_predictions(examples, features, logits, *, n_best: int = 20, max_answer_length: int = 30,
                        return_scores: bool = False):
    """Per example id: the answer text of the best-scoring span over all of its windows.

    Candidates are the n_best start and n_best end positions per window, restricted to context
    tokens, end >= start and at most max_answer_length tokens; score = start + end logit. The
    span maps back to the original context through the offsets. No valid span -> "".
    With return_scores=True the value is (text, score) (score -inf when empty).
    """
    if n_best < 1 or max_answer_length < 1:
        raise ConfigError(f"span QA postprocess: n_best={n_best}, max_answer_length={max_answer_length}; expected >= 1")
    contexts = {str(e): c for e, c in zip(_column(examples, "id"), _column(examples, "context"))}
    ids, offsets = _column(features, "example_id"), _column(features, "offset_mapping")
    rows = _rows(logits, len(ids), 2, "span QA")
    best: dict[str, tuple[float, str]] = {e: (-np.inf, "") for e in contexts}
    for eid, offs, row in zip(ids, offsets, rows):
        if eid not in contexts:
            raise DataError(f"span QA: feature for example {eid!r} but no such example; expected matching datasets")
        if row.ndim != 2 or row.shape[-1] != 2 or len(row) < len(offs):
            raise DataError(f"span QA: example {eid!r}: logits row of shape {row.shape}; expected ({len(offs)}+, 2)")
        ctx_pos = np.array([i for i, o in enumerate(offs) if o is not None], dtype=np.int64)
        if ctx_pos.size == 0:
            continue
        start, end = row[ctx_pos, 0], row[ctx_pos, 1]
        k = min(n_best, ctx_pos.size)
        s_idx = np.argsort(-start, kind="stable")[:k]
        e_idx = np.argsort(-end, kind="stable")[:k]
        # positions are token indices, so length limits are in tokens as the SQuAD recipe does
        s_tok, e_tok = ctx_pos[s_idx][:, None], ctx_pos[e_idx][None, :]
        valid = (e_tok >= s_tok) & (e_tok - s_tok + 1 <= max_answer_length)
        if not valid.any():
            continue
        scores = np.where(valid, start[s_idx][:, None] + end[e_idx][None, :], -np.inf)
        i, j = np.unravel_index(int(np.argmax(scores)), scores.shape)
        score = float(scores[i, j])
        if score > best[eid][0]:
            s_char, e_char = offs[int(s_tok[i, 0])][0], offs[int(e_tok[0, j])][1]
            best[eid] = (score, contexts[eid][s_char:e_char])
    if return_scores:
        return {e: (text, score) for e, (score, text) in best.items()}
    return {e: text for e, (score, text) in best.items()}


# ---------------------------------------------------------------------------------------------
# Each format's step, (spec, examples, features, logits) -> one prediction per example, in the
# official file's terms (label names, choice indices, answer texts, tag lists).
def classification(spec, examples, features, logits) -> list:
    return classification_predictions(logits, spec.labels)


def multiple_choice(spec, examples, features, logits) -> list[int]:
    return multiple_choice_predictions(logits)


def span_qa(spec, examples, features, logits) -> dict[str, str]:
    return span_qa_predictions(examples, features, logits)


def tagging(spec, examples, features, logits) -> list[list[str]]:
    by_id = tagging_predictions(features, logits, spec.labels)
    return [by_id[str(i)] for i in examples["id"]]
