"""Registry completeness and the `xrobust tasks` command."""

from __future__ import annotations

import json

import pytest

from xrobust.cli import main
from xrobust.data.loading import hub_load_args
from xrobust.errors import ConfigError, DataError
from xrobust.tasks import (
    DEMO_LANGUAGES,
    INTERMEDIATE_TASKS,
    TARGET_TASKS,
    all_tasks,
    get_task,
)
from xrobust.tasks.registry import COSMOS_QA_REVISION, TATOEBA_CODES, UD_LANGUAGE_NAMES

# REFERENCE section 3, verbatim.
XTREME_LANGUAGES = {
    "xnli": "ar bg de el en es fr hi ru sw th tr ur vi zh",
    "pawsx": "de en es fr ja ko zh",
    "udpos": "af ar bg de el en es et eu fa fi fr he hi hu id it ja kk ko mr nl pt ru ta te th "
             "tl tr ur vi yo zh",
    "panx": "af ar bg bn de el en es et eu fa fi fr he hi hu id it ja jv ka kk ko ml mr ms my "
            "nl pt ru sw ta te th tl tr ur vi yo zh",
    "xquad": "ar de el en es hi ru th tr vi zh",
    "mlqa": "ar de en es hi vi zh",
    "tydiqa": "ar bn en fi id ko ru sw te",
    "bucc": "de fr ru zh",
}

EXPECTED = {
    # name: (format, metric, n labels, train_task)
    "anli_plus": ("classification", "accuracy", 3, "anli_plus"),
    "mnli": ("classification", "accuracy", 3, "mnli"),
    "qqp": ("classification", "accuracy", 2, "qqp"),
    "sst2": ("classification", "accuracy", 2, "sst2"),
    "squad": ("span_qa", "squad_em_f1", 0, "squad"),
    "hellaswag": ("multiple_choice", "accuracy", 4, "hellaswag"),
    "cosmosqa": ("multiple_choice", "accuracy", 4, "cosmosqa"),
    "commonsenseqa": ("multiple_choice", "accuracy", 5, "commonsenseqa"),
    "ccg": ("tagging", "accuracy", 0, "ccg"),
    "xnli": ("classification", "accuracy", 3, "mnli"),
    "pawsx": ("classification", "accuracy", 2, "pawsx"),
    "udpos": ("tagging", "seqeval_f1", 17, "udpos"),
    "panx": ("tagging", "seqeval_f1", 7, "panx"),
    "xquad": ("span_qa", "squad_em_f1", 0, "squad"),
    "mlqa": ("span_qa", "mlqa_em_f1", 0, "squad"),
    "tydiqa": ("span_qa", "squad_em_f1", 0, "tydiqa"),
    "bucc": ("retrieval", "bucc_f1", 0, None),
    "tatoeba": ("retrieval", "tatoeba_accuracy", 0, None),
}


def test_eighteen_real_tasks_in_paper_order():
    assert INTERMEDIATE_TASKS == ("anli_plus", "mnli", "qqp", "sst2", "squad", "hellaswag",
                                  "cosmosqa", "commonsenseqa", "ccg")
    assert TARGET_TASKS == ("xnli", "pawsx", "udpos", "panx", "xquad", "mlqa", "tydiqa", "bucc",
                            "tatoeba")
    real = all_tasks(include_demo=False)
    assert [t.name for t in real] == list(INTERMEDIATE_TASKS + TARGET_TASKS)
    assert all(t.phase == "intermediate" for t in real[:9])
    assert all(t.phase == "target" for t in real[9:])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_format_metric_labels_train_task(name):
    fmt, metric, n_labels, train_task = EXPECTED[name]
    t = get_task(name)
    assert (t.format, t.metric, len(t.labels), t.train_task) == (fmt, metric, n_labels,
                                                                train_task)


@pytest.mark.parametrize("name", sorted(XTREME_LANGUAGES))
def test_exact_xtreme_language_lists(name):
    assert get_task(name).languages == tuple(XTREME_LANGUAGES[name].split())


def test_tatoeba_languages_are_the_36_with_hub_codes():
    langs = get_task("tatoeba").languages
    assert len(langs) == 36 and "en" not in langs and len(set(langs)) == 36
    # The 40 XTREME languages (PAN-X covers all of them) minus en, ms, my, yo.
    assert set(langs) == set(get_task("panx").languages) - {"en", "ms", "my", "yo"}
    assert set(TATOEBA_CODES) == set(langs)
    assert set(UD_LANGUAGE_NAMES) == set(get_task("udpos").languages)


def test_intermediate_tasks_are_english_only():
    for name in INTERMEDIATE_TASKS:
        assert get_task(name).languages == ("en",)


def test_labels_and_heads():
    assert get_task("udpos").labels[:3] == ("ADJ", "ADP", "ADV")
    assert get_task("panx").labels == ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")
    assert get_task("mnli").labels == get_task("xnli").labels == ("entailment", "neutral",
                                                                  "contradiction")
    assert get_task("sst2").pair is False and get_task("qqp").pair is True
    assert get_task("hellaswag").num_choices == 4
    assert get_task("commonsenseqa").num_choices == 5
    # xquad and mlqa are both trained on SQuAD: one target model, one head.
    assert get_task("xquad").head == get_task("mlqa").head
    assert get_task("bucc").head is None and get_task("tatoeba").head is None
    assert get_task("ccg").local_only and get_task("ccg").open_labels


def test_qa_lengths():
    for name in ("squad", "xquad", "mlqa", "tydiqa"):
        t = get_task(name)
        assert (t.max_length, t.doc_stride, t.max_query_length) == (384, 128, 64)
    for name in ("mnli", "udpos", "panx", "xnli"):
        assert get_task(name).max_length == 128


def test_sources_use_real_hub_ids():
    anli = get_task("anli_plus").sources["train"]
    assert [(h.dataset, h.split) for h in anli] == [
        ("facebook/anli", "train_r1"), ("facebook/anli", "train_r2"),
        ("facebook/anli", "train_r3"), ("nyu-mll/glue", "train"), ("stanfordnlp/snli", "train")]
    assert get_task("xnli").sources["train"] == get_task("mnli").sources["train"]
    assert get_task("xquad").sources["train"][0].dataset == "rajpurkar/squad"
    assert get_task("udpos").sources["test"][0].config == "udpos.{ud_name}"
    assert "train" not in get_task("tatoeba").sources


def test_split_languages_are_zero_shot():
    xnli = get_task("xnli")
    assert xnli.split_languages("train") == ("en",)
    assert xnli.split_languages("test") == xnli.languages
    assert get_task("xquad").split_languages("dev") == ("en",)  # SQuAD dev
    assert get_task("tydiqa").splits() == ("train", "test")


def test_udpos_dev_languages_match_the_hub():
    # UD 2.5 (and google/xtreme's udpos configs) have no dev set for Kazakh, Thai, Tagalog, Yoruba
    udpos = get_task("udpos")
    assert set(udpos.languages) - set(udpos.split_languages("dev")) == {"kk", "th", "tl", "yo"}
    assert udpos.split_languages("test") == udpos.languages
    with pytest.raises(DataError, match=r"split 'dev' exists only in af ar .* got 'th'"):
        hub_load_args("udpos", "dev", "th")


def test_hub_sources_that_differ_from_xtreme_say_so():
    for name in ("udpos", "pawsx", "bucc"):
        assert "data.xtreme_dir" in get_task(name).hub_difference
    assert not get_task("xnli").hub_difference and not get_task("panx").hub_difference


def test_demo_tasks():
    demo = [t for t in all_tasks() if t.demo]
    assert {t.name for t in demo} == {"demo_nli", "demo_sentiment", "demo_mc", "demo_qa",
                                      "demo_tag", "demo_xnli", "demo_pos", "demo_ner",
                                      "demo_xqa", "demo_tatoeba"}
    for t in demo:
        assert not t.sources and t.local_template
        expected = ("en",) if t.phase == "intermediate" else DEMO_LANGUAGES
        if t.format == "retrieval":  # each language is retrieved against English
            expected = DEMO_LANGUAGES[1:]
        assert t.languages == expected
    assert get_task("demo_ner").labels == ("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG",
                                           "I-ORG")
    assert len(get_task("demo_tag").labels) == 11
    assert get_task("demo_tatoeba").splits() == ("dev", "test")


def test_unknown_task_names_known_ones():
    with pytest.raises(ConfigError, match=r"unknown task 'nope'.*known tasks: anli_plus, mnli"):
        get_task("nope")


def test_specs_are_frozen_and_hashable():
    t = get_task("mnli")
    with pytest.raises(AttributeError):
        t.name = "x"
    assert {t: 1}[get_task("mnli")] == 1


def test_cli_tasks_json(capsys):
    assert main(["tasks", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(INTERMEDIATE_TASKS + TARGET_TASKS)
    by_name = {r["name"]: r for r in rows}
    for key in ("name", "format", "phase", "languages", "metric", "labels", "train_task", "head",
                "sources", "splits", "max_length"):
        assert key in by_name["xnli"]
    assert by_name["xnli"]["languages"] == XTREME_LANGUAGES["xnli"].split()
    assert by_name["xnli"]["sources"]["dev"][0] == {
        "dataset": "google/xtreme", "config": "XNLI", "split": "validation",
        "adapter": "xtreme_xnli", "revision": None}
    assert by_name["cosmosqa"]["sources"]["train"][0]["revision"] == COSMOS_QA_REVISION
    assert by_name["udpos"]["split_languages_only"]["dev"] == [
        lang for lang in XTREME_LANGUAGES["udpos"].split() if lang not in ("kk", "th", "tl", "yo")]


def test_cli_tasks_json_all_includes_demo(capsys):
    assert main(["tasks", "--json", "--all"]) == 0
    names = [r["name"] for r in json.loads(capsys.readouterr().out)]
    assert len(names) == 28 and "demo_tatoeba" in names


def test_cli_tasks_table_is_aligned(capsys):
    assert main(["tasks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 19 and lines[0].split()[0] == "name"
    col = lines[0].index("phase")
    assert all(line[col:].split()[0] in ("phase", "intermediate", "target") for line in lines)
