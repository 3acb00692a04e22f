"""Loading canonical examples: hub adapters on fixture rows in the hub layout, every local
format, and every bad-input case (each must be a DataError naming file/line and expectation)."""

from __future__ import annotations

import json

import datasets
import pytest

from xrobust.data.loading import hub_load_args, load_bitext, load_examples, task_labels
from xrobust.errors import DataError
from xrobust.tasks import get_task


@pytest.fixture(autouse=True)
def _quiet_datasets():
    datasets.disable_progress_bars()
    yield


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "hf_cache"


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def load_hub_layout(tmp_path, cache, task, rows, split="train", lang="en", name="hub.jsonl"):
    """Rows written exactly as the hub dataset lays them out, read through the task's adapter."""
    path = write_jsonl(tmp_path / name, rows)
    return load_examples(task, split, lang, source={"path": str(path), "adapter": "hub"},
                         cache_dir=cache)


# ---------------------------------------------------------------------------------------------
# adapters on hub-layout rows
# ---------------------------------------------------------------------------------------------

def test_glue_mnli_qqp_sst2(tmp_path, cache):
    ds = load_hub_layout(tmp_path, cache, "mnli", [
        {"premise": "A man.", "hypothesis": "A person.", "label": 0, "idx": 0},
        {"premise": "A dog.", "hypothesis": "A cat.", "label": 2, "idx": 1}])
    assert ds[1] == {"id": "1", "text_a": "A dog.", "text_b": "A cat.", "label": 2}
    ds = load_hub_layout(tmp_path, cache, "qqp", [
        {"question1": "q1?", "question2": "q2?", "label": 1, "idx": 5}], name="qqp.jsonl")
    assert ds[0] == {"id": "5", "text_a": "q1?", "text_b": "q2?", "label": 1}
    ds = load_hub_layout(tmp_path, cache, "sst2", [
        {"sentence": "great film", "label": 1, "idx": 3}], name="sst2.jsonl")
    assert ds[0] == {"id": "3", "text_a": "great film", "text_b": None, "label": 1}


def test_anli_and_snli_drop_unlabeled(tmp_path, cache):
    path = write_jsonl(tmp_path / "snli.jsonl", [
        {"premise": "p0", "hypothesis": "h0", "label": 1},
        {"premise": "p1", "hypothesis": "h1", "label": -1},
        {"premise": "p2", "hypothesis": "h2", "label": 2}])
    ds = load_examples("anli_plus", "train", source={"path": str(path), "adapter": "snli"},
                       cache_dir=cache)
    assert ds["text_a"] == ["p0", "p2"] and ds["label"] == [1, 2]
    ds = load_hub_layout(tmp_path, cache, "anli_plus", [
        {"uid": "u-1", "premise": "p", "hypothesis": "h", "label": 0, "reason": ""}],
        name="anli.jsonl")
    assert ds[0]["id"] == "u-1" and ds[0]["label"] == 0


SQUAD_ROW = {"id": "q1", "title": "T", "context": "Paris is in France.", "question": "Where?",
             "answers": {"text": ["France"], "answer_start": [12]}}


def test_squad_layout(tmp_path, cache):
    ds = load_hub_layout(tmp_path, cache, "squad", [SQUAD_ROW])
    assert ds[0] == {"id": "q1", "question": "Where?", "context": "Paris is in France.",
                     "answers": {"text": ["France"], "answer_start": [12]}}
    ds = load_hub_layout(tmp_path, cache, "mlqa", [SQUAD_ROW], split="test", lang="de",
                         name="mlqa.jsonl")
    assert ds[0]["answers"]["text"] == ["France"]


def test_tydiqa_train_is_english_only_and_test_filters_language(tmp_path, cache):
    rows = [dict(SQUAD_ROW, id="english-1-0"), dict(SQUAD_ROW, id="arabic-2-0"),
            dict(SQUAD_ROW, id="english-3-1")]
    ds = load_hub_layout(tmp_path, cache, "tydiqa", rows, split="train")
    assert ds["id"] == ["english-1-0", "english-3-1"]
    ds = load_hub_layout(tmp_path, cache, "tydiqa", rows, split="test", lang="ar", name="t.jsonl")
    assert ds["id"] == ["arabic-2-0"]


def test_multiple_choice_adapters(tmp_path, cache):
    ds = load_hub_layout(tmp_path, cache, "hellaswag", [
        {"ind": 4, "activity_label": "x", "ctx_a": "A man", "ctx_b": "sits", "ctx": "A man sits",
         "endings": ["a", "b", "c", "d"], "source_id": "s", "split": "train",
         "split_type": "indomain", "label": "2"}])
    assert ds[0] == {"id": "4", "prompt": "A man sits", "choices": ["a", "b", "c", "d"],
                     "label": 2}
    ds = load_hub_layout(tmp_path, cache, "cosmosqa", [
        {"id": "c1", "context": "Ctx.", "question": "Why?", "answer0": "a", "answer1": "b",
         "answer2": "c", "answer3": "d", "label": 3}], name="cosmos.jsonl")
    assert ds[0] == {"id": "c1", "prompt": "Ctx. Why?", "choices": ["a", "b", "c", "d"],
                     "label": 3}
    ds = load_hub_layout(tmp_path, cache, "commonsenseqa", [
        {"id": "k1", "question": "Q?", "question_concept": "q",
         "choices": {"label": ["A", "B", "C", "D", "E"], "text": ["v", "w", "x", "y", "z"]},
         "answerKey": "D"}], name="csqa.jsonl")
    assert ds[0] == {"id": "k1", "prompt": "Q?", "choices": ["v", "w", "x", "y", "z"],
                     "label": 3}


def test_xnli_filters_language_and_maps_gold_label(tmp_path, cache):
    rows = [{"language": "de", "sentence1": "s1", "sentence2": "s2", "gold_label": "neutral"},
            {"language": "en", "sentence1": "e1", "sentence2": "e2", "gold_label": "entailment"},
            {"language": "de", "sentence1": "t1", "sentence2": "t2",
             "gold_label": "contradiction"}]
    ds = load_hub_layout(tmp_path, cache, "xnli", rows, split="test", lang="de")
    assert ds["text_a"] == ["s1", "t1"] and ds["label"] == [1, 2]
    assert len(set(ds["id"])) == 2


def test_pawsx_string_labels(tmp_path, cache):
    ds = load_hub_layout(tmp_path, cache, "pawsx", [
        {"sentence1": "a", "sentence2": "b", "label": "1"},
        {"sentence1": "c", "sentence2": "d", "label": "0"}], split="test", lang="ja")
    assert ds["label"] == [1, 0]


def test_udpos_and_panx_classlabel_features_are_mapped_by_name(tmp_path, cache):
    # Parquet keeps the hub's ClassLabel features; use a scrambled name order to prove that
    # the integers are mapped through their names, not assumed to share our order.
    names = ["VERB", "NOUN", "PUNCT"]
    feats = datasets.Features({
        "tokens": datasets.List(datasets.Value("string")),
        "pos_tags": datasets.List(datasets.ClassLabel(names=names))})
    path = tmp_path / "udpos.parquet"
    datasets.Dataset.from_dict({"tokens": [["Dogs", "bark", "."]], "pos_tags": [[1, 0, 2]]},
                               features=feats).to_parquet(str(path))
    ds = load_examples("udpos", "test", "af", source={"path": str(path), "adapter": "hub"},
                       cache_dir=cache)
    upos = get_task("udpos").labels
    assert ds[0]["tags"] == [upos.index("NOUN"), upos.index("VERB"), upos.index("PUNCT")]
    ds = load_hub_layout(tmp_path, cache, "panx", [
        {"tokens": ["Ana", "in", "Paris"], "ner_tags": [1, 0, 5], "langs": ["en"] * 3}])
    assert ds[0]["tokens"] == ["Ana", "in", "Paris"] and ds[0]["tags"] == [1, 0, 5]


def test_bitext_hub_layout(tmp_path, cache):
    path = write_jsonl(tmp_path / "bucc.jsonl", [
        {"source_sentence": "Hallo", "target_sentence": "Hello", "source_lang": "de-000001",
         "target_lang": "en-000007"},
        {"source_sentence": "Welt", "target_sentence": "World", "source_lang": "de-000002",
         "target_lang": "en-000003"}])
    bt = load_bitext("bucc", "test", "de", source={"path": str(path), "adapter": "hub"},
                     cache_dir=cache)
    assert bt.source["text"] == ["Hallo", "Welt"] and bt.target["text"] == ["Hello", "World"]
    assert bt.gold == (("de-000001", "en-000007"), ("de-000002", "en-000003"))
    path = write_jsonl(tmp_path / "tatoeba.jsonl", [
        {"source_sentence": "Hola", "target_sentence": "Hi", "source_lang": "spa",
         "target_lang": "eng"}])
    bt = load_bitext("tatoeba", "test", "es", source={"path": str(path), "adapter": "hub"},
                     cache_dir=cache)
    assert bt.gold == (("es-0", "en-0"),)
    ds = load_examples("tatoeba", "test", "es", source={"path": str(path), "adapter": "hub"},
                       cache_dir=cache)
    assert ds.column_names == ["id", "text"] and ds["text"] == ["Hola"]


# ---------------------------------------------------------------------------------------------
# hub arguments and offline behaviour
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("task,split,lang,expected", [
    ("mnli", "dev", "en", [("nyu-mll/glue", "mnli", "validation_matched")]),
    ("qqp", "train", "en", [("nyu-mll/glue", "qqp", "train")]),
    ("sst2", "dev", "en", [("nyu-mll/glue", "sst2", "validation")]),
    ("squad", "train", "en", [("rajpurkar/squad", "plain_text", "train")]),
    ("hellaswag", "dev", "en", [("Rowan/hellaswag", None, "validation")]),
    ("cosmosqa", "train", "en", [("allenai/cosmos_qa", None, "train")]),
    ("commonsenseqa", "dev", "en", [("tau/commonsense_qa", None, "validation")]),
    ("xnli", "train", "en", [("nyu-mll/glue", "mnli", "train")]),
    ("xnli", "test", "sw", [("google/xtreme", "XNLI", "test")]),
    ("pawsx", "dev", "ko", [("google/xtreme", "PAWS-X.ko", "validation")]),
    ("udpos", "test", "af", [("google/xtreme", "udpos.Afrikaans", "test")]),
    ("udpos", "train", "en", [("google/xtreme", "udpos.English", "train")]),
    ("panx", "test", "my", [("google/xtreme", "PAN-X.my", "test")]),
    ("xquad", "test", "th", [("google/xtreme", "XQuAD.th", "validation")]),
    ("xquad", "train", "en", [("rajpurkar/squad", "plain_text", "train")]),
    ("mlqa", "test", "hi", [("google/xtreme", "MLQA.hi.hi", "test")]),
    ("tydiqa", "train", "en", [("google/xtreme", "tydiqa", "train")]),
    ("tydiqa", "test", "sw", [("google/xtreme", "tydiqa", "validation")]),
    ("bucc", "dev", "zh", [("google/xtreme", "bucc18.zh", "validation")]),
    ("tatoeba", "test", "zh", [("google/xtreme", "tatoeba.cmn", "validation")]),
    ("tatoeba", "test", "fa", [("google/xtreme", "tatoeba.pes", "validation")]),
])
def test_hub_load_args(task, split, lang, expected):
    assert [(c.dataset, c.config, c.split) for c in hub_load_args(task, split, lang)] == expected


def test_hub_offline_gives_clear_data_error(monkeypatch, cache):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError) as err:
        load_examples("sst2", "train", cache_dir=cache)
    msg = str(err.value)
    assert "nyu-mll/glue" in msg and "'sst2'" in msg and "not in the local datasets cache" in msg
    assert "data.sources.sst2.path" in msg


# ---------------------------------------------------------------------------------------------
# local formats (canonical layout)
# ---------------------------------------------------------------------------------------------

def test_demo_template_jsonl(tmp_path, cache):
    write_jsonl(tmp_path / "demo_xnli" / "test-xc.jsonl", [
        {"id": "d1", "text_a": "a", "text_b": "b", "label": "contradiction"},
        {"text_a": "c", "text_b": "d", "label": 0}])
    ds = load_examples("demo_xnli", "test", "xc", root=tmp_path, cache_dir=cache)
    assert ds["id"] == ["d1", "demo_xnli-test-xc-1"] and ds["label"] == [2, 0]


def test_json_list_and_field(tmp_path, cache):
    path = tmp_path / "sst.json"
    path.write_text(json.dumps({"data": [{"sentence": "fine", "sentiment": "positive"}]}))
    ds = load_examples("sst2", "dev", source={
        "path": str(path), "field": "data",
        "columns": {"text_a": "sentence", "label": "sentiment"}}, cache_dir=cache)
    assert ds[0] == {"id": "sst2-dev-en-0", "text_a": "fine", "text_b": None, "label": 1}


def test_parquet_and_csv(tmp_path, cache):
    datasets.Dataset.from_dict({"question": ["Q"], "context": ["ctx"],
                                "answers": [{"text": ["ctx"], "answer_start": [0]}]}
                               ).to_parquet(str(tmp_path / "dev.parquet"))
    ds = load_examples("squad", "dev", source={"path": str(tmp_path / "{split}.parquet")},
                       cache_dir=cache)
    assert ds[0]["answers"] == {"text": ["ctx"], "answer_start": [0]}
    (tmp_path / "q.csv").write_text('q1,q2,is_dup\n"a, b",c,1\n')
    ds = load_examples("qqp", "train", source={
        "path": str(tmp_path / "q.csv"),
        "columns": {"text_a": "q1", "text_b": "q2", "label": "is_dup"}}, cache_dir=cache)
    assert ds[0]["text_a"] == "a, b" and ds[0]["label"] == 1


def test_tsv_keeps_quotes_and_headerless_columns(tmp_path, cache):
    (tmp_path / "x.tsv").write_text('premise\thypothesis\tlabel\n"Hi" he said\tok\tneutral\n')
    ds = load_examples("xnli", "test", "fr", source={"path": str(tmp_path / "x.tsv"),
                                                     "columns": {"text_a": "premise",
                                                                 "text_b": "hypothesis"}},
                       cache_dir=cache)
    assert ds[0]["text_a"] == '"Hi" he said' and ds[0]["label"] == 1
    (tmp_path / "n.tsv").write_text("s1\tgood\t1\n")
    ds = load_examples("sst2", "train", source={
        "path": str(tmp_path / "n.tsv"), "header": False,
        "columns": {"id": "0", "text_a": "1", "label": "2"}}, cache_dir=cache)
    assert ds[0] == {"id": "s1", "text_a": "good", "text_b": None, "label": 1}


def test_split_dict_and_object_source(tmp_path, cache):
    class Src:  # the config may hand over a dataclass instead of a dict
        path = {"train": str(write_jsonl(tmp_path / "tr.jsonl",
                                         [{"text_a": "x", "label": "negative"}]))}
        format = "jsonl"
        columns = None

    assert load_examples("sst2", "train", source=Src(), cache_dir=cache)["label"] == [0]
    with pytest.raises(DataError, match=r"data.sources.sst2.path has no 'dev' split; "
                                        r"configured: train"):
        load_examples("sst2", "dev", source=Src(), cache_dir=cache)


def test_conll_strips_language_prefix_and_docstart(tmp_path, cache):
    (tmp_path / "panx.conll").write_text(
        "-DOCSTART- O\n\nen:Ana\tB-PER\nen:in\tO\nen:New York\tB-LOC\n\n"
        "Paris B-LOC\n. O\n\n\n")
    ds = load_examples("panx", "train", source={"path": str(tmp_path / "panx.conll")},
                       cache_dir=cache)
    assert ds["tokens"] == [["Ana", "in", "New York"], ["Paris", "."]]
    assert ds["tags"] == [[1, 0, 5], [5, 0]]


def test_conllu_skips_comments_multiword_and_empty_nodes(tmp_path, cache):
    def tok(i, form, upos):
        return f"{i}\t{form}\t_\t{upos}\t_\t_\t_\t_\t_\t_\n"
    (tmp_path / "de.conllu").write_text(
        "# sent_id = 1\n# text = Im Haus.\n" + "1-2\tIm\t_\t_\t_\t_\t_\t_\t_\t_\n"
        + tok(1, "In", "ADP") + tok(2, "dem", "DET") + tok(3, "Haus", "NOUN")
        + "3.1\tx\t_\t_\t_\t_\t_\t_\t_\t_\n" + tok(4, ".", "PUNCT") + "\n")
    ds = load_examples("udpos", "test", "de", source={"path": str(tmp_path / "de.conllu")},
                       cache_dir=cache)
    upos = get_task("udpos").labels
    assert ds[0]["tokens"] == ["In", "dem", "Haus", "."]
    assert ds[0]["tags"] == [upos.index(t) for t in ("ADP", "DET", "NOUN", "PUNCT")]


def test_ccg_open_label_set(tmp_path, cache):
    (tmp_path / "train.conll").write_text("I\tNP\nrun\tS\\NP\n\n")
    (tmp_path / "dev.conll").write_text("I\tNP\nsaw\t(S\\NP)/NP\n\n")
    src = {"path": str(tmp_path / "{split}.conll")}
    assert task_labels("ccg", source=src, cache_dir=cache) == ("NP", "S\\NP")
    assert load_examples("ccg", "train", source=src, cache_dir=cache)["tags"] == [[0, 1]]
    # a tag unseen in training is ignored (-100), not an error, outside train
    assert load_examples("ccg", "dev", source=src, cache_dir=cache)["tags"] == [[0, -100]]


def test_demo_retrieval_bitext_by_shared_ids_and_gold_file(tmp_path, cache):
    write_jsonl(tmp_path / "demo_tatoeba" / "test-xa.jsonl",
                [{"id": "s1", "text": "ka"}, {"id": "s2", "text": "kb"}])
    write_jsonl(tmp_path / "demo_tatoeba" / "test-en.jsonl",
                [{"id": "s2", "text": "B"}, {"id": "s1", "text": "A"}, {"id": "s9", "text": "Z"}])
    bt = load_bitext("demo_tatoeba", "test", "xa", root=tmp_path, cache_dir=cache)
    assert bt.gold == (("s1", "s1"), ("s2", "s2")) and len(bt.target) == 3
    (tmp_path / "gold.tsv").write_text("s1\ts9\n")
    bt = load_bitext("demo_tatoeba", "test", "xa", root=tmp_path, cache_dir=cache, source={
        "path": "{root}/demo_tatoeba/{split}-{lang}.jsonl", "gold_path": str(tmp_path / "gold.tsv")})
    assert bt.gold == (("s1", "s9"),)


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------

def test_missing_file(tmp_path, cache):
    with pytest.raises(DataError, match=r"nope\.jsonl: file not found \(expected jsonl data\)"):
        load_examples("sst2", "train", source={"path": str(tmp_path / "nope.jsonl")},
                      cache_dir=cache)
    with pytest.raises(DataError, match=r"demo_nli/dev-en\.jsonl: file not found"):
        load_examples("demo_nli", "dev", root=tmp_path, cache_dir=cache)


def test_empty_files(tmp_path, cache):
    (tmp_path / "e.jsonl").write_text("")
    with pytest.raises(DataError, match=r"e\.jsonl: empty file"):
        load_examples("sst2", "train", source={"path": str(tmp_path / "e.jsonl")},
                      cache_dir=cache)
    (tmp_path / "e.conll").write_text("\n\n-DOCSTART- O\n\n")
    with pytest.raises(DataError, match=r"e\.conll: no sentences found"):
        load_examples("panx", "train", source={"path": str(tmp_path / "e.conll")},
                      cache_dir=cache)
    (tmp_path / "h.csv").write_text("text_a,label\n")
    with pytest.raises(DataError, match=r"h\.csv.*(no examples|cannot be read)"):
        load_examples("sst2", "train", source={"path": str(tmp_path / "h.csv")},
                      cache_dir=cache)
    # a filter that leaves nothing is also "no examples"
    write_jsonl(tmp_path / "x.jsonl", [{"language": "en", "sentence1": "a", "sentence2": "b",
                                        "gold_label": "neutral"}])
    with pytest.raises(DataError, match=r"no examples for task xnli split test language de"):
        load_examples("xnli", "test", "de", source={"path": str(tmp_path / "x.jsonl"),
                                                    "adapter": "hub"}, cache_dir=cache)


def test_label_outside_label_set(tmp_path, cache):
    path = write_jsonl(tmp_path / "l.jsonl", [{"text_a": "a", "text_b": "b", "label": "neutral"},
                                              {"text_a": "a", "text_b": "b", "label": "maybe"}])
    with pytest.raises(DataError) as err:
        load_examples("mnli", "train", source={"path": str(path)}, cache_dir=cache)
    assert "l.jsonl:2: label 'maybe' is not in the label set of task mnli" in str(err.value)
    assert "entailment, neutral, contradiction" in str(err.value)
    path = write_jsonl(tmp_path / "i.jsonl", [{"text_a": "a", "label": 5}])
    with pytest.raises(DataError, match=r"i\.jsonl:1: label 5 .* sst2 .*negative, positive"):
        load_examples("sst2", "train", source={"path": str(path)}, cache_dir=cache)
    (tmp_path / "t.conll").write_text("Ana\tB-PER\n\nBob\tB-MISC\n")
    with pytest.raises(DataError, match=r"t\.conll:3: label 'B-MISC' .* task panx"):
        load_examples("panx", "train", source={"path": str(tmp_path / "t.conll")},
                      cache_dir=cache)
    (tmp_path / "r.csv").write_text("text_a,label\nok,positive\nbad,neutral\n")
    with pytest.raises(DataError, match=r"r\.csv:3: label 'neutral'"):  # line 3: the header is line 1
        load_examples("sst2", "train", source={"path": str(tmp_path / "r.csv")},
                      cache_dir=cache)


def test_missing_required_column(tmp_path, cache):
    path = write_jsonl(tmp_path / "c.jsonl", [{"text_a": "a", "label": 0}])
    with pytest.raises(DataError, match=r"c\.jsonl: missing required column\(s\) text_b for a "
                                        r"classification task"):
        load_examples("mnli", "train", source={"path": str(path)}, cache_dir=cache)
    with pytest.raises(DataError, match=r"c\.jsonl: missing column\(s\) premise, hypothesis "
                                        r"for the glue_mnli layout"):
        load_examples("mnli", "train", source={"path": str(path), "adapter": "hub"},
                      cache_dir=cache)
    with pytest.raises(DataError, match=r"columns mapping names missing file column\(s\): "
                                        r"text_a <- 'sentence'"):
        load_examples("sst2", "train", source={"path": str(path),
                                               "columns": {"text_a": "sentence"}},
                      cache_dir=cache)


def test_language_not_in_task(cache):
    with pytest.raises(DataError, match=r"task xnli: language 'ja' is not one of its languages "
                                        r"\(ar bg de"):
        load_examples("xnli", "test", "ja", cache_dir=cache)
    with pytest.raises(DataError, match=r"split 'train' exists only in en \(training is "
                                        r"zero-shot"):
        load_examples("panx", "train", "de", cache_dir=cache)
    with pytest.raises(DataError, match=r"language 'en' is not one of"):
        hub_load_args("tatoeba", "test", "en")


def test_split_that_does_not_exist(cache):
    with pytest.raises(DataError, match=r"unknown split 'validation'; expected one of "
                                        r"train, dev, test"):
        load_examples("mnli", "validation", cache_dir=cache)
    with pytest.raises(DataError, match=r"task qqp has no 'test' split on the hub; "
                                        r"available: train, dev"):
        load_examples("qqp", "test", cache_dir=cache)
    with pytest.raises(DataError, match=r"tatoeba has no 'dev' split"):
        hub_load_args("tatoeba", "dev", "de")


def test_ccg_and_demo_need_configured_paths(cache):
    with pytest.raises(DataError, match=r"task ccg has no public download.*LDC.*"
                                        r"data: \{sources: \{ccg: \{path:"):
        load_examples("ccg", "train", cache_dir=cache)
    with pytest.raises(DataError, match=r"demo_nli reads demo data from data.root, which is "
                                        r"not set"):
        load_examples("demo_nli", "train", cache_dir=cache)


def test_parse_errors_name_the_line(tmp_path, cache):
    (tmp_path / "b.jsonl").write_text('{"text_a": "a", "label": 0}\n{"text_a": oops}\n')
    with pytest.raises(DataError, match=r"b\.jsonl:2: invalid JSON"):
        load_examples("sst2", "train", source={"path": str(tmp_path / "b.jsonl")},
                      cache_dir=cache)
    (tmp_path / "b.conll").write_text("Ana\tB-PER\nlonely\n")
    with pytest.raises(DataError, match=r"b\.conll:2: expected 'token<TAB>tag'"):
        load_examples("panx", "train", source={"path": str(tmp_path / "b.conll")},
                      cache_dir=cache)
    (tmp_path / "b.conllu").write_text("1\tHaus\tNOUN\n")
    with pytest.raises(DataError, match=r"b\.conllu:1: expected 10 tab-separated CoNLL-U"):
        load_examples("udpos", "test", "de", source={"path": str(tmp_path / "b.conllu")},
                      cache_dir=cache)


def test_shape_errors(tmp_path, cache):
    path = write_jsonl(tmp_path / "m.jsonl", [{"tokens": ["a", "b"], "tags": ["O"]}])
    with pytest.raises(DataError, match=r"m\.jsonl:1: 2 tokens but 1 tags"):
        load_examples("panx", "train", source={"path": str(path)}, cache_dir=cache)
    path = write_jsonl(tmp_path / "mc.jsonl", [{"prompt": "p", "choices": ["a", "b"],
                                                "label": 0}])
    with pytest.raises(DataError, match=r"mc\.jsonl:1: expected 4 choices for task hellaswag"):
        load_examples("hellaswag", "train", source={"path": str(path)}, cache_dir=cache)


def test_unknown_extension_and_format(tmp_path, cache):
    (tmp_path / "d.dat").write_text("x")
    with pytest.raises(DataError, match=r"d\.dat: cannot infer the format"):
        load_examples("sst2", "train", source={"path": str(tmp_path / "d.dat")},
                      cache_dir=cache)
    with pytest.raises(DataError, match=r"data.sources.sst2.format: 'xml' is not one of"):
        load_examples("sst2", "train", source={"path": "x", "format": "xml"}, cache_dir=cache)


def test_qa_answers_off_by_a_few_characters_are_moved_back(tmp_path, cache, capfd):
    from xrobust.data import stats
    from xrobust.data.loading import MAX_ANSWER_SHIFT, align_answers

    ctx = "Paris is in France. France is big."
    path = write_jsonl(tmp_path / "qa.jsonl", [
        {"id": "ok", "question": "q", "context": ctx, "answers": {"text": ["France"], "answer_start": [12]}},
        {"id": "shift", "question": "q", "context": ctx, "answers": {"text": ["France"], "answer_start": [14]}},
        {"id": "far", "question": "q", "context": ctx, "answers": {"text": ["big"], "answer_start": [2]}}])
    ds = load_examples("squad", "train", source={"path": str(path)}, cache_dir=cache)
    assert [a["answer_start"] for a in ds["answers"]] == [[12], [12], [2]]  # nearest occurrence; far kept
    assert stats._LOADS[("squad", "train", "en")] == {"realigned": 1, "unaligned": 1}
    assert "squad train en: 1 answer(s) moved back onto their text" in capfd.readouterr().err
    # the window is the limit: an occurrence further away than MAX_ANSWER_SHIFT is not taken
    far = {"text": ["x"], "answer_start": [0]}
    assert align_answers(["." * (MAX_ANSWER_SHIFT + 1) + "x"], [far]) == ([far], 0, 1)
    assert align_answers(["." * MAX_ANSWER_SHIFT + "x"], [far])[0][0]["answer_start"] == [MAX_ANSWER_SHIFT]


def test_percentiles_are_nearest_rank():
    from xrobust.data.stats import percentiles

    assert percentiles(list(range(1, 101))) == {"p50": 50, "p90": 90, "p99": 99, "max": 100}
    assert percentiles([7]) == {"p50": 7, "p90": 7, "p99": 7, "max": 7}
    assert percentiles([]) == {"p50": 0, "p90": 0, "p99": 0, "max": 0}


def test_canonical_parquet_classlabels_map_by_name(tmp_path, cache):
    # a file in canonical layout whose label column is a ClassLabel in another order than ours
    names = ["contradiction", "neutral", "entailment"]
    feats = datasets.Features({"text_a": datasets.Value("string"), "text_b": datasets.Value("string"),
                               "label": datasets.ClassLabel(names=names)})
    datasets.Dataset.from_dict({"text_a": ["a", "b", "c"], "text_b": ["x", "y", "z"], "label": [0, 1, 2]},
                               features=feats).to_parquet(str(tmp_path / "m.parquet"))
    ds = load_examples("mnli", "train", source={"path": str(tmp_path / "m.parquet")}, cache_dir=cache)
    labels = get_task("mnli").labels
    assert [labels[k] for k in ds["label"]] == names


# -- text: UTF-8, none missing or blank, named by file and line -------------------------------------

def test_rows_are_named_by_the_line_they_start_on(tmp_path, cache):
    # a quoted CSV field spanning two lines, and a blank line: the bad row starts on line 6
    (tmp_path / "q.csv").write_text('text_a,label\n"two\nlines",positive\n\nok,negative\n"  ",positive\n')
    with pytest.raises(DataError, match=r"q\.csv:6 \(id 'sst2-train-en-2'\): text_a is empty \('  '\)"):
        load_examples("sst2", "train", source={"path": str(tmp_path / "q.csv")}, cache_dir=cache)
    # a hub-layout file whose adapter drops rows (SNLI's unlabeled ones): the line still names the row
    path = write_jsonl(tmp_path / "snli.jsonl", [
        {"premise": "p", "hypothesis": "h", "label": -1}, {"premise": "p", "hypothesis": "h", "label": 0},
        {"premise": "p", "hypothesis": " ", "label": 1}])
    with pytest.raises(DataError, match=r"snli\.jsonl:3 \(id .*\): text_b is empty"):
        load_examples("anli_plus", "train", source={"path": str(path), "adapter": "snli"}, cache_dir=cache)


@pytest.mark.parametrize("task, split, lang, row", [
    ("hellaswag", "train", "en", {"prompt": "p", "choices": ["a", None, "c", "d"], "label": 0}),
    ("panx", "train", "en", {"tokens": [], "tags": []}),
    ("squad", "train", "en", {"question": "", "context": "c", "answers": {"text": [], "answer_start": []}}),
])
def test_every_format_checks_its_text(tmp_path, cache, task, split, lang, row):
    path = write_jsonl(tmp_path / "t.jsonl", [row])
    with pytest.raises(DataError, match=r"t\.jsonl:1 \(id .*\): (choices\[1\] is missing|tokens is an empty list|"
                                        r"question is empty)"):
        load_examples(task, split, lang, source={"path": str(path)}, cache_dir=cache)


def test_csv_text_is_taken_as_written(tmp_path, cache):
    # pandas would read these fields as missing values
    (tmp_path / "na.tsv").write_text("text_a\ttext_b\tlabel\nNA\tnull\tneutral\nNone\tnan\tentailment\n")
    ds = load_examples("mnli", "train", source={"path": str(tmp_path / "na.tsv")}, cache_dir=cache)
    assert ds["text_a"] == ["NA", "None"] and ds["text_b"] == ["null", "nan"]


def test_text_that_is_not_utf8_is_named_by_file_and_line(tmp_path, cache):
    def load(name, data, task="sst2", split="train", lang="en", **source):
        (tmp_path / name).write_bytes(data)
        return load_examples(task, split, lang, source={"path": str(tmp_path / name), **source}, cache_dir=cache)

    for name, data, task, split, lang, line in [
        ("u.csv", b"text_a,label\nok,positive\nna\xefve,negative\n", "sst2", "train", "en", 3),
        ("u.conllu", b"# c\n1\tHaus\t_\tNOUN\t_\t_\t_\t_\t_\t_\n\n1\tStra\xdfe\t_\tNOUN\t_\t_\t_\t_\t_\t_\n",
         "udpos", "test", "de", 4),
        ("u.json", b'{"data": [{"paragraphs": [{"context": "c",\n "qas": []}]}],\n "v": "\xff"}', "squad", "train",
         "en", 3),
    ]:
        with pytest.raises(DataError, match=rf"u\.{name[2:]}:{line}: not valid UTF-8 \(.*\); expected UTF-8 text"):
            load(name, data, task, split, lang, **({"format": "squad"} if name.endswith(".json") else {}))
    # a Parquet file stores bytes: the row is named when the loader reads it
    import pyarrow as pa
    import pyarrow.parquet as pq

    text = pa.array([b"ok", b"caf\xe9"], type=pa.binary()).view(pa.string())
    pq.write_table(pa.table({"text_a": text, "label": [0, 1]}), tmp_path / "u.parquet")
    with pytest.raises(DataError, match=r"u\.parquet, row 2: text_a is not valid UTF-8"):
        load_examples("sst2", "train", source={"path": str(tmp_path / "u.parquet")}, cache_dir=cache)


def test_parse_error_report_survives_bytes_that_are_not_utf8(tmp_path):
    from pathlib import Path

    from xrobust.data.loading import _parse_error

    path = Path(tmp_path / "p.jsonl")
    path.write_bytes(b'{"text_a": "caf\xe9"}\n{"text_a": oops}\n')
    assert _parse_error(path, "jsonl", ValueError("x")).startswith(f"{path}:2: invalid JSON")
