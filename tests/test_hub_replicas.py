"""Every default hub source, loaded through the unchanged code path (datasets.load_dataset with the
registry's ids, configs, splits and revisions) from replicas with the hub's exact schemas, served by
the replica hub on 127.0.0.1 (tests/hub_server.py, tests/hub_replicas.py)."""

from __future__ import annotations

import datasets
import pytest

from fixtures_tokenizer import tokenizer  # noqa: F401  (session fixture)
from hub_replicas import COSMOS_QA_MAIN, glue_mnli_reordered
from xrobust.data import loading, stats
from xrobust.data.featurize import featurize
from xrobust.data.loading import load_bitext, load_examples
from xrobust.errors import DataError
from xrobust.tasks import get_task
from xrobust.tasks.registry import COSMOS_QA_REVISION, NLI_LABELS

pytestmark = pytest.mark.usefixtures("hub")


@pytest.fixture(autouse=True)
def _quiet():
    datasets.disable_progress_bars()


def _featurize(spec, examples, tokenizer, train):
    kw = dict(max_length=64, doc_stride=16, max_query_length=16) if spec.format == "span_qa" else \
        dict(max_length=48)
    return featurize(examples, spec, tokenizer, train=train, **kw)


def test_requests_go_to_the_replica_hub(hub, tmp_path, monkeypatch):
    import huggingface_hub.constants

    # empty caches: an earlier test's load of the same set must not spare the downloads checked here
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    hub.store.requests.clear()
    load_examples("sst2", "dev")
    paths = [p for _, p in hub.store.requests]
    assert "/datasets/nyu-mll/glue/resolve/main/README.md" in paths
    assert any(p.endswith("/sst2/validation-00000-of-00001.parquet") for p in paths)


def test_replica_schemas_are_the_hubs():
    # what load_dataset hands the adapters: the hub's own features (ClassLabel orders, strings)
    mnli = datasets.load_dataset("nyu-mll/glue", "mnli", split="validation_matched")
    assert mnli.features["label"].names == list(NLI_LABELS)
    assert datasets.load_dataset("nyu-mll/glue", "mnli", split="test_matched")["label"] == [-1] * len(
        datasets.load_dataset("nyu-mll/glue", "mnli", split="test_matched"))
    snli = datasets.load_dataset("stanfordnlp/snli", "plain_text", split="train")
    assert -1 in snli["label"]
    udpos = datasets.load_dataset("google/xtreme", "udpos.Greek", split="validation")
    assert udpos.features["pos_tags"].feature.names[:3] == ["ADJ", "ADP", "ADV"]
    pawsx = datasets.load_dataset("google/xtreme", "PAWS-X.de", split="test")
    assert pawsx.features["label"] == datasets.Value("string")
    squad = datasets.load_dataset("rajpurkar/squad", "plain_text", split="validation")
    assert set(squad.features["answers"]) == {"text", "answer_start"}


def test_labels_are_mapped_by_name_whatever_the_hub_order(hub):
    # datasets.map writes an output column through the input's ClassLabel when the names match;
    # a hub ClassLabel in another order than the registry's must still give the right labels
    glue_mnli_reordered(hub.store, "reordered-classlabel")
    raw = datasets.load_dataset("nyu-mll/glue", "mnli", split="train", revision="reordered-classlabel")
    assert raw.features["label"].names == ["contradiction", "entailment", "neutral"]
    assert raw["label"] == [1, 2, 0]
    ds = load_examples("mnli", "train", source={"revision": "reordered-classlabel"})
    assert [NLI_LABELS[k] for k in ds["label"]] == ["entailment", "neutral", "contradiction"]


INTERMEDIATE = {"anli_plus": ("train", "dev", "test"), "mnli": ("train", "dev", "test"),
                "qqp": ("train", "dev"), "sst2": ("train", "dev"), "squad": ("train", "dev"),
                "hellaswag": ("train", "dev"), "cosmosqa": ("train", "dev"), "commonsenseqa": ("train", "dev")}


@pytest.mark.parametrize("name", list(INTERMEDIATE))
def test_intermediate_task_loads_and_featurizes_every_split(name, tokenizer):
    spec = get_task(name)
    assert spec.splits() == INTERMEDIATE[name]
    for split in spec.splits():
        ds = load_examples(spec, split)
        feats = _featurize(spec, ds, tokenizer, train=split == "train")
        assert len(ds) >= 2 and len(feats) >= len(ds) - (split == "train" and spec.format == "span_qa")
        assert len(set(ds["id"])) == len(ds)
        if spec.format in ("classification", "multiple_choice"):
            assert set(ds["label"]) <= set(range(len(spec.labels)))
            assert len(set(ds["label"])) > 1  # labels come through, not a constant
    if name == "anli_plus":  # ANLI r1-r3 + MNLI + SNLI, SNLI's label -1 row dropped
        train = load_examples(spec, "train")
        assert len(train) == 3 * 8 + 8 + 7
        assert sum(i.startswith("snli_train:") for i in train["id"]) == 7


def test_cosmos_qa_main_is_script_only_and_the_pin_loads(hub, tmp_path):
    assert get_task("cosmosqa").sources["train"][0].revision == COSMOS_QA_REVISION
    assert hub.store.repos["allenai/cosmos_qa"].refs["main"] == COSMOS_QA_MAIN
    ds = load_examples("cosmosqa", "train")
    assert len(ds) == 8 and ds["label"] == [i % 4 for i in range(8)]
    # a fresh cache: datasets falls back to any cached copy of a dataset it cannot load
    with pytest.raises(DataError, match=r"allenai/cosmos_qa .*revision 'main'.*loading script.*"
                                        r"data.sources.cosmosqa.revision"):
        load_examples("cosmosqa", "train", source={"revision": "main"}, cache_dir=tmp_path)


# every XTREME task: each split in three languages, one of them in a non-Latin script
XTREME = {
    "xnli": ("de", "ru", "zh"), "pawsx": ("de", "ja", "ko"), "udpos": ("de", "el", "zh"),
    "panx": ("de", "ar", "hi"), "xquad": ("de", "ru", "th"), "mlqa": ("de", "ar", "zh"),
    "tydiqa": ("fi", "ar", "te"), "bucc": ("de", "fr", "ru"), "tatoeba": ("de", "ru", "ja"),
}


@pytest.mark.parametrize("name", list(XTREME))
def test_xtreme_task_default_source_loads_and_featurizes_every_split(name, tokenizer):
    spec = get_task(name)
    for split in spec.splits():
        langs = spec.split_languages(split)
        for lang in [lang for lang in XTREME[name] if lang in langs] or list(langs):
            if spec.format == "retrieval":
                bt = load_bitext(spec, split, lang)
                assert len(bt.gold) == len(bt.source) >= 2
                assert len(set(bt.source["id"])) == len(bt.source)  # ids are ids, not a constant
                for side in (bt.source, bt.target):
                    assert not any(t.endswith("\n") for t in side["text"])
                    assert len(_featurize(spec, side, tokenizer, train=False)) == len(side)
                continue
            ds = load_examples(spec, split, lang)
            feats = _featurize(spec, ds, tokenizer, train=split == "train")
            assert len(ds) >= 2 and len(feats) >= len(ds)
            if spec.format == "tagging":
                flat = {t for seq in ds["tags"] for t in seq}
                assert flat <= set(range(len(spec.labels))) and len(flat) > 1
            if spec.format == "span_qa":
                for context, ans in zip(ds["context"], ds["answers"]):
                    start, text = ans["answer_start"][0], ans["text"][0]
                    assert context[start:start + len(text)] == text


def test_tatoeba_ids_never_come_from_source_lang():
    raw = datasets.load_dataset("google/xtreme", "tatoeba.rus", split="validation")
    assert len(set(raw["source_lang"])) == 1  # the same path fragment on every row
    bt = load_bitext("tatoeba", "test", "ru")
    assert bt.source["id"] == [f"ru-{i}" for i in range(len(raw))]
    assert bt.gold == tuple((f"ru-{i}", f"en-{i}") for i in range(len(raw)))
    assert bt.source["text"][0] == raw["source_sentence"][0].rstrip("\n")


def test_udpos_dev_exists_where_the_hub_has_it():
    assert len(load_examples("udpos", "dev", "de")) > 0
    with pytest.raises(DataError, match=r"split 'dev' exists only in"):
        load_examples("udpos", "dev", "yo")
    assert len(load_examples("udpos", "test", "yo")) > 0


def test_sources_that_differ_from_xtreme_warn_once(monkeypatch, capfd):
    monkeypatch.setattr(loading, "_WARNED", set())
    load_examples("udpos", "test", "el")
    load_examples("udpos", "test", "de")
    load_examples("xnli", "test", "de")
    err = capfd.readouterr().err
    assert err.count("warning: task udpos: google/xtreme UD-POS is not XTREME's") == 1
    assert "Ancient Greek" in err and "data.xtreme_dir" in err and "xnli" not in err
    load_bitext("bucc", "dev", "de")
    assert "warning: task bucc: google/xtreme bucc18 holds only the gold pairs" in capfd.readouterr().err


def test_shifted_answers_are_moved_back_and_counted(capfd):
    # google/xtreme strips contexts without moving answer_start: the replica's second XQuAD row
    raw = datasets.load_dataset("google/xtreme", "XQuAD.de", split="validation")
    start, text = raw[1]["answers"]["answer_start"][0], raw[1]["answers"]["text"][0]
    assert raw[1]["context"][start:start + len(text)] != text
    ds = load_examples("xquad", "test", "de")
    start = ds[1]["answers"]["answer_start"][0]
    assert ds[1]["context"][start:start + len(text)] == text
    assert stats._LOADS[("xquad", "test", "de")] == {"realigned": 1, "unaligned": 0}
    assert "xquad test de: 1 answer(s) moved back onto their text" in capfd.readouterr().err
