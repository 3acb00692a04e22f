"""Encoders beyond XLM-R.

A tiny BERT (random weights from a BertConfig, its own WordPiece vocabulary, loaded through
BertTokenizerFast; no hub) makes segment ids (token_type_ids) on pair tasks: they must survive
featurization, the feature cache, the collator and the model and reach the encoder, including in a
real `xrobust train` run. XLM-R's tokenizer makes none, and its features keep today's layout.
Encoder construction takes its arguments from the architecture's config, and the retrieval layer
defaults to a fraction of the encoder's depth and is checked against it before anything runs.
"""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

os.environ.setdefault("DS_ACCELERATOR", "cpu")

from fixtures_tokenizer import tokenizer  # noqa: E402,F401  (the XLM-R-layout session fixture)
from xrobust.cli import main  # noqa: E402
from xrobust.data.collate import Collator  # noqa: E402
from xrobust.data.featurize import featurize  # noqa: E402
from xrobust.errors import ConfigError  # noqa: E402
from xrobust.tasks.registry import NLI_LABELS  # noqa: E402

WORDS = ("a the cat dog bird man woman child sleeps runs eats sits sings is are not on in under near red big "
         "small old park house tree river and where who what does do").split()
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "##s", "##ing", ".", ",", "?"]
LAYERS = 2


@pytest.fixture(scope="module", autouse=True)
def _restore_environment(restore_environment):
    yield


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> Path:
    """A 2-layer BERT with random (seeded) weights and a WordPiece vocabulary of its own."""
    from transformers import AutoModel, BertConfig, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    tok = BertTokenizerFast.from_pretrained(str(folder))
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=LAYERS, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, type_vocab_size=2,
                        pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    AutoModel.from_config(config, add_pooling_layer=False).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def bert_tokenizer(bert_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(bert_dir))  # what a run loads
    assert tok.is_fast and "token_type_ids" in tok.model_input_names
    return tok


def spec(fmt, labels=None, pair=False, name="t"):
    return SimpleNamespace(name=name, format=fmt, labels=labels, pair=pair)


def sentence(rng, lo, hi) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def nli_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"id": f"{seed}-{i}", "text_a": sentence(rng, 3, 9) + " .", "text_b": sentence(rng, 2, 6),
             "label": NLI_LABELS[i % 3]} for i in range(n)]


def bert_segments(ids: list[int], sep_id: int, pad_id: int) -> list[int]:
    """BERT's segment ids for [CLS] a [SEP] (b [SEP]) [PAD]...: 0 up to the first [SEP], 1 after it, 0 on padding."""
    first = ids.index(sep_id)
    return [0 if j <= first or t == pad_id else 1 for j, t in enumerate(ids)]


def examples(fmt: str, n: int = 6, seed: int = 0):
    from datasets import Dataset

    rng = random.Random(seed)
    if fmt == "classification":
        rows = [{**r, "label": i % 3} for i, r in enumerate(nli_rows(n, seed))]
    elif fmt == "multiple_choice":
        rows = [{"id": f"m{i}", "prompt": sentence(rng, 3, 8), "choices": [sentence(rng, 1, 4) for _ in range(3)],
                 "label": i % 3} for i in range(n)]
    elif fmt == "span_qa":
        rows = []
        for i in range(n):
            before, after = sentence(rng, 6, 20), sentence(rng, 6, 20)
            context = f"{before} big red house {after} ."
            rows.append({"id": f"q{i}", "question": "where does the " + sentence(rng, 1, 3), "context": context,
                         "answers": {"text": ["big red house"], "answer_start": [len(before) + 1]}})
    elif fmt == "tagging":
        rows = [{"id": f"g{i}", "tokens": words, "tags": [0] * len(words)}
                for i, words in enumerate(sentence(rng, 2, 8).split() for _ in range(n))]
    else:
        rows = [{"id": f"r{i}", "text": sentence(rng, 2, 8)} for i in range(n)]
    return Dataset.from_list(rows)


KW = {"classification": dict(max_length=16), "multiple_choice": dict(max_length=12), "retrieval": dict(max_length=16),
      "tagging": dict(max_length=16), "span_qa": dict(max_length=24, doc_stride=6, max_query_length=8)}
SPECS = {"classification": spec("classification", NLI_LABELS, pair=True), "multiple_choice": spec("multiple_choice"),
         "span_qa": spec("span_qa"), "tagging": spec("tagging", ("X",)), "retrieval": spec("retrieval")}


# -- featurization ----------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["classification", "multiple_choice", "span_qa", "retrieval"])
def test_featurizers_keep_bert_segment_ids(bert_tokenizer, fmt):
    feats = featurize(examples(fmt), SPECS[fmt], bert_tokenizer, train=True, **KW[fmt])
    assert "token_type_ids" in feats.column_names
    sep, pad = bert_tokenizer.sep_token_id, bert_tokenizer.pad_token_id
    rows = [(ids, types) for f in feats
            for ids, types in (zip(f["input_ids"], f["token_type_ids"]) if fmt == "multiple_choice"
                               else [(f["input_ids"], f["token_type_ids"])])]
    assert rows
    for ids, types in rows:
        assert types == bert_segments(ids, sep, pad)
    if fmt == "retrieval":
        assert not any(t for _, types in rows for t in types)  # one segment
    else:
        assert all(any(types) for _, types in rows)  # the second text of every pair is segment 1
    if fmt == "span_qa":
        assert len(feats) > len(examples(fmt))  # windows of the context: each carries its segment ids


def test_tagging_windows_are_one_segment(bert_tokenizer):
    feats = featurize(examples("tagging"), SPECS["tagging"], bert_tokenizer, train=True, **KW["tagging"])
    assert "token_type_ids" not in feats.column_names  # the encoder's default (all zeros) is the same


@pytest.mark.parametrize("fmt, columns", [
    ("classification", ["input_ids", "attention_mask", "labels", "example_id", "truncated"]),
    ("multiple_choice", ["input_ids", "attention_mask", "labels", "example_id", "truncated"]),
    ("span_qa", ["input_ids", "attention_mask", "example_id", "start_positions", "end_positions"]),
    ("retrieval", ["input_ids", "attention_mask", "example_id", "truncated"]),
])
def test_xlmr_features_keep_their_layout(tokenizer, fmt, columns):  # noqa: F811
    assert "token_type_ids" not in tokenizer.model_input_names
    feats = featurize(examples(fmt), SPECS[fmt], tokenizer, train=True, **KW[fmt])
    assert feats.column_names == columns


def test_feature_cache_never_reuses_another_segment_layout(bert_dir, tmp_path):
    """The tokenizer's backend fingerprint does not say whether it returns token_type_ids (its
    model_input_names do): the cache key holds both."""
    from transformers import BertTokenizerFast

    from xrobust.data.cache import cache_key, cached_featurize
    from xrobust.data.tokenizer import tokenizer_fingerprint

    with_types = BertTokenizerFast.from_pretrained(str(bert_dir))
    without = BertTokenizerFast.from_pretrained(str(bert_dir), model_input_names=["input_ids", "attention_mask"])
    assert tokenizer_fingerprint(with_types) == tokenizer_fingerprint(without)
    ex, sp = examples("classification"), SPECS["classification"]
    assert cache_key(ex, sp, with_types, max_length=16, train=True) != cache_key(ex, sp, without, max_length=16,
                                                                                  train=True)
    first = cached_featurize(ex, sp, with_types, tmp_path / "cache", max_length=16, train=True)
    second = cached_featurize(ex, sp, without, tmp_path / "cache", max_length=16, train=True)
    assert "token_type_ids" in first.column_names and "token_type_ids" not in second.column_names
    assert first["input_ids"] == second["input_ids"]
    assert len(list((tmp_path / "cache").iterdir())) == 2


# -- collation ----------------------------------------------------------------------------------------

def test_collator_pads_segment_ids_with_zero():
    # pad id 1 (XLM-R's): segment ids are padded with 0 whatever the tokenizer's pad id
    feats = [{"input_ids": [5, 6, 7, 8], "attention_mask": [1, 1, 1, 1], "token_type_ids": [0, 0, 1, 1], "labels": 2},
             {"input_ids": [5, 6], "attention_mask": [1, 1], "token_type_ids": [0, 1], "labels": 0}]
    batch = Collator(pad_token_id=1)(feats)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8], [5, 6, 1, 1]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 1, 1], [0, 1, 0, 0]]
    fixed = Collator(pad_token_id=1, padding="max_length", max_length=5, pad_to_multiple_of=3)(feats)
    assert fixed["token_type_ids"].tolist() == [[0, 0, 1, 1, 0, 0], [0, 1, 0, 0, 0, 0]]
    assert fixed["token_type_ids"].shape == fixed["input_ids"].shape
    # multiple choice: [n_choices][len] per feature -> (B, n, L), padded across every choice
    mc = [{"input_ids": [[5, 6, 7], [5, 6]], "attention_mask": [[1, 1, 1], [1, 1]],
           "token_type_ids": [[0, 1, 1], [0, 1]], "labels": 1},
          {"input_ids": [[5, 6], [5, 6, 7, 8]], "attention_mask": [[1, 1], [1, 1, 1, 1]],
           "token_type_ids": [[0, 1], [0, 0, 1, 1]], "labels": 0}]
    batch = Collator(pad_token_id=1)(mc)
    assert batch["token_type_ids"].tolist() == [[[0, 1, 1, 0], [0, 1, 0, 0]], [[0, 1, 0, 0], [0, 0, 1, 1]]]
    assert batch["token_type_ids"].shape == batch["input_ids"].shape == (2, 2, 4)
    # features without segment ids (XLM-R) give batches without them
    plain = Collator(pad_token_id=1)([{k: v for k, v in f.items() if k != "token_type_ids"} for f in feats])
    assert sorted(plain) == ["attention_mask", "input_ids", "labels"]


# -- the model --------------------------------------------------------------------------------------

def _record_segments(encoder) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    encoder.embeddings.token_type_embeddings.register_forward_pre_hook(lambda m, a: seen.append(a[0].clone()))
    return seen


def test_model_passes_segment_ids_to_the_encoder(bert_dir):
    from xrobust.modeling import HeadSpec, XRobustModel
    from xrobust.training.engine import load_encoder

    torch.manual_seed(0)
    model = XRobustModel(load_encoder(str(bert_dir), torch.float32, 0.0),
                         [HeadSpec("nli", "classification", 3), HeadSpec("mc", "multiple_choice", 2)], 0.0).eval()
    seen = _record_segments(model.encoder)
    ids = torch.tensor([[2, 5, 6, 3, 7, 8, 3], [2, 9, 3, 10, 3, 0, 0]])
    mask = (ids != 0).long()
    types = torch.tensor([[0, 0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 0, 0]])
    with torch.no_grad():
        with_types = model(head="nli", input_ids=ids, attention_mask=mask, token_type_ids=types).logits
        assert torch.equal(seen[-1], types)
        without = model(head="nli", input_ids=ids, attention_mask=mask).logits
        assert not seen[-1].any()  # the encoder's default: all segment 0
        assert not torch.allclose(with_types, without)  # segment 1 has an embedding of its own
        # multiple choice: (B, n, L) is flattened to (B * n, L) for the encoder, segment ids alike
        mc_ids, mc_types = ids.view(1, 2, 7), types.view(1, 2, 7)
        model(head="mc", input_ids=mc_ids, attention_mask=mask.view(1, 2, 7), token_type_ids=mc_types)
        assert torch.equal(seen[-1], types)


def test_load_encoder_takes_its_arguments_from_the_architecture(bert_dir, tmp_path):
    from transformers import DistilBertConfig, XLMRobertaConfig

    from xrobust.modeling import HeadSpec, XRobustModel
    from xrobust.modeling.encoder import dropout_keys, encoder_kwargs, set_dropout
    from xrobust.training.engine import load_encoder

    # XLM-R: exactly the arguments it always had
    assert dropout_keys(XLMRobertaConfig()) == ["attention_probs_dropout_prob", "hidden_dropout_prob"]
    assert encoder_kwargs(XLMRobertaConfig()) == {"add_pooling_layer": False}
    bert = load_encoder(str(bert_dir), torch.float32, 0.25)
    assert (bert.config.hidden_dropout_prob, bert.config.attention_probs_dropout_prob) == (0.25, 0.25)
    assert bert.config.classifier_dropout is None and bert.pooler is None
    # DistilBERT: other dropout names, no pooler argument, no segment ids
    distil_dir = tmp_path / "distil"
    DistilBertConfig(vocab_size=len(VOCAB), dim=32, n_layers=1, n_heads=2, hidden_dim=64,
                     max_position_embeddings=64).save_pretrained(str(distil_dir))
    torch.manual_seed(0)
    distil = load_encoder(str(distil_dir), torch.float32, 0.0, random_init=True)
    assert type(distil).__name__ == "DistilBertModel"
    assert {k: getattr(distil.config, k) for k in ("dropout", "attention_dropout")} == {"dropout": 0.0,
                                                                                        "attention_dropout": 0.0}
    model = XRobustModel(distil, [HeadSpec("nli", "classification", 3)], 0.0)
    out = model(head="nli", input_ids=torch.tensor([[2, 5, 6, 3]]), attention_mask=torch.ones(1, 4, dtype=torch.long),
                labels=torch.tensor([1]))
    assert out.logits.shape == (1, 3) and torch.isfinite(out.loss)
    # a config that names no dropout: the setting is refused rather than ignored
    from transformers import PretrainedConfig

    with pytest.raises(ConfigError, match=r"key 'model.dropout'.*no dropout probability"):
        set_dropout(PretrainedConfig(), 0.1)


# -- the retrieval layer --------------------------------------------------------------------------------

def test_retrieval_layer_defaults_to_a_fraction_of_the_depth():
    from xrobust.config.schema import ExperimentConfig
    from xrobust.evaluation.retrieval import default_layer, retrieval_layer

    assert default_layer(24) == 14  # XLM-R Large, as X-STILTs and XTREME pool
    assert [default_layer(n) for n in (1, 2, 6, 12)] == [1, 1, 4, 7]
    assert ExperimentConfig().evaluation.layer is None
    assert retrieval_layer(None, 24, "xlm-roberta-large") == 14
    assert retrieval_layer(24, 24, "x") == 24 and retrieval_layer(0, 12, "x") == 0
    with pytest.raises(ConfigError) as err:
        retrieval_layer(14, 12, "bert-base-multilingual-cased")
    assert str(err.value) == ("key 'evaluation.layer': 14 is out of range; the encoder bert-base-multilingual-cased "
                              "has 12 layers (hidden states 0..12, 0 = embeddings); unset, the layer is 7 "
                              "(14/24 of the depth)")


def _write_nli(folder: Path) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", 16, 1), ("dev", 8, 2)):
        (folder / f"mnli-{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in nli_rows(n, seed)))
    return {"mnli": {"path": {"train": str(folder / "mnli-train.jsonl"), "dev": str(folder / "mnli-dev.jsonl")}}}


def _config(path: Path, bert_dir: Path, tmp_path: Path, **sections) -> Path:
    cfg = {"name": "bert", "output_dir": str(tmp_path / "runs"), "seed": 3, "deepspeed": "cpu",
           "model": {"name_or_path": str(bert_dir), "dtype": "fp32", "dropout": 0.0},
           "tracking": {"mode": "disabled"},
           "data": {"cache_dir": str(tmp_path / "cache"), "sources": _write_nli(tmp_path / "data")},
           "phases": {"intermediate": {"tasks": ["mnli"], "batch_size": 4, "micro_batch_size": 4, "max_steps": 2,
                                       "lr": 1e-3, "eval_every": 0, "save_every": 0, "max_dev_examples": 8,
                                       "max_length": 24}},
           **sections}
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


def test_a_layer_beyond_the_encoder_stops_the_run_before_training(bert_dir, tmp_path, capsys):
    from xrobust.config import load_config
    from xrobust.evaluation.retrieval import check_retrieval_layer

    cfg = _config(tmp_path / "c.yaml", bert_dir, tmp_path, evaluation={"tasks": ["tatoeba"], "layer": 14})
    assert main(["pipeline", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"key 'evaluation.layer': 14 is out of range; the encoder {bert_dir} has {LAYERS} layers" in err, err
    assert not (tmp_path / "runs" / "bert").exists()  # a run that could not start leaves nothing behind
    unset = load_config(str(_config(tmp_path / "d.yaml", bert_dir, tmp_path, evaluation={"tasks": ["tatoeba"]})))
    assert check_retrieval_layer(unset, str(bert_dir)) == 1  # 14/24 of 2 layers, rounded half up


def test_bert_pair_task_trains_with_segment_ids(bert_dir, tmp_path):
    """`xrobust train` on an NLI pair task with the tiny BERT: every forward of the run (training
    steps and the English dev evaluation) gives the encoder BERT's segment ids, and the loss is finite."""
    from transformers.models.bert.modeling_bert import BertEmbeddings

    ids_seen: list[torch.Tensor] = []
    types_seen: list[torch.Tensor] = []
    probed: set[int] = set()

    def probe(module, args):  # the run builds its own model: attach the recorders when it first runs
        if isinstance(module, BertEmbeddings) and id(module) not in probed:
            probed.add(id(module))
            module.word_embeddings.register_forward_pre_hook(lambda m, a: ids_seen.append(a[0].detach().clone()))
            module.token_type_embeddings.register_forward_pre_hook(
                lambda m, a: types_seen.append(a[0].detach().clone()))

    handle = torch.nn.modules.module.register_module_forward_pre_hook(probe)
    try:
        assert main(["train", "--config", str(_config(tmp_path / "c.yaml", bert_dir, tmp_path)),
                     "--phase", "intermediate"]) == 0
    finally:
        handle.remove()
    records = [json.loads(line) for line in (tmp_path / "runs" / "bert" / "intermediate" / "metrics.jsonl")
               .read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses), records
    assert len(ids_seen) == len(types_seen) >= 3  # 2 training steps + the dev evaluation
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(bert_dir))
    for ids, types in zip(ids_seen, types_seen):
        assert types.shape == ids.shape
        for row_ids, row_types in zip(ids.tolist(), types.tolist()):
            assert row_types == bert_segments(row_ids, tok.sep_token_id, tok.pad_token_id)
            assert any(row_types)  # the hypothesis is segment 1
