"""Tests for the offline tokenizer builder and the per-format featurizers."""

from __future__ import annotations

from fixtures_tokenizer import SYLLABLES, build_tokenizer, tokenizer  # noqa: F401  (pytest fixture)


def test_tokenizer_is_fast_xlmr_layout_and_reloads(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    assert tokenizer.is_fast
    # XLM-R (fairseq) special ids, which the model code and the collator rely on
    assert (tokenizer.cls_token_id, tokenizer.pad_token_id, tokenizer.sep_token_id, tokenizer.unk_token_id) == (0, 1, 2, 3)
    assert tokenizer.mask_token_id == len(tokenizer) - 1
    assert 100 < len(tokenizer) <= 502
    reloaded = AutoTokenizer.from_pretrained(str(tokenizer.name_or_path))
    text = "北京是首都 бакоте kabeto 123"
    assert reloaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    ids = enc["input_ids"]
    assert tokenizer.unk_token_id not in ids  # every script in the corpus is covered
    # offsets point back into the original text; a bare "▁" piece shares the next piece's span
    spans = sorted(set(map(tuple, enc["offset_mapping"])))
    covered = "".join(text[a:b] for a, b in spans)
    assert covered.replace(" ", "") == text.replace(" ", "")


def test_tokenizer_training_is_deterministic(tokenizer, tmp_path):
    from xrobust.data.tokenizer import tokenizer_fingerprint

    again = build_tokenizer(tmp_path / "again")
    assert tokenizer_fingerprint(again) == tokenizer_fingerprint(tokenizer)
    other = build_tokenizer(tmp_path / "other", vocab_size=300)
    assert tokenizer_fingerprint(other) != tokenizer_fingerprint(tokenizer)


def test_tokenizer_rejects_empty_corpus(tmp_path):
    import pytest

    from xrobust.demo.tokenizer import train_sentencepiece_tokenizer
    from xrobust.errors import DataError

    with pytest.raises(DataError, match="no non-empty sentences"):
        train_sentencepiece_tokenizer(["", "  "], tmp_path / "t", 100)


# ---------------------------------------------------------------------------------------------
# featurizers
import random  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import pytest  # noqa: E402
from datasets import Dataset  # noqa: E402

from xrobust.data.featurize import featurize, feature_lengths  # noqa: E402
from xrobust.errors import ConfigError, DataError  # noqa: E402


def spec(fmt, labels=None, pair=False, name="t"):
    return SimpleNamespace(name=name, format=fmt, labels=labels, pair=pair)


def gen_words(rng, n, langs=None):
    langs = langs or sorted(SYLLABLES)
    out = []
    for _ in range(n):
        syl = SYLLABLES[rng.choice(langs)]
        out.append("".join(rng.choice(syl) for _ in range(rng.randint(1, 3))))
    return out


def qa_examples(n=30, seed=0):
    """Contexts of 20..400 words in mixed scripts; the answer is a run of 1-2 words anywhere
    (a third of them in the last 15 words, i.e. in a late window). 1-2 words are at most ~20
    pieces, so every answer fits inside the doc_stride overlap and some window holds it whole."""
    rng = random.Random(seed)
    rows = []
    for k in range(n):
        words = gen_words(rng, rng.randint(20, 400))
        alen = rng.randint(1, 2)
        if k % 3 == 0:
            a0 = rng.randint(max(0, len(words) - 15), len(words) - alen)
        else:
            a0 = rng.randint(0, len(words) - alen)
        prefix = " ".join(words[:a0])
        start = len(prefix) + (1 if a0 else 0)
        answer = " ".join(words[a0:a0 + alen])
        context = " ".join(words)
        assert context[start:start + len(answer)] == answer
        question = " ".join(gen_words(rng, rng.randint(2, 30))) + "?"
        rows.append({"id": f"q{k}", "question": question, "context": context,
                     "answers": {"text": [answer], "answer_start": [start]}})
    return Dataset.from_list(rows)


QA_KW = dict(max_length=80, doc_stride=24, max_query_length=16)


def test_span_qa_windows_map_every_answer_back(tokenizer):
    ex = qa_examples()
    train = featurize(ex, spec("span_qa"), tokenizer, train=True, **QA_KW)
    pred = featurize(ex, spec("span_qa"), tokenizer, train=False, **QA_KW)
    assert train["example_id"] == pred["example_id"]  # same windows in both modes
    assert max(len(x) for x in train["input_ids"]) <= QA_KW["max_length"]
    by_id = {r["id"]: r for r in ex}
    found = {}
    late = 0
    windows_per_example = {}
    for f in range(len(train)):
        eid = train[f]["example_id"]
        windows_per_example[eid] = windows_per_example.get(eid, 0) + 1
        s, e = train[f]["start_positions"], train[f]["end_positions"]
        offsets = pred[f]["offset_mapping"]
        ids = train[f]["input_ids"]
        # query part never exceeds max_query_length tokens: <s> q </s></s> ...
        q_len = ids.index(tokenizer.sep_token_id) - 1
        assert q_len <= QA_KW["max_query_length"]
        if (s, e) == (0, 0):
            continue
        assert offsets[s] is not None and offsets[e] is not None and e >= s
        ctx = by_id[eid]["context"]
        assert ctx[offsets[s][0]:offsets[e][1]] == by_id[eid]["answers"]["text"][0]
        found[eid] = True
        late += windows_per_example[eid] > 1
    assert set(found) == set(by_id), "every answer is inside at least one window"
    assert late > 0, "some answers live in a late window"
    assert max(windows_per_example.values()) >= 5, "contexts span several windows"


def test_span_qa_offsets_none_outside_context(tokenizer):
    ex = qa_examples(5, seed=1)
    pred = featurize(ex, spec("span_qa"), tokenizer, train=False, **QA_KW)
    for f in pred:
        offs, ids = f["offset_mapping"], f["input_ids"]
        assert offs[0] is None and offs[-1] is None  # <s> ... </s>
        first_ctx = next(i for i, o in enumerate(offs) if o is not None)
        assert ids[first_ctx - 1] == tokenizer.sep_token_id and all(o is None for o in offs[:first_ctx])
        assert "start_positions" not in f


def test_span_qa_max_length_too_small_is_config_error(tokenizer):
    # minimum = max_query_length 16 + 4 specials (<s> q </s></s> c </s>) + doc_stride 16 + 1
    with pytest.raises(ConfigError, match=r"max_length=36 is too small.*minimum is 37"):
        featurize(qa_examples(2), spec("span_qa"), tokenizer, train=True, max_length=36, doc_stride=16,
                  max_query_length=16)
    featurize(qa_examples(2), spec("span_qa"), tokenizer, train=True, max_length=37, doc_stride=16,
              max_query_length=16)


def test_span_qa_misaligned_answer_is_skipped_in_training_and_counted(tokenizer):
    # an answer that is not at answer_start (loading already moved near misses back): XTREME's
    # SQuAD preprocessing skips such an example in training; prediction keeps it
    from xrobust.data.stats import data_report

    ok = qa_examples(2)
    bad = Dataset.from_list([{"id": "bad1", "question": "q", "context": "kabe tolo",
                              "answers": {"text": ["tolo"], "answer_start": [0]}}])
    from datasets import concatenate_datasets

    ex = concatenate_datasets([ok, bad.cast(ok.features)])
    train = featurize(ex, spec("span_qa"), tokenizer, train=True, **QA_KW)
    assert "bad1" not in set(train["example_id"]) and {"q0", "q1"} <= set(train["example_id"])
    assert len(train["start_positions"]) == len(train["input_ids"])
    report = data_report(spec("span_qa"), "train", "en", ex, train, train=True)
    assert report["skipped"] == 1 and report["examples"] == 3
    pred = featurize(ex, spec("span_qa"), tokenizer, train=False, **QA_KW)
    assert "bad1" in set(pred["example_id"])
    assert data_report(spec("span_qa"), "test", "en", ex, pred, train=False).get("skipped") is None


def tagging_examples(n=25, seed=0):
    rng = random.Random(seed)
    rows = []
    for k in range(n):
        words = [] if k == 0 else gen_words(rng, rng.randint(1, 120))
        rows.append({"id": f"s{k}", "tokens": words, "tags": [rng.randrange(5) for _ in words]})
    return Dataset.from_list(rows)


def test_tagging_labels_round_trip_through_windows(tokenizer):
    ex = tagging_examples()
    feats = featurize(ex, spec("tagging", labels=list("ABCDE")), tokenizer, train=True, max_length=24)
    assert max(len(x) for x in feats["input_ids"]) <= 24
    recovered: dict[str, dict[int, int]] = {}
    n_windows: dict[str, int] = {}
    for f in feats:
        eid = f["example_id"]
        n_windows[eid] = n_windows.get(eid, 0) + 1
        assert len(f["input_ids"]) == len(f["labels"]) == len(f["word_ids"]) == len(f["attention_mask"])
        assert f["word_ids"][0] == -1 and f["word_ids"][-1] == -1
        assert f["labels"][0] == -100 and f["labels"][-1] == -100
        prev = None
        for w, lab in zip(f["word_ids"], f["labels"]):
            if w >= 0 and w != prev:  # first sub-token carries the label
                assert w not in recovered.setdefault(eid, {}), "a word is labelled in two windows"
                recovered[eid][w] = lab
            else:
                assert lab == -100
            prev = w
    for r in ex:
        assert [recovered.get(r["id"], {}).get(w) for w in range(len(r["tokens"]))] == r["tags"]
    assert max(n_windows.values()) >= 3, "long sentences are split, not truncated"
    assert n_windows["s0"] == 1  # an empty sentence still yields a feature


def test_tagging_word_longer_than_window_becomes_unk_and_is_counted(tokenizer):
    # XTREME's preprocessing feeds such a word as <unk>; it still gets its prediction
    from xrobust.data.stats import data_report

    long_word = "x" * 3 + "".join(SYLLABLES["en"]) * 3
    ex = Dataset.from_list([{"id": "long7", "tokens": ["ka", long_word, "be"], "tags": [0, 1, 0]}])
    feats = featurize(ex, spec("tagging", labels=["A", "B"]), tokenizer, train=True, max_length=8)
    unk = tokenizer.unk_token_id
    words = [(w, i) for f in feats for w, i in zip(f["word_ids"], f["input_ids"]) if w >= 0]
    assert [i for w, i in words if w == 1] == [unk]
    labels = {w: lab for f in feats for w, lab in zip(f["word_ids"], f["labels"]) if w >= 0 and lab != -100}
    assert labels == {0: 0, 1: 1, 2: 0}  # every word keeps its tag
    assert sum(feats["unk_words"]) == 1
    assert data_report(spec("tagging", labels=["A", "B"]), "train", "en", ex, feats, train=True)["unk_words"] == 1


def test_tagging_tag_count_mismatch(tokenizer):
    ex = Dataset.from_list([{"id": "m1", "tokens": ["ka", "be"], "tags": [0]}])
    with pytest.raises(DataError, match="m1.*2 tokens but 1 tags"):
        featurize(ex, spec("tagging", labels=["A", "B"]), tokenizer, train=True, max_length=32)


def test_classification_single_and_pair(tokenizer):
    rng = random.Random(3)
    rows = [{"id": f"c{k}", "text_a": " ".join(gen_words(rng, rng.randint(1, 60))),
             "text_b": " ".join(gen_words(rng, rng.randint(1, 60))), "label": k % 3} for k in range(20)]
    ex = Dataset.from_list(rows)
    pair = featurize(ex, spec("classification", labels=["e", "n", "c"], pair=True), tokenizer, train=True, max_length=40)
    single = featurize(ex, spec("classification", labels=["e", "n", "c"]), tokenizer, train=True, max_length=40)
    assert pair["labels"] == [k % 3 for k in range(20)]
    for p, s in zip(pair, single):
        assert len(p["input_ids"]) <= 40 and len(s["input_ids"]) <= 40
        assert p["input_ids"].count(tokenizer.sep_token_id) == 3  # <s> a </s></s> b </s>
        assert s["input_ids"].count(tokenizer.sep_token_id) == 1
    bad = Dataset.from_list([{"id": "L9", "text_a": "ka", "text_b": None, "label": 5}])
    with pytest.raises(DataError, match="L9"):
        featurize(bad, spec("classification", labels=["e", "n", "c"]), tokenizer, train=True, max_length=40)
    with pytest.raises(DataError, match="pair task.*L9"):
        featurize(bad, spec("classification", labels=["e", "n", "c"], pair=True), tokenizer, train=True, max_length=40)


def test_multiple_choice_shapes(tokenizer):
    rng = random.Random(4)
    rows = [{"id": f"m{k}", "prompt": " ".join(gen_words(rng, rng.randint(1, 50))),
             "choices": [" ".join(gen_words(rng, rng.randint(1, 8))) for _ in range(4)], "label": k % 4}
            for k in range(10)]
    feats = featurize(Dataset.from_list(rows), spec("multiple_choice"), tokenizer, train=True, max_length=32)
    for f, r in zip(feats, rows):
        assert len(f["input_ids"]) == len(f["attention_mask"]) == 4
        assert all(len(c) <= 32 for c in f["input_ids"])
        assert f["labels"] == r["label"]
    assert feature_lengths(feats) == [max(len(c) for c in f) for f in feats["input_ids"]]


def test_retrieval_and_unknown_format(tokenizer):
    ex = Dataset.from_list([{"id": "r1", "text": "北京是首都"}, {"id": "r2", "text": "kabe " * 100}])
    feats = featurize(ex, spec("retrieval"), tokenizer, train=False, max_length=16)
    assert feats["example_id"] == ["r1", "r2"] and len(feats["input_ids"][1]) == 16
    with pytest.raises(ConfigError, match="format 'nope'"):
        featurize(ex, spec("nope"), tokenizer, train=False, max_length=16)
    with pytest.raises(DataError, match="lack column"):
        featurize(ex, spec("classification"), tokenizer, train=False, max_length=16)


def test_feature_cache_hit_miss_and_atomic_layout(tokenizer, tmp_path, monkeypatch):
    import xrobust.data.featurize as fz
    from xrobust.data.cache import cached_featurize

    calls = []
    real = fz.featurize

    def counting(*a, **k):
        calls.append(k["max_length"])
        return real(*a, **k)

    monkeypatch.setattr(fz, "featurize", counting)
    ex = qa_examples(6, seed=2)
    sp = spec("span_qa")
    first = cached_featurize(ex, sp, tokenizer, tmp_path / "cache", train=True, **QA_KW)
    second = cached_featurize(ex, sp, tokenizer, tmp_path / "cache", train=True, **QA_KW)
    assert calls == [80], "the second call loads from disk"
    assert first["input_ids"] == second["input_ids"] and first["start_positions"] == second["start_positions"]
    cached_featurize(ex, sp, tokenizer, tmp_path / "cache", train=True, **{**QA_KW, "max_length": 96})
    assert calls == [80, 96], "a changed max_length misses the cache"
    cached_featurize(ex.select(range(5)), sp, tokenizer, tmp_path / "cache", train=True, **QA_KW)
    assert len(calls) == 3, "different data (fingerprint) misses the cache"
    entries = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(entries) == 3 and not [e for e in entries if e.startswith(".")]  # no temp dirs left behind


def test_tokenizer_fingerprint_ignores_call_settings(tokenizer):
    from xrobust.data.tokenizer import tokenizer_fingerprint

    before = tokenizer_fingerprint(tokenizer)
    tokenizer("ka be", "to ra", truncation="only_second", max_length=16, stride=2, return_overflowing_tokens=True)
    assert tokenizer_fingerprint(tokenizer) == before
