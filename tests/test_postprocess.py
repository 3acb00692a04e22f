"""Postprocess on constructed logits: QA best span across windows, tagging merge, argmax, pooling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset

from fixtures_tokenizer import tokenizer  # noqa: F401  (pytest fixture)
from test_featurize import QA_KW, qa_examples, spec, tagging_examples
from xrobust.data.featurize import featurize
from xrobust.evaluation.predict import pool_embeddings
from xrobust.tasks.postprocessors import (classification_predictions, multiple_choice_predictions,
                                          span_qa_predictions, tagging_predictions)
from xrobust.errors import DataError


def test_span_qa_picks_best_valid_span_across_windows(tokenizer):
    ex = qa_examples(20, seed=5)
    train = featurize(ex, spec("span_qa"), tokenizer, train=True, **QA_KW)
    pred = featurize(ex, spec("span_qa"), tokenizer, train=False, **QA_KW)
    rng = np.random.default_rng(0)
    rows, gold_windows = [], {}
    for f in range(len(pred)):
        offs = pred[f]["offset_mapping"]
        L = len(offs)
        row = rng.normal(0, 0.1, size=(L, 2)).astype(np.float32)
        ctx = [i for i, o in enumerate(offs) if o is not None]
        s, e = train[f]["start_positions"], train[f]["end_positions"]
        eid = pred[f]["example_id"]
        is_gold = (s, e) != (0, 0) and eid not in gold_windows  # gold only in the first window holding it
        gold = range(s, e + 1) if is_gold else range(0)
        # traps a naive argmax would fall for: the question tokens, and a start after the end
        row[1, :] = 50.0
        if ctx[-1] not in gold and ctx[0] not in gold:
            row[ctx[-1]] = (30.0, -100.0)
            row[ctx[0]] = (-100.0, 30.0)
        # a plausible distractor span in every window, scoring 2 + 2; the gold span scores 3 + 3
        row[ctx[2], 0] += 2.0
        row[ctx[3], 1] += 2.0
        if is_gold:
            gold_windows[eid] = f
            row[s, 0] += 3.0
            row[e, 1] += 3.0
        rows.append(row)
    out = span_qa_predictions(ex, pred, rows, n_best=20, max_answer_length=30)
    assert set(out) == set(ex["id"]) == set(gold_windows)
    windows = {}
    for eid in pred["example_id"]:
        windows[eid] = windows.get(eid, 0) + 1
    assert any(gold_windows[e] - pred["example_id"].index(e) > 0 for e in gold_windows), "some gold in a late window"
    for r in ex:
        assert out[r["id"]] == r["answers"]["text"][0]
    # the same logits padded into one (N, Lmax, 2) array give the same answers
    lmax = max(len(r) for r in rows)
    padded = np.full((len(rows), lmax, 2), -1e4, dtype=np.float32)
    for i, r in enumerate(rows):
        padded[i, :len(r)] = r
    assert span_qa_predictions(ex, pred, torch.from_numpy(padded)) == out


def test_span_qa_empty_when_nothing_valid_and_length_limit():
    ex = Dataset.from_list([{"id": "e1", "question": "q", "context": "ab cd ef", "answers": {"text": [], "answer_start": []}}])
    feats = [{"example_id": "e1", "offset_mapping": [None, None, None, [0, 2], [3, 5], [6, 8], None]}]
    row = np.zeros((7, 2), dtype=np.float32)
    row[5, 0] = 5.0  # the only start candidate (n_best=1) lies after the only end candidate
    row[3, 1] = 5.0
    assert span_qa_predictions(ex, feats, [row], n_best=1) == {"e1": ""}
    row[:] = 0.0
    row[3:6, 0] = (4.0, 0.0, 0.0)
    row[3:6, 1] = (0.0, 1.0, 3.0)  # spans: (3,5)=7, (3,4)=5, (3,3)=4, (5,5)=3
    assert span_qa_predictions(ex, feats, [row], max_answer_length=3) == {"e1": "ab cd ef"}
    assert span_qa_predictions(ex, feats, [row], max_answer_length=2) == {"e1": "ab cd"}
    assert span_qa_predictions(ex, feats, [row], max_answer_length=1) == {"e1": "ab"}
    row[1, :] = 99.0  # question tokens (offset None) are never candidates
    text, score = span_qa_predictions(ex, feats, [row], return_scores=True)["e1"]
    assert text == "ab cd ef" and score == pytest.approx(7.0)


def test_tagging_merge_windows_to_words(tokenizer):
    labels = list("ABCDE")
    ex = tagging_examples(25, seed=1)
    feats = featurize(ex, spec("tagging", labels=labels), tokenizer, train=True, max_length=24)
    rng = np.random.default_rng(1)
    rows = []
    for f in feats:
        L = len(f["input_ids"])
        row = rng.normal(0, 0.1, size=(L, 5)).astype(np.float32)
        for pos, lab in enumerate(f["labels"]):
            if lab >= 0:
                row[pos, lab] += 5.0
            else:  # continuation sub-tokens and specials shout a wrong label: must be ignored
                row[pos, (pos * 7) % 5] += 9.0
        rows.append(row)
    out = tagging_predictions(feats, rows, labels)
    assert max(feats["example_id"].count(e) for e in set(feats["example_id"])) >= 3
    for r in ex:
        assert out[r["id"]] == [labels[t] for t in r["tags"]]
    with pytest.raises(DataError, match="no prediction"):
        keep = [i for i, e in enumerate(feats["example_id"]) if not (e == "s3" and i == feats["example_id"].index("s3"))]
        tagging_predictions(feats.select(keep), [rows[i] for i in keep], labels)


def test_argmax_heads():
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]])
    assert classification_predictions(logits, ["entailment", "neutral", "contradiction"]) == ["neutral", "entailment"]
    assert classification_predictions(logits) == [1, 0]
    assert multiple_choice_predictions(np.array([[0.0, 0.1, 0.3, -2.0], [5.0, 0, 0, 0]])) == [2, 0]
    with pytest.raises(DataError, match="2 labels"):
        classification_predictions(logits, ["a", "b"])


def test_pool_embeddings_mean_includes_specials_and_cls():
    torch.manual_seed(0)
    h = torch.randn(2, 5, 4)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    mean = pool_embeddings(h, mask)
    torch.testing.assert_close(mean[0], h[0].mean(0))
    torch.testing.assert_close(mean[1], h[1, :3].mean(0))  # <s> and </s> included, padding not
    torch.testing.assert_close(pool_embeddings(h, mask, pooling="cls"), h[:, 0])
    states = (torch.zeros_like(h), h)
    torch.testing.assert_close(pool_embeddings(states, mask, layer=1), mean)
