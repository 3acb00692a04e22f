"""`data.xtreme_dir`: a small folder in the layout XTREME's scripts/download_data.sh writes
(github.com/google-research/xtreme: download_data.sh + utils_preprocess.py), read as XTREME reads it."""

from __future__ import annotations

import csv
import json

import datasets
import pytest
import yaml

from xrobust.data.loading import load_bitext, load_examples
from xrobust.errors import DataError
from xrobust.tasks import get_task


@pytest.fixture(autouse=True)
def _quiet():
    datasets.disable_progress_bars()


def _tsv(path, rows):
    # utils_preprocess.py writes with csv.writer(delimiter="\t"): fields with quotes get quoted
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        csv.writer(f, delimiter="\t").writerows(rows)


def _tags(path, sentences):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("".join("\t".join(tok) + "\n" for tok in s) + "\n" for s in sentences))


def _squad(path, qas, remove_answers=False):
    # remove_qa_test_annotations() keeps one answer {"answer_start": 0, "text": ""}
    path.parent.mkdir(parents=True, exist_ok=True)
    data = [{"paragraphs": [{"context": c, "qas": [{"id": i, "question": q, "answers": (
        [{"answer_start": 0, "text": ""}] if remove_answers else [{"answer_start": c.index(a), "text": a}])}]}]}
        for i, q, c, a in qas]
    path.write_text(json.dumps({"version": "1.1", "data": data}))


QA = [("q1", "Wo?", "Paris liegt in Frankreich.", "Frankreich"), ("q2", "Wer?", "Ana kam spät.", "Ana")]


@pytest.fixture(scope="module")
def xtreme(tmp_path_factory):
    d = tmp_path_factory.mktemp("download")
    _tsv(d / "xnli/train-en.tsv", [["A man sleeps.", "A person rests.", "entailment"],
                                   ['"Hi" he said', "He spoke.", "entailment"], ["a", "b", "contradiction"]])
    _tsv(d / "xnli/dev-de.tsv", [["Ein Mann.", "Eine Person.", "neutral"], ["x", "y", "contradiction"]])
    _tsv(d / "xnli/test-de.tsv", [["Ein Mann.", "Eine Person."]])  # the script drops test labels
    _tsv(d / "pawsx/train-en.tsv", [["a b", "b a", "1"], ["c", "d", "0"]])
    _tsv(d / "pawsx/dev-ja.tsv", [["東京", "京東", "0"], ["はい", "はい", "1"]])
    _tags(d / "udpos/train-en.tsv", [[("ftp:", "X"), ("it", "PRON"), (".", "PUNCT")], [("Go", "VERB")]])
    _tags(d / "udpos/dev-ru.tsv", [[("Он", "PRON"), ("спит", "VERB")]])
    _tags(d / "udpos/test-ru.tsv", [[("Он",), ("спит",)]])
    _tags(d / "panx/train-en.tsv", [[("Ana", "B-PER"), ("in", "O"), ("Paris", "B-LOC")]])
    _tags(d / "panx/dev-ar.tsv", [[("باريس", "B-LOC"), ("في", "O")]])
    _squad(d / "squad/train-v1.1.json", QA)
    _squad(d / "squad/dev-v1.1.json", QA[:1])
    _squad(d / "xquad/xquad.de.json", QA, remove_answers=True)
    _squad(d / "mlqa/MLQA_V1/dev/dev-context-de-question-de.json", QA)
    _squad(d / "mlqa/MLQA_V1/test/test-context-de-question-de.json", QA, remove_answers=True)
    _squad(d / "tydiqa/tydiqa-goldp-v1.1-train/tydiqa.goldp.en.train.json", QA)
    _squad(d / "tydiqa/tydiqa-goldp-v1.1-dev/tydiqa.goldp.ar.dev.json", QA, remove_answers=True)
    for split in ("dev", "test"):
        _tsv(d / f"bucc2018/de-en.{split}.de", [["de-000000001", "Hallo Welt"], ["de-000000002", "Haus"],
                                                ["de-000000003", "Ablenkung"]])
        _tsv(d / f"bucc2018/de-en.{split}.en", [["en-000000007", "house"], ["en-000000009", "hello world"]])
    _tsv(d / "bucc2018/de-en.dev.gold", [["de-000000001", "en-000000009"], ["de-000000002", "en-000000007"]])
    (d / "tatoeba").mkdir()
    (d / "tatoeba/de-en.de").write_text("Hallo\nHaus\n")
    (d / "tatoeba/de-en.en").write_text("hello\nhouse\n")
    return d


def test_classification_reads_as_xtreme_does(xtreme):
    train = load_examples("xnli", "train", xtreme_dir=xtreme)
    # XTREME reads its csv-written TSV with quoting off: the quote characters are part of the text
    assert train["text_a"] == ["A man sleeps.", '"""Hi"" he said"', "a"]
    assert train["label"] == [0, 0, 2]
    assert load_examples("mnli", "train", xtreme_dir=xtreme)["text_a"] == train["text_a"]  # XTREME's MNLI
    dev = load_examples("xnli", "dev", "de", xtreme_dir=xtreme)
    assert dev["text_b"] == ["Eine Person.", "y"] and dev["label"] == [1, 2]
    assert load_examples("pawsx", "dev", "ja", xtreme_dir=xtreme)["label"] == [0, 1]


def test_tagging_keeps_tokens_as_written(xtreme):
    upos = get_task("udpos").labels
    train = load_examples("udpos", "train", xtreme_dir=xtreme)
    assert train["tokens"] == [["ftp:", "it", "."], ["Go"]]  # no "xx:" prefix stripping here
    assert train["tags"][0] == [upos.index("X"), upos.index("PRON"), upos.index("PUNCT")]
    assert load_examples("udpos", "dev", "ru", xtreme_dir=xtreme)["tokens"] == [["Он", "спит"]]
    assert load_examples("panx", "dev", "ar", xtreme_dir=xtreme)["tags"] == [[5, 0]]


def test_qa_reads_squad_json(xtreme):
    for task in ("squad", "xquad", "mlqa"):
        train = load_examples(task, "train", xtreme_dir=xtreme)
        assert train["id"] == ["q1", "q2"] and train[0]["answers"] == {"text": ["Frankreich"], "answer_start": [15]}
    assert load_examples("xquad", "dev", xtreme_dir=xtreme)["id"] == ["q1"]
    assert load_examples("mlqa", "dev", "de", xtreme_dir=xtreme)["context"][1] == "Ana kam spät."
    assert len(load_examples("tydiqa", "train", xtreme_dir=xtreme)) == 2


@pytest.mark.parametrize("task,lang,pattern", [
    ("xnli", "de", r"xnli/test-de\.tsv: no labels\. XTREME's scripts/download_data\.sh removes test labels"),
    ("udpos", "ru", r"udpos/test-ru\.tsv: tokens without tags\. XTREME's .*evaluation\.split: dev"),
    ("xquad", "de", r"xquad/xquad\.de\.json: no answers\. XTREME's .*leaderboard"),
    ("mlqa", "de", r"test-context-de-question-de\.json: no answers"),
    ("tydiqa", "ar", r"tydiqa\.goldp\.ar\.dev\.json: no answers"),
])
def test_test_splits_without_labels_are_errors(xtreme, task, lang, pattern):
    with pytest.raises(DataError, match=pattern):
        load_examples(task, "test", lang, xtreme_dir=xtreme)


def test_bucc_mines_among_distractors_and_tatoeba_refuses_the_sorted_side(xtreme):
    bt = load_bitext("bucc", "dev", "de", xtreme_dir=xtreme)
    assert bt.source["id"] == ["de-000000001", "de-000000002", "de-000000003"]  # one has no pair
    assert bt.gold == (("de-000000001", "en-000000009"), ("de-000000002", "en-000000007"))
    with pytest.raises(DataError, match=r"de-en\.test\.gold: missing\. XTREME's download removes the BUCC test gold"):
        load_bitext("bucc", "test", "de", xtreme_dir=xtreme)
    with pytest.raises(DataError, match=r"de-en\.en: XTREME's download sorts Tatoeba's English side"):
        load_bitext("tatoeba", "test", "de", xtreme_dir=xtreme)


def test_missing_file_names_the_layout(xtreme):
    with pytest.raises(DataError, match=r"xnli/dev-fr\.tsv: file not found in data\.xtreme_dir \(task xnli, "
                                        r"split dev, language fr"):
        load_examples("xnli", "dev", "fr", xtreme_dir=xtreme)
    with pytest.raises(DataError, match=r"data\.xtreme_dir .*nope: not a folder"):
        load_examples("xnli", "dev", "de", xtreme_dir=xtreme / "nope")


@pytest.mark.usefixtures("hub")
def test_config_xtreme_dir_and_hub_for_the_rest(xtreme, tmp_path):
    from xrobust.config import load_config
    from xrobust.training.data import load_split

    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump({"base": "xstilts_mnli", "data": {"xtreme_dir": str(xtreme)}}))
    cfg = load_config(str(cfg_path))
    assert cfg.data.xtreme_dir == str(xtreme)
    assert load_split(cfg, get_task("xnli"), "dev", "de")["text_a"] == ["Ein Mann.", "x"]
    # MNLI dev is not in the XTREME download: it comes from the (replica) hub
    assert len(load_split(cfg, get_task("mnli"), "dev", "en")) == 4
