"""The embedded demo world: determinism, canonical schema of every file, and that MLM pretraining
produces a loadable encoder."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from xrobust.demo.world import DEMO_LANGUAGES, DEMO_TASKS, MAX_LENGTH, build_world
from xrobust.errors import DataError

SMALL = {"train": 120, "train_target": 150, "dev": 30, "test": 30, "tatoeba": 30, "corpus_mono": 300, "corpus_parallel": 400,
         "corpus_codeswitch": 300}
CYRILLIC = re.compile(r"[\u0400-\u04FF]")


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("world") / "w", seed=0, sizes=SMALL)


def test_same_seed_gives_identical_bytes(world, tmp_path):
    again = build_world(tmp_path / "again", seed=0, sizes=SMALL)
    a, b = all_files(world["root"]), all_files(again["root"])
    assert sorted(a) == sorted(b)
    different = [k for k in a if a[k] != b[k]]
    assert not different, f"files differ between two builds with seed 0: {different}"


def test_other_seed_gives_other_data(world, tmp_path):
    other = build_world(tmp_path / "other", seed=1, sizes={**SMALL, "corpus_mono": 50, "corpus_parallel": 50,
                                                          "corpus_codeswitch": 50})
    a = (world["data_root"] / "demo_xnli" / "train-en.jsonl").read_bytes()
    b = (other["data_root"] / "demo_xnli" / "train-en.jsonl").read_bytes()
    assert a != b


def test_rebuild_with_same_manifest_is_skipped(world):
    f = world["data_root"] / "demo_ner" / "dev-xb.jsonl"
    before = f.stat().st_mtime_ns
    again = build_world(world["root"], seed=0, sizes=SMALL)
    assert again["data_root"] == world["data_root"]
    assert f.stat().st_mtime_ns == before


def test_bad_sizes_are_rejected(tmp_path):
    with pytest.raises(DataError, match="unknown sizes"):
        build_world(tmp_path / "x", sizes={"trian": 5})
    with pytest.raises(DataError, match="positive int"):
        build_world(tmp_path / "x", sizes={"dev": 0})


def test_split_and_language_layout(world):
    data = world["data_root"]
    assert world["languages"] == list(DEMO_LANGUAGES) == ["en", "xa", "xb", "xc"]
    for name, spec in DEMO_TASKS.items():
        files = sorted(p.name for p in (data / name).iterdir())
        expected = sorted(f"{split}-{lang}.jsonl" for split, langs in spec["splits"].items() for lang in langs)
        assert files == expected, name
        if spec["role"] == "target" and spec["format"] != "retrieval":
            assert spec["splits"] == {"train": ["en"], "dev": list(DEMO_LANGUAGES), "test": list(DEMO_LANGUAGES)}
        for split, langs in spec["splits"].items():
            n = SMALL["tatoeba"] if spec["format"] == "retrieval" else SMALL[split]
            if split == "train" and spec["role"] == "target":
                n = SMALL["train_target"]
            ids = None
            for lang in langs:
                rows = read_jsonl(data / name / f"{split}-{lang}.jsonl")
                assert len(rows) == n, (name, split, lang)
                file_ids = [r["id"] for r in rows]
                assert all(isinstance(i, str) for i in file_ids) and len(set(file_ids)) == n
                # dev/test are parallel: the same items in every language
                assert ids is None or file_ids == ids
                ids = file_ids
    assert not list(data.glob("*/train-x*.jsonl")), "training data must be English only"


def _check_row(fmt: str, labels: list[str], row: dict, where: str) -> None:
    assert isinstance(row["id"], str), where
    if fmt == "classification":
        assert set(row) == {"id", "text_a", "text_b", "label"}, where
        assert isinstance(row["text_a"], str) and row["text_a"], where
        assert row["text_b"] is None or (isinstance(row["text_b"], str) and row["text_b"]), where
        assert row["label"] in labels, where
    elif fmt == "multiple_choice":
        assert set(row) == {"id", "prompt", "choices", "label"}, where
        assert len(row["choices"]) == 4 and all(isinstance(c, str) and c for c in row["choices"]), where
        assert len(set(row["choices"])) == 4, where
        assert isinstance(row["label"], int) and 0 <= row["label"] < 4, where
    elif fmt == "span_qa":
        assert set(row) == {"id", "question", "context", "answers"}, where
        ans = row["answers"]
        assert set(ans) == {"text", "answer_start"} and len(ans["text"]) == len(ans["answer_start"]) >= 1, where
        for text, start in zip(ans["text"], ans["answer_start"]):
            assert text and row["context"][start:start + len(text)] == text, where
        assert row["question"].endswith("?"), where
    elif fmt == "tagging":
        assert set(row) == {"id", "tokens", "tags"}, where
        assert len(row["tokens"]) == len(row["tags"]) > 0, where
        assert all(isinstance(t, str) and t and " " not in t for t in row["tokens"]), where
        assert all(t in labels for t in row["tags"]), where
    elif fmt == "retrieval":
        assert set(row) == {"id", "source", "target"}, where
        assert row["source"] and row["target"] and row["source"] != row["target"], where
    else:
        raise AssertionError(f"unknown format {fmt}")


def test_every_row_follows_the_canonical_schema(world):
    for name, spec in DEMO_TASKS.items():
        for path in sorted((world["data_root"] / name).iterdir()):
            for i, row in enumerate(read_jsonl(path)):
                _check_row(spec["format"], spec["labels"], row, f"{path}:{i + 1}")


def test_tagging_schemes_are_well_formed(world):
    rows = read_jsonl(world["data_root"] / "demo_ner" / "dev-xb.jsonl")
    for r in rows:
        for prev, tag in zip(["O"] + r["tags"], r["tags"]):
            if tag.startswith("I-"):
                assert prev[2:] == tag[2:], r  # I-X only continues X
    tags = {t for r in rows for t in r["tags"]}
    assert {"B-PER", "I-PER", "B-LOC", "B-ORG", "I-ORG"} <= tags
    pos = read_jsonl(world["data_root"] / "demo_pos" / "dev-xc.jsonl")
    assert "DET" not in {t for r in pos for t in r["tags"]}  # xc has no articles
    assert {"NOUN", "VERB", "PROPN", "ADP", "PUNCT"} <= {t for r in pos for t in r["tags"]}


def test_labels_are_balanced_and_shared_across_languages(world):
    data = world["data_root"]
    train = read_jsonl(data / "demo_xnli" / "train-en.jsonl")
    counts = {lab: sum(r["label"] == lab for r in train) for lab in DEMO_TASKS["demo_xnli"]["labels"]}
    assert min(counts.values()) >= len(train) / 6, counts
    labels = {lang: [r["label"] for r in read_jsonl(data / "demo_xnli" / f"test-{lang}.jsonl")] for lang in DEMO_LANGUAGES}
    assert all(v == labels["en"] for v in labels.values())
    sent = read_jsonl(data / "demo_sentiment" / "train-en.jsonl")
    assert {r["label"] for r in sent} == {"negative", "positive"}


def test_languages_have_distinct_lexicons_and_scripts(world):
    data = world["data_root"]
    words = {}
    for lang in DEMO_LANGUAGES:
        rows = read_jsonl(data / "demo_pos" / f"dev-{lang}.jsonl")
        words[lang] = {t for r in rows for t, tag in zip(r["tokens"], r["tags"]) if tag in ("NOUN", "VERB", "ADJ")}
        text = " ".join(words[lang])
        assert bool(CYRILLIC.search(text)) == (lang == "xc"), lang
    for a in DEMO_LANGUAGES:
        for b in DEMO_LANGUAGES:
            if a < b:  # a few cognates may be shared, whole lexicons not
                assert len(words[a] & words[b]) < 0.2 * len(words[a]), (a, b)
    # names are anchors: the same proper names in every language
    names = [{t for r in read_jsonl(data / "demo_ner" / f"dev-{lang}.jsonl") for t, g in zip(r["tokens"], r["tags"])
              if g != "O"} for lang in DEMO_LANGUAGES]
    assert all(n == names[0] for n in names)


def test_eval_uses_names_unseen_in_training(world):
    data = world["data_root"]
    seen = {t for r in read_jsonl(data / "demo_ner" / "train-en.jsonl") for t, g in zip(r["tokens"], r["tags"]) if g != "O"}
    test = {t for r in read_jsonl(data / "demo_ner" / "test-en.jsonl") for t, g in zip(r["tokens"], r["tags"]) if g != "O"}
    assert test - seen, "dev/test should include held-out names so NER needs context"


def test_train_and_eval_do_not_overlap(world):
    data = world["data_root"]
    for name in ("demo_xnli", "demo_xqa", "demo_pos"):
        train = {json.dumps({k: v for k, v in r.items() if k != "id"}) for r in read_jsonl(data / name / "train-en.jsonl")}
        for split in ("dev", "test"):
            ev = [json.dumps({k: v for k, v in r.items() if k != "id"}) for r in read_jsonl(data / name / f"{split}-en.jsonl")]
            assert not train & set(ev), (name, split)


def test_tatoeba_pairs_are_translations(world):
    data = world["data_root"]
    for lang in ("xa", "xb", "xc"):
        rows = read_jsonl(data / "demo_tatoeba" / f"test-{lang}.jsonl")
        assert len({r["source"] for r in rows}) == len(rows) == len({r["target"] for r in rows})
        corpus = [json.loads(line) for line in open(world["corpus"], encoding="utf-8")]
        pairs = {(r["text"], r["text_pair"]) for r in corpus if r["kind"] == "parallel"}
        for r in rows:  # test bitext never appears as a pretraining pair
            assert (r["source"], r["target"]) not in pairs and (r["target"], r["source"]) not in pairs


def test_tokenizer_and_model_config(world):
    from transformers import AutoTokenizer, XLMRobertaConfig

    tok = AutoTokenizer.from_pretrained(str(world["tokenizer_dir"]))
    cfg = XLMRobertaConfig.from_pretrained(str(world["model_config_dir"]))
    assert tok.is_fast and type(tok).__name__.startswith("XLMRoberta")
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id) == (0, 1, 2)
    assert cfg.model_type == "xlm-roberta" and cfg.vocab_size == len(tok) and cfg.pad_token_id == 1
    assert tok.model_max_length == MAX_LENGTH and cfg.max_position_embeddings == MAX_LENGTH + 2
    # every language's text is covered by the vocabulary (no <unk>) and fits the model
    for lang in DEMO_LANGUAGES:
        rows = read_jsonl(world["data_root"] / "demo_xqa" / f"dev-{lang}.jsonl")
        enc = tok([r["question"] for r in rows], [r["context"] for r in rows])["input_ids"]
        assert all(tok.unk_token_id not in ids for ids in enc), lang
        assert max(map(len, enc)) <= MAX_LENGTH, lang


def test_pretrain_mlm_saves_a_loadable_deterministic_encoder(world, tmp_path):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from xrobust.demo.pretrain import pretrain_mlm

    a = pretrain_mlm(world, tmp_path / "a", steps=8, batch_size=8, lr=1e-3, seed=3)
    b = pretrain_mlm(world, tmp_path / "b", steps=8, batch_size=8, lr=1e-3, seed=3)
    ma, mb = AutoModel.from_pretrained(str(a)), AutoModel.from_pretrained(str(b))
    assert type(ma).__name__ == "XLMRobertaModel"
    sa, sb = ma.state_dict(), mb.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    tok = AutoTokenizer.from_pretrained(str(a))
    out = ma(**tok(["Anna Berg found a red car."], return_tensors="pt")).last_hidden_state
    assert out.shape[-1] == ma.config.hidden_size and torch.isfinite(out).all()
    log = json.loads((a / "pretrain_log.json").read_text())
    assert log["steps"] == 8 and log["losses"][-1]["step"] == 7


def test_cognate_lexicons_share_roots_but_not_whole_words():
    from xrobust.demo import lexicon as X

    content = [*X.OBJECT_NOUNS, *X.PERSON_NOUNS, *X.VERBS, *X.FACT_VERBS, *X.ADJECTIVES]
    en = X.LEXICONS["en"]
    for lang in ("xa", "xb"):
        lex = X.LEXICONS[lang]
        shared = [c for c in content if lex[c].form.startswith(X.cognate_root(lang, en[c].base or en[c].form))]
        # most content words are cognates of English (shared sub-words), a fixed share is not
        assert 0.5 * len(content) <= len(shared) <= (1 - X.NON_COGNATE_SHARE / 2) * len(content), (lang, len(shared))
        assert not any(lex[c].form == en[c].form for c in content), lang
    assert all(CYRILLIC.search(X.LEXICONS["xc"][c].form) for c in content)


def test_nli_label_follows_polarity_and_what_each_side_states():
    from xrobust.demo import task_generators as T

    event = {"agent": {"kind": "name", "name": "Nina", "ner": "PER"}, "verb": "buy", "neg": False,
             "obj": {"kind": "noun", "noun": "cup", "det": "a", "adj": None, "num": None},
             "pps": [("in", {"kind": "name", "name": "Kaldur", "ner": "LOC"}, "loc")], "time": "yesterday"}
    short, long_ = set(), {"loc"}
    cases = [  # (premise slots, premise negated, hypothesis slots, hypothesis negated) -> label
        (long_, False, short, False, "entailment"), (short, False, long_, False, "neutral"),
        (short, True, long_, True, "entailment"), (long_, True, short, True, "neutral"),
        (long_, False, short, True, "contradiction"), (short, False, long_, True, "neutral"),
        (short, True, long_, False, "contradiction"), (long_, True, short, False, "neutral"),
        (short, False, short, True, "contradiction"), (short, True, short, True, "entailment"),
        ({"time"}, False, long_, False, "neutral"), ({"time"}, True, long_, False, "neutral"),
        ({"time"}, False, long_, True, "neutral"), ({"time"}, True, long_, True, "neutral"),
    ]
    for tense in T.TENSES:  # about one event, the same table in either tense
        for p_slots, p_neg, h_slots, h_neg, label in cases:
            premise, hyp = T._view(event, p_slots, p_neg, tense), T._view(event, h_slots, h_neg, tense)
            row = T.nli_row("en", (premise, hyp, T.nli_label(premise, hyp)))
            assert row["label"] == label, (tense, p_slots, p_neg, h_slots, h_neg, row)
    premise, hyp = T._view(event, {"loc", "time"}, True), T._view(event, short, False)
    row = T.nli_row("en", (premise, hyp, T.nli_label(premise, hyp)))
    assert (row["text_a"], row["text_b"]) == ("Nina never bought a cup in Kaldur yesterday.", "Nina bought a cup.")
    premise, hyp = T._view(event, short, True, "future"), T._view(event, {"loc", "time"}, False, "future")
    row = T.nli_row("en", (premise, hyp, T.nli_label(premise, hyp)))
    assert (row["text_a"], row["text_b"], row["label"]) == (
        "Nina will never buy a cup.", "Nina will buy a cup in Kaldur tomorrow.", "contradiction")
    # what happened and what will happen, or another agent, action or object: another event,
    # compatible whatever either side says
    others = [dict(event, agent={"kind": "name", "name": "Omar", "ner": "PER"}), dict(event, verb="sell"),
              dict(event, obj=dict(event["obj"], noun="hat"))]
    pairs = [(T._view(other, long_, p_neg), T._view(event, long_, h_neg)) for other in others
             for p_neg in (False, True) for h_neg in (False, True)]
    pairs += [(T._view(event, p_slots, p_neg, p_tense), T._view(event, h_slots, h_neg, h_tense))
              for p_slots, p_neg, h_slots, h_neg, _ in cases
              for p_tense, h_tense in (("past", "future"), ("future", "past"))]
    for premise, hyp in pairs:
        assert T.nli_label(premise, hyp) == "neutral", (premise, hyp)
    with pytest.raises(ValueError, match="different values"):  # one event cannot be in two places
        T.nli_label(T._view(dict(event, pps=[("in", {"kind": "name", "name": "Serin", "ner": "LOC"}, "loc")]),
                            long_, False), T._view(event, long_, False))


@pytest.mark.parametrize("facts", [False, True])
def test_nli_label_given_one_side(facts):
    """Bookkeeping on meanings: the best guess of the label from what one side shows (its polarity
    and tense, and which slots it states), fitted on 20000 draws, is right 1/3 of the time on 20000
    others, for the hypothesis and for the premise; from whether the two sides agree in polarity and
    in tense it is always right (docs/DEMO.md: the label table)."""
    import random
    from collections import Counter, defaultdict

    from xrobust.demo import task_generators as T

    rng, pools = random.Random(0), T.Pools("train")
    draws = [T.sample_nli(rng, pools, facts) for _ in range(40000)]

    def shows(c):
        return c["neg"], c["tense"], tuple(sorted(T._statements(c)))

    views = {"hypothesis": lambda p, h: shows(h), "premise": lambda p, h: shows(p),
             "relation": lambda p, h: (p["tense"] == h["tense"], p["neg"] == h["neg"])}
    best = {}
    for side, view in views.items():
        table = defaultdict(Counter)
        for p, h, label in draws[:20000]:
            table[view(p, h)][label] += 1
        guess = {k: c.most_common(1)[0][0] for k, c in table.items()}
        best[side] = sum(guess.get(view(p, h)) == label for p, h, label in draws[20000:]) / 20000
    # one standard error of an accuracy near 1/3 over 20000 draws is 0.33 points
    assert best["hypothesis"] < 1 / 3 + 0.012, best
    assert best["premise"] < 1 / 3 + 0.012, best
    assert best["relation"] == 1.0, best
    counts = Counter(label for _, _, label in draws)
    assert max(counts.values()) < 1.06 * min(counts.values()), counts


@pytest.mark.parametrize("task", ["demo_xnli", "demo_nli"])
def test_nli_labels_need_premise_and_hypothesis(task):
    """A bag-of-words classifier (naive Bayes on words and word pairs) fitted on the hypotheses
    alone, or on the premises alone, stays at chance (each side is drawn independently of the
    label); the same classifier given both sides, with which words each side lacks, does far better."""
    from xrobust.demo.world import DEFAULT_SIZES, generate_task
    from xrobust.demo.transfer_check import nli_bow_baseline

    rows = generate_task(task, 0, {**DEFAULT_SIZES, "train": 3000, "train_target": 3000, "dev": 3000, "test": 1})
    train, dev = rows[("train", "en")], rows[("dev", "en")]
    labels = DEMO_TASKS[task]["labels"]
    counts = {label: sum(r["label"] == label for r in dev) for label in labels}
    assert max(counts.values()) < 1.1 * min(counts.values()), counts  # balanced: chance is 1/3
    # 3000 dev items: one standard error of an accuracy near 1/3 is 0.86 points
    hyp = nli_bow_baseline(train, dev, labels, "hypothesis")
    assert hyp["eval"] < 1 / 3 + 0.035, hyp
    premise = nli_bow_baseline(train, dev, labels, "premise")
    assert premise["eval"] < 1 / 3 + 0.035, premise
    pair = nli_bow_baseline(train, dev, labels, "pair")
    assert pair["eval"] > max(0.6, premise["eval"] + 0.15), pair
