"""Per-example scores read back from prediction/label files reproduce the official scorer's number for
every metric family, and results.json disagreeing with the files is an error."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xrobust.errors import DataError
from xrobust.evaluation import metrics as M
from xrobust.evaluation.results import build_results, language_score
from xrobust.evaluation.scorer import score_language
from xrobust.study.examples import cached_run_examples, language_examples, run_examples


def _tags(rng, n, labels):
    return [[str(rng.choice(labels)) for _ in range(rng.integers(1, 9))] for _ in range(n)]


def _write_tags(path, sentences):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\n".join(s) + "\n\n" for s in sentences))


@pytest.mark.parametrize("labels", [("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-ORG"),  # invalid I- starts too
                                    ("NOUN", "VERB", "SCONJ", "CCONJ", "SYM", "ADJ")])  # UD-POS-like: seqeval chunks
def test_tagging_sums_reproduce_seqeval(tmp_path, labels):
    rng = np.random.default_rng(0)
    gold = _tags(rng, 300, labels)
    pred = [[t if rng.random() < 0.7 else str(rng.choice(labels)) for t in s] for s in gold]
    _write_tags(tmp_path / "p" / "panx" / "test-de.tsv", pred)
    _write_tags(tmp_path / "g" / "panx" / "test-de.tsv", gold)
    num, den = language_examples("panx", "de", tmp_path / "p" / "panx" / "test-de.tsv",
                                 tmp_path / "g" / "panx" / "test-de.tsv")
    official = score_language("panx", "de", tmp_path / "p" / "panx" / "test-de.tsv", tmp_path / "g" / "panx" / "test-de.tsv")
    assert len(num) == len(gold) and num.sum() / den.sum() == pytest.approx(official["f1"], abs=1e-9)
    assert num.sum() / den.sum() == pytest.approx(M.seqeval_prf(gold, pred)["f1"], abs=1e-9)


def test_accuracy_qa_and_bucc(tmp_path):
    rng = np.random.default_rng(1)
    p, g = tmp_path / "p", tmp_path / "g"
    labels = [str(x) for x in rng.choice(["entailment", "neutral", "contradiction"], size=200)]
    preds = [lab if rng.random() < 0.6 else "neutral" for lab in labels]
    for root, lines in ((p, preds), (g, labels)):
        (root / "xnli").mkdir(parents=True)
        (root / "xnli" / "test-fr.tsv").write_text("".join(f"{x}\n" for x in lines))
    num, den = language_examples("xnli", "fr", p / "xnli" / "test-fr.tsv", g / "xnli" / "test-fr.tsv")
    assert num.sum() / den.sum() == pytest.approx(score_language("xnli", "fr", p / "xnli" / "test-fr.tsv",
                                                                 g / "xnli" / "test-fr.tsv")["accuracy"])
    words = ["el gato", "la casa", "un perro grande", "de la mar", "el río azul"]
    gold = [(f"q{i}", [str(rng.choice(words)), str(rng.choice(words))]) for i in range(60)]
    answers = {qid: str(rng.choice(words)) for qid, _ in gold[:50]}  # ten unanswered
    for task, lang in (("mlqa", "es"), ("xquad", "es")):
        (p / task).mkdir(parents=True)
        (g / task).mkdir(parents=True)
        (p / task / f"test-{lang}.json").write_text(json.dumps(answers))
        articles = [{"paragraphs": [{"qas": [{"id": q, "answers": [{"text": t} for t in a]}]}]} for q, a in gold]
        (g / task / f"test-{lang}.json").write_text(json.dumps({"data": articles}))
        num, den = language_examples(task, lang, p / task / f"test-{lang}.json", g / task / f"test-{lang}.json")
        official = score_language(task, lang, p / task / f"test-{lang}.json", g / task / f"test-{lang}.json")
        assert num.sum() / den.sum() == pytest.approx(language_score(task, official), abs=1e-9)
        assert len(num) == 60 and (num[50:] == 0).all()
    gold_pairs = [f"de-{i}\ten-{i}" for i in range(40)]
    pred_pairs = gold_pairs[:25] + [f"de-{i}\ten-{i + 1}" for i in range(25, 35)] + [f"de-{i}\ten-{i}" for i in range(50, 55)]
    for root, lines in ((p, pred_pairs), (g, gold_pairs)):
        (root / "bucc2018").mkdir(parents=True)
        (root / "bucc2018" / "test-de.tsv").write_text("".join(f"{x}\n" for x in lines))
    num, den = language_examples("bucc2018", "de", p / "bucc2018" / "test-de.tsv", g / "bucc2018" / "test-de.tsv")
    official = score_language("bucc2018", "de", p / "bucc2018" / "test-de.tsv", g / "bucc2018" / "test-de.tsv")
    assert num.sum() / den.sum() == pytest.approx(official["f1"], abs=1e-9)


def _run(tmp_path, accuracy_in_results: float | None = None):
    run = tmp_path / "run"
    lines = ["a", "b", "a", "a"]
    for sub, values in (("predictions", ["a", "b", "b", "a"]), ("labels", lines)):
        (run / sub / "xnli").mkdir(parents=True, exist_ok=True)
        (run / sub / "xnli" / "test-en.tsv").write_text("".join(f"{x}\n" for x in values))
    acc = 75.0 if accuracy_in_results is None else accuracy_in_results
    (run / "results.json").write_text(json.dumps(build_results({"xnli": {"en": {"accuracy": acc}}})))
    return run


def test_results_must_match_the_files(tmp_path):
    run = _run(tmp_path)
    scores = run_examples(run, run / "results.json", "test", ["xnli"])
    assert scores[("xnli", "en")].value == 75.0 and list(scores[("xnli", "en")].num) == [100, 100, 0, 100]
    bad = _run(tmp_path / "bad", accuracy_in_results=80.0)
    with pytest.raises(DataError, match=r"test-en.tsv: per-example scores give 75.000000 .* says 80.000000"):
        run_examples(bad, bad / "results.json", "test", ["xnli"])


def test_cache_is_used_until_a_file_changes(tmp_path):
    run = _run(tmp_path)
    cache = tmp_path / "cache.npz"
    first = cached_run_examples(run, run / "results.json", "test", ["xnli"], cache)
    stamp = cache.stat().st_mtime_ns
    second = cached_run_examples(run, run / "results.json", "test", ["xnli"], cache)
    assert cache.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(first[("xnli", "en")].num, second[("xnli", "en")].num)
    assert first[("xnli", "en")].labels == second[("xnli", "en")].labels
    (run / "predictions" / "xnli" / "test-en.tsv").write_text("a\nb\na\na\n")
    (run / "results.json").write_text(json.dumps(build_results({"xnli": {"en": {"accuracy": 100.0}}})))
    third = cached_run_examples(run, run / "results.json", "test", ["xnli"], cache)
    assert third[("xnli", "en")].value == 100.0
