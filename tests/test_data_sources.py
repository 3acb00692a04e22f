"""Every data-source key the loader implements, given in a config file and loaded through it:
per-split path mappings, format, columns, adapter, header, field, target_path, gold_path, revision;
and `xrobust data stats` on such a config, as a user runs it."""

from __future__ import annotations

import json

import datasets
import pytest
import yaml

from fixtures_tokenizer import tokenizer, tokenizer_dir  # noqa: F401  (session fixtures)
from xrobust.cli import main
from xrobust.config import load_config
from xrobust.data.loading import SOURCE_KEYS, load_bitext
from xrobust.errors import ConfigError
from xrobust.tasks import get_task
from xrobust.tasks.registry import NLI_LABELS
from xrobust.training.data import load_split


@pytest.fixture(autouse=True)
def _quiet():
    datasets.disable_progress_bars()


@pytest.fixture
def files(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "sst.tsv").write_text("s1\tgood film\tpositive\ns2\tbad film\t0\n")  # no header row
    # hub layout with the hub's ClassLabel in another order: read through the task's adapter
    feats = datasets.Features({"premise": datasets.Value("string"), "hypothesis": datasets.Value("string"),
                               "label": datasets.ClassLabel(names=["neutral", "contradiction", "entailment"]),
                               "idx": datasets.Value("int32")})
    for split, n in (("train", 3), ("validation_matched", 2)):
        datasets.Dataset.from_dict({"premise": ["p"] * n, "hypothesis": ["h"] * n, "label": list(range(n)),
                                    "idx": list(range(n))}, features=feats).to_parquet(str(d / f"mnli_{split}.parquet"))
    (d / "qqp.json").write_text(json.dumps({"version": 2, "data": [
        {"q1": "a?", "q2": "b?", "dup": "duplicate"}, {"q1": "c?", "q2": "d?", "dup": "not_duplicate"}]}))
    for split in ("dev", "test"):
        (d / f"de-en.{split}.de").write_text("de-1\tHallo\nde-2\tHaus\nde-3\tfremd\n")
        (d / f"de-en.{split}.en").write_text("en-5\thouse\nen-6\thello\n")
    (d / "gold.dev.tsv").write_text("de-1\ten-6\nde-2\ten-5\n")
    (d / "gold-test-de.tsv").write_text("de-2\ten-5\n")
    (d / "de.conllu").write_text("# sent_id = 1\n1\tHaus\t_\tNOUN" + "\t_" * 6 + "\n2\t.\t_\tPUNCT" + "\t_" * 6 + "\n\n")
    (d / "xquad.de.json").write_text(json.dumps({"data": [{"paragraphs": [{"context": "Paris ist schön.", "qas": [
        {"id": "x1", "question": "Was?", "answers": [{"text": "Paris", "answer_start": 0}]}]}]}]}))
    (d / "tatoeba.deu-eng.deu").write_text("Hallo\nHaus\n")
    (d / "tatoeba.deu-eng.eng").write_text("Hello\nHouse\n")
    return d


def _config(tmp_path, files, sources: dict, **data):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"base": "xstilts_mnli", "model": {"name_or_path": "unused"},
                                    "data": {"sources": sources, **data}}))
    return path


SOURCES = {
    "sst2": {"path": "{root}/sst.tsv", "format": "tsv", "header": False,
             "columns": {"id": "0", "text_a": "1", "label": "2"}},
    "mnli": {"path": {"train": "{root}/mnli_train.parquet", "dev": "{root}/mnli_validation_matched.parquet"},
             "adapter": "hub"},
    "qqp": {"path": "{root}/qqp.json", "field": "data", "columns": {"text_a": "q1", "text_b": "q2", "label": "dup"}},
    "bucc": {"path": "{root}/{lang}-en.{split}.{lang}", "target_path": "{root}/{lang}-en.{split}.en",
             "gold_path": {"dev": "{root}/gold.dev.tsv", "test": "{root}/gold-test-{lang}.tsv"},
             "format": "tsv", "header": False, "columns": {"id": "0", "text": "1"}},
    "udpos": {"path": {"test": "{root}/{lang}.conllu"}},
    "xquad": {"path": {"test": "{root}/xquad.{lang}.json"}, "format": "squad"},
    "tatoeba": {"path": "{root}/tatoeba.deu-eng.deu", "target_path": "{root}/tatoeba.deu-eng.eng", "format": "text"},
    "cosmosqa": {"revision": "refs/convert/parquet"},
}


def test_every_source_key_is_accepted_and_used(files, tmp_path, hub):
    cfg = load_config(str(_config(tmp_path, files, SOURCES, root=str(files))))
    used = {key for src in SOURCES.values() for key in src}
    assert used == set(SOURCE_KEYS)  # this test covers every key the loader reads
    sst = load_split(cfg, get_task("sst2"), "train", "en")
    assert sst["id"] == ["s1", "s2"] and sst["label"] == [1, 0]
    mnli = load_split(cfg, get_task("mnli"), "train", "en")
    assert [NLI_LABELS[k] for k in mnli["label"]] == ["neutral", "contradiction", "entailment"]  # by name
    assert len(load_split(cfg, get_task("mnli"), "dev", "en")) == 2
    qqp = load_split(cfg, get_task("qqp"), "train", "en")
    assert qqp["text_b"] == ["b?", "d?"] and qqp["label"] == [1, 0]
    dev = load_bitext("bucc", "dev", "de", source=cfg.data.sources["bucc"], root=cfg.data.root)
    assert dev.gold == (("de-1", "en-6"), ("de-2", "en-5")) and len(dev.source) == 3
    test = load_bitext("bucc", "test", "de", source=cfg.data.sources["bucc"], root=cfg.data.root)
    assert test.gold == (("de-2", "en-5"),)
    assert load_split(cfg, get_task("udpos"), "test", "de")["tokens"] == [["Haus", "."]]
    assert load_split(cfg, get_task("xquad"), "test", "de")[0]["answers"] == {"text": ["Paris"], "answer_start": [0]}
    tat = load_bitext("tatoeba", "test", "de", source=cfg.data.sources["tatoeba"], root=cfg.data.root)
    assert tat.gold == (("0", "0"), ("1", "1")) and tat.target["text"] == ["Hello", "House"]
    assert len(load_split(cfg, get_task("cosmosqa"), "dev", "en")) == 4  # the hub, at that revision


@pytest.mark.parametrize("source,pattern", [
    ({"path": {"validation": "x.tsv"}}, r"data.sources.sst2.path': expected a path template or a mapping of "
                                        r"splits \(train, dev, test\)"),
    ({"path": "x.tsv", "adapter": "glue"}, r"data.sources.sst2.adapter': 'glue' is not 'hub' or an adapter name"),
    ({"path": "x.xml", "format": "xml"}, r"data.sources.sst2.format': 'xml' is not one of: json, jsonl"),
    ({"path": "x.tsv", "revision": "main"}, r"data.sources.sst2.revision': applies to the hub source"),
    ({"columns": {"text_a": "a"}}, r"data.sources.sst2.path': missing required value"),
    ({"path": "x.tsv", "target_path": "y.tsv"}, r"target_path and gold_path are for retrieval tasks"),
    ({"path": "x.tsv", "header": "maybe"}, r"data.sources.sst2.header': expected bool"),
    ({"path": "x.tsv", "colums": {}}, r"unknown key 'data.sources.sst2.colums'"),
])
def test_bad_source_keys_name_the_file_and_key(files, tmp_path, source, pattern):
    path = _config(tmp_path, files, {"sst2": source})
    with pytest.raises(ConfigError, match=pattern) as err:
        load_config(str(path))
    assert str(path) in str(err.value)


def test_data_stats_cli_on_a_config(files, tmp_path, tokenizer_dir, capsys):
    cfg = _config(tmp_path, files, SOURCES, root=str(files))
    assert main(["data", "stats", "--config", str(cfg), "--tokenizer", str(tokenizer_dir), "--tasks", "sst2",
                 "bucc", "--split", "dev", "--languages", "en", "de", "--max-length", "8", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by = {(r["task"], r["lang"]): r for r in rows}
    assert by[("sst2", "en")]["examples"] == 2 and by[("sst2", "en")]["truncated"] >= 1  # max_length 8
    assert by[("bucc", "de")]["examples"] == 3 and by[("bucc", "de:en")]["examples"] == 2
    assert by[("sst2", "en")]["max"] <= 8


def test_data_stats_skips_a_split_the_task_lacks(tokenizer_dir, capsys, hub):
    assert main(["data", "stats", "--tokenizer", str(tokenizer_dir), "--tasks", "tatoeba", "sst2",
                 "--split", "dev", "--json"]) == 0
    out = capsys.readouterr()
    rows = json.loads(out.out)
    assert [r["task"] for r in rows] == ["sst2"] and rows[0]["examples"] == 4
    assert "task tatoeba has no dev split (it has test); skipped" in out.err
