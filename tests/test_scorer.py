"""Submission-folder scoring: a generated nine-task submission with a hand-derived XTREME score,
file-format quirks of the official reader, and the errors for malformed submissions."""

import json
from pathlib import Path

import pytest

from xrobust.cli import main
from xrobust.errors import DataError
from xrobust.evaluation import metrics as M
from xrobust.evaluation.scorer import read_tag_file, score_folder, score_language

approx = pytest.approx


def _w(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _squad(qas):
    return json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": "c", "qas": [
        {"id": qid, "question": "q", "answers": [{"text": a, "answer_start": 0} for a in answers]}
        for qid, answers in qas]}]}]}, ensure_ascii=False)


def make_submission(root: Path) -> tuple[Path, Path]:
    """Every language of every task; the per-language scores are fixed by construction."""
    pred, gold = root / "predictions", root / "labels"
    for lang in M.TASK2LANGS["pawsx"]:  # 4 of 5 correct -> 80
        _w(gold / "pawsx" / f"test-{lang}.tsv", "1\n0\n1\n1\n0\n")
        _w(pred / "pawsx" / f"test-{lang}.tsv", "1\n0\n1\n1\n1\n")
    for lang in M.TASK2LANGS["xnli"]:  # en 4/4 = 100, the 14 others 3/4 = 75
        _w(gold / "xnli" / f"test-{lang}.tsv", "entailment\nneutral\ncontradiction\nneutral\n")
        last = "neutral" if lang == "en" else "entailment"
        _w(pred / "xnli" / f"test-{lang}.tsv", f"entailment\nneutral\ncontradiction\n{last}\n")
    for lang in M.TASK2LANGS["panx"]:  # 2 gold entities, 1 predicted and correct: F1 2/3
        _w(gold / "panx" / f"test-{lang}.tsv", "B-PER\nI-PER\nO\n\nB-LOC\n\n")
        _w(pred / "panx" / f"test-{lang}.tsv", "B-PER\nI-PER\nO\n\nO\n\n")
    for lang in M.TASK2LANGS["udpos"]:  # identical: 100
        _w(gold / "udpos" / f"test-{lang}.tsv", "NOUN\nVERB\n\nDET\nNOUN\n\n")
        _w(pred / "udpos" / f"test-{lang}.tsv", "NOUN\nVERB\n\nDET\nNOUN\n\n")
    for lang in M.TASK2LANGS["bucc2018"]:  # 2 of 4 predicted pairs correct, 4 gold: F1 1/2
        _w(gold / "bucc2018" / f"test-{lang}.tsv", "".join(f"{lang}-{i}\ten-{i}\n" for i in range(4)))
        _w(pred / "bucc2018" / f"test-{lang}.tsv", f"{lang}-0\ten-0\n{lang}-1\ten-1\n{lang}-2\ten-3\n{lang}-3\ten-2\n")
    for lang in M.TASK2LANGS["tatoeba"]:  # 3 of 4: 75
        _w(gold / "tatoeba" / f"test-{lang}.tsv", "0\n1\n2\n3\n")
        _w(pred / "tatoeba" / f"test-{lang}.tsv", "0\n1\n2\n0\n")
    for lang in M.TASK2LANGS["xquad"]:  # q1 exact; q2 F1 2/3 (P=1, R=1/2) -> EM 50, F1 100*(5/3)/2
        _w(gold / "xquad" / f"test-{lang}.json", _squad([("q1", ["Paris"]), ("q2", ["Eiffel Tower"])]))
        _w(pred / "xquad" / f"test-{lang}.json", json.dumps({"q1": "paris", "q2": "Eiffel"}))
    for lang in M.TASK2LANGS["mlqa"]:  # as xquad, except zh: q2 "北京" vs "北京市中心" F1 4/7
        g2, p2 = ("北京市中心", "北京") if lang == "zh" else ("foo bar baz qux", "bar baz")
        _w(gold / "mlqa" / f"test-{lang}.json", _squad([("q1", ["x y"]), ("q2", [g2])]))
        _w(pred / "mlqa" / f"test-{lang}.json", json.dumps({"q1": "X y.", "q2": p2}, ensure_ascii=False))
    for lang in M.TASK2LANGS["tydiqa"]:  # wrong, unanswered, punctuation-only (EM 1, F1 0)
        _w(gold / "tydiqa" / f"test-{lang}.json", _squad([("a", ["abc"]), ("b", ["x"]), ("c", ["..."])]))
        _w(pred / "tydiqa" / f"test-{lang}.json", json.dumps({"a": "zzz", "c": "!"}))
    return pred, gold


def expected_task_scores() -> dict[str, float]:
    qa_f1 = 100 * (1 + 2 / 3) / 2
    mlqa_f1 = (6 * qa_f1 + 100 * (1 + 4 / 7) / 2) / 7
    return {
        "pawsx": 80.0,
        "xnli": (100 + 14 * 75) / 15,
        "panx": 200 / 3,
        "udpos": 100.0,
        "bucc2018": 50.0,
        "tatoeba": 75.0,
        "xquad": (50 + qa_f1) / 2,
        "mlqa": (50 + mlqa_f1) / 2,
        "tydiqa": (100 / 3 + 0) / 2,
    }


def test_nine_task_submission(tmp_path):
    pred, gold = make_submission(tmp_path)
    out = score_folder(pred, gold)
    exp = expected_task_scores()
    assert list(out) == ["all_task", "classification", "tagging", "qa", "retrieval", *M.TASK2LANGS]
    for task, value in exp.items():
        assert out[task]["avg_metric"] == approx(value, abs=1e-9), task
    assert out["all_task"] == approx(sum(exp.values()) / 9, abs=1e-9)
    assert out["qa"] == approx((exp["xquad"] + exp["mlqa"] + exp["tydiqa"]) / 3, abs=1e-9)
    assert out["tagging"] == approx((100 + 200 / 3) / 2, abs=1e-9)
    # per-language objects in the official shape
    assert out["xnli"]["accuracy"]["en"] == 100.0 and out["xnli"]["accuracy"]["ar"] == 75.0
    assert list(out["xnli"]["accuracy"]) == M.TASK2LANGS["xnli"]
    assert out["mlqa"]["f1"]["zh"] == approx(100 * (1 + 4 / 7) / 2)
    assert out["tydiqa"]["exact_match"]["en"] == approx(100 / 3) and out["tydiqa"]["f1"]["en"] == 0
    assert out["panx"]["precision"]["en"] == 100.0 and out["panx"]["recall"]["en"] == 50.0
    assert set(out["panx"]) == {"f1", "precision", "recall", "avg_f1", "avg_precision", "avg_recall", "avg_metric"}


def test_score_cli_writes_json(tmp_path, capsys):
    pred, gold = make_submission(tmp_path)
    out_file = tmp_path / "out" / "scores.json"
    rc = main(["score", "--prediction-folder", str(pred), "--label-folder", str(gold),
               "--output-file", str(out_file), "--results-file", str(tmp_path / "run" / "results.json")])
    assert rc == 0
    data = json.loads(out_file.read_text())
    assert data["all_task"] == approx(sum(expected_task_scores().values()) / 9, abs=1e-9)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["score"] == approx(data["all_task"]) and results["tasks"]["mlqa"]["avg"]["metric"] == data["mlqa"]["avg_metric"]
    assert "all_task:" in capsys.readouterr().out


def test_only_gold_tasks_are_scored_and_no_all_task(tmp_path):
    pred, gold = make_submission(tmp_path)
    import shutil
    shutil.rmtree(pred / "tydiqa")
    with pytest.raises(DataError, match=r"no prediction folder for the gold task\(s\) tydiqa"):
        score_folder(pred, gold)  # a gold task without predictions is never skipped silently
    shutil.rmtree(gold / "tydiqa")
    out = score_folder(pred, gold)
    assert "all_task" not in out and "qa" not in out and "tydiqa" not in out
    assert out["classification"] == approx((80 + (100 + 14 * 75) / 15) / 2)


def test_missing_language_file_is_named(tmp_path):
    pred, gold = make_submission(tmp_path)
    (pred / "xnli" / "test-sw.tsv").unlink()
    with pytest.raises(DataError, match=r"xnli/test-sw\.tsv: file not found"):
        score_folder(pred, gold)


def test_line_count_mismatch(tmp_path):
    _w(tmp_path / "p.tsv", "1\n0\n")
    _w(tmp_path / "g.tsv", "1\n0\n1\n")
    with pytest.raises(DataError, match=r"p\.tsv: 2 lines, but .*g\.tsv has 3"):
        score_language("xnli", "en", tmp_path / "p.tsv", tmp_path / "g.tsv")


def test_tag_sentence_length_mismatch_names_lines(tmp_path):
    _w(tmp_path / "p.tsv", "O\n\nB-PER\nO\n\n")
    _w(tmp_path / "g.tsv", "O\n\nB-PER\n\n")
    with pytest.raises(DataError, match=r"p\.tsv: sentence 2 \(line 3\) has 2 tags, but .*g\.tsv sentence 2 \(line 3\) has 1"):
        score_language("panx", "en", tmp_path / "p.tsv", tmp_path / "g.tsv")
    _w(tmp_path / "p.tsv", "O\n\nB-PER\n\nO\n")
    with pytest.raises(DataError, match="3 sentences, but"):
        score_language("panx", "en", tmp_path / "p.tsv", tmp_path / "g.tsv")


def test_tag_reader_blank_line_quirks(tmp_path):
    # consecutive blank lines make an empty sentence; a trailing blank line does not
    _w(tmp_path / "t.tsv", "A\nB\n\n\nC\n\n")
    sentences, starts = read_tag_file(tmp_path / "t.tsv")
    assert sentences == [["A", "B"], [], ["C"]] and starts == [1, 4, 5]
    _w(tmp_path / "u.tsv", " A \r\nB")  # stripped, CRLF, no final newline
    assert read_tag_file(tmp_path / "u.tsv")[0] == [["A", "B"]]


def test_empty_prediction_files(tmp_path):
    _w(tmp_path / "g.tsv", "de-1\ten-1\n")
    _w(tmp_path / "p.tsv", "")
    assert score_language("bucc2018", "de", tmp_path / "p.tsv", tmp_path / "g.tsv")["f1"] == 0
    _w(tmp_path / "g.json", _squad([("q1", ["a b"])]))
    _w(tmp_path / "p.json", "{}")
    assert score_language("xquad", "en", tmp_path / "p.json", tmp_path / "g.json") == {"exact_match": 0.0, "f1": 0.0}
    _w(tmp_path / "g.tsv", "")
    with pytest.raises(DataError, match="no examples"):
        score_language("xnli", "en", tmp_path / "p.tsv", tmp_path / "g.tsv")


def test_qa_file_errors(tmp_path):
    _w(tmp_path / "g.json", _squad([("q1", ["a"]), ("q2", [])]))
    _w(tmp_path / "p.json", json.dumps({"q1": "a", "q2": "b"}))
    with pytest.raises(DataError, match=r"g\.json: question 'q2' has no gold answers"):
        score_language("tydiqa", "en", tmp_path / "p.json", tmp_path / "g.json")
    _w(tmp_path / "p.json", json.dumps({"q1": ["a"]}))
    with pytest.raises(DataError, match="prediction for 'q1' must be a string"):
        score_language("tydiqa", "en", tmp_path / "p.json", tmp_path / "g.json")
    _w(tmp_path / "p.json", "{not json")
    with pytest.raises(DataError, match=r"p\.json: invalid JSON at line 1"):
        score_language("tydiqa", "en", tmp_path / "p.json", tmp_path / "g.json")
    _w(tmp_path / "g2.json", json.dumps({"data": [{"paragraphs": [{"qas": [{"id": "x"}]}]}]}))
    _w(tmp_path / "p.json", "{}")
    with pytest.raises(DataError, match="expected SQuAD layout"):
        score_language("xquad", "en", tmp_path / "p.json", tmp_path / "g2.json")


def test_no_shared_task_and_missing_folder(tmp_path):
    (tmp_path / "p" / "xnli").mkdir(parents=True)
    (tmp_path / "g" / "pawsx").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no prediction folder for the gold task\(s\) pawsx"):
        score_folder(tmp_path / "p", tmp_path / "g")
    (tmp_path / "g" / "pawsx").rmdir()
    with pytest.raises(DataError, match="share no task folder"):
        score_folder(tmp_path / "p", tmp_path / "g")
    with pytest.raises(DataError, match="prediction folder not found"):
        score_folder(tmp_path / "nope", tmp_path / "g")
    assert main(["score", "--prediction-folder", str(tmp_path / "nope"), "--label-folder", str(tmp_path / "g"),
                 "--output-file", str(tmp_path / "o.json")]) == 2
