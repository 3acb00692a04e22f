"""Small replicas of every hub dataset the task registry loads by default, for the replica hub.

Each replica has the repository id, config names, split names and the exact `datasets.Features` the
hub serves (ClassLabel names in the hub's order, Sequence(ClassLabel) tags, string labels where the
hub has strings, nested answers and choices, -1 for "no gold label"), stored as the hub stores it:
Parquet files (with the features in their schema metadata) plus a dataset card whose YAML carries
`dataset_info` and `configs` (data_files per split), or, for Cosmos QA, a main branch that holds only
a loading script and a pinned Parquet-export commit. The rows are tiny and synthetic.

Where each schema comes from (read, never copied):
- Features, config and split names: the hub repositories' loading scripts and dataset_infos.json as
  last published in github.com/huggingface/datasets (`datasets/<name>/`, commit 8803c182e6^, 2022-10-03,
  the last commit before the scripts moved to the hub): glue, anli, snli, squad, hellaswag, cosmos_qa,
  commonsense_qa, xtreme. The hub's Parquet conversions (2024) keep those features in their cards.
- google/xtreme on the hub: one folder per config with `<config>/<split>-*` data_files in the card
  ("Add udpos.Afrikaans data files" commit of the hub repository). Split lists per config from
  xtreme.py: udpos Tagalog/Thai/Yoruba test only, Kazakh train+test; XQuAD and tatoeba only
  `validation`; XNLI test+validation with a `language` column; PAWS-X `label` is a string; bucc18
  `source_lang`/`target_lang` hold the sentence ids; tatoeba `source_lang` holds the last
  dot-separated piece of the downloaded file's path and every sentence keeps its trailing newline;
  MLQA/XQuAD/TyDiQA contexts and answers are `.strip()`ed without moving `answer_start`.
- stanfordnlp/snli `plain_text/<split>-00000-of-00001.parquet`, tau/commonsense_qa
  `data/<split>-00000-of-00001.parquet`, and allenai/cosmos_qa: main (commit 28d9d5e2) holds only
  cosmos_qa.py; the Parquet export ref `refs/convert/parquet` (commit ed50fe83) holds
  `default/<split>/0000.parquet`: a public script that pins these hub files by commit and path.
NOT verified (no hub access from here), marked where used: the file names inside nyu-mll/glue,
facebook/anli, rajpurkar/squad and Rowan/hellaswag (the converter's usual `<config>/<split>-00000-of-
00001.parquet` is assumed; loading goes through the card's data_files, so the name does not change
what is loaded), the exact `source_lang` string of the tatoeba configs, and the row counts (replicas
are tiny; real counts are in docs/TASKS.md).
"""

from __future__ import annotations

import io
import random

import yaml

from hub_server import HubStore

# allenai/cosmos_qa: main (the loading script only) and the head of its Parquet export ref
COSMOS_QA_MAIN = "28d9d5e2aae025e73e11177891a88dba51190013"
COSMOS_QA_PARQUET = "ed50fe83db62b355759053b1cd5eef344ee371e0"

_SYLLABLES = {  # per script; enough for words the tiny test tokenizers mostly know
    "latin": "ba be bi bo ka ke ko ta te ti to ra re ri ro la le li lo ma me mo na ne no sa se so".split(),
    "cyrillic": "ба бе ка ко та те ра ре ла ле ми мо на но ст ов ий".split(),
    "greek": "κα κε τα τε ρα ρε λα λε μα με πο νο".split(),
    "arabic": "با بي كا كو تا تي را ري لا لي ال من".split(),
    "devanagari": "का की ता ती रा री ला ली मा मी ने है".split(),
    "cjk": list("北京是首都中国人大学生上海天气很好的了"),
    "kana": list("東京はにのをですましたかな"),
    "hebrew": "בא בי כה לו מה נו רי שה תו".split(),
    "thai": "กา ขี คุ งู จา ชี ดา ตี นา บี".split(),
    "hangul": "가 나 다 라 마 바 사 아 자 하".split(),
    "georgian": "ბა გე და ვი ზო თა კე ლი მო ნა".split(),
    "bengali": "কা খি গু ঘে চা ছি জু টা".split(),
    "tamil": "கா கி கு சா டி தா நா பா".split(),
    "telugu": "కా కి కు గా చా జా టా డా".split(),
    "malayalam": "കാ കി കു ഗാ ചാ ജാ ടാ ഡാ".split(),
    "burmese": "က ခ ဂ င စ ဆ ဇ ည".split(),
}
_SCRIPT = {**{lang: "cyrillic" for lang in ("bg", "ru", "kk")}, "el": "greek",
           **{lang: "arabic" for lang in ("ar", "fa", "ur")}, "hi": "devanagari", "mr": "devanagari",
           "zh": "cjk", "ja": "kana", "he": "hebrew", "th": "thai", "ko": "hangul", "ka": "georgian",
           "bn": "bengali", "ta": "tamil", "te": "telugu", "ml": "malayalam", "my": "burmese"}

NLI = ["entailment", "neutral", "contradiction"]
UPOS = ["ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN",
        "PUNCT", "SCONJ", "SYM", "VERB", "X"]
PANX = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]

XNLI_LANGS = "ar bg de el en es fr hi ru sw th tr ur vi zh".split()
PAWSX_LANGS = "de en es fr ja ko zh".split()
UD_NAMES = {
    "af": "Afrikaans", "ar": "Arabic", "bg": "Bulgarian", "de": "German", "el": "Greek", "en": "English",
    "es": "Spanish", "et": "Estonian", "eu": "Basque", "fa": "Persian", "fi": "Finnish", "fr": "French",
    "he": "Hebrew", "hi": "Hindi", "hu": "Hungarian", "id": "Indonesian", "it": "Italian", "ja": "Japanese",
    "kk": "Kazakh", "ko": "Korean", "mr": "Marathi", "nl": "Dutch", "pt": "Portuguese", "ru": "Russian",
    "ta": "Tamil", "te": "Telugu", "th": "Thai", "tl": "Tagalog", "tr": "Turkish", "ur": "Urdu",
    "vi": "Vietnamese", "yo": "Yoruba", "zh": "Chinese",
}
PANX_LANGS = ("af ar bg bn de el en es et eu fa fi fr he hi hu id it ja jv ka kk ko ml mr ms my nl pt ru "
              "sw ta te th tl tr ur vi yo zh").split()
XQUAD_LANGS = "ar de el en es hi ru th tr vi zh".split()
MLQA_LANGS = "ar de en es hi vi zh".split()
TYDIQA_NAMES = {"ar": "arabic", "bn": "bengali", "en": "english", "fi": "finnish", "id": "indonesian",
                "ko": "korean", "ru": "russian", "sw": "swahili", "te": "telugu"}
BUCC_LANGS = "de fr ru zh".split()
TATOEBA_CODES = {
    "af": "afr", "ar": "ara", "bg": "bul", "bn": "ben", "de": "deu", "el": "ell", "es": "spa", "et": "est",
    "eu": "eus", "fa": "pes", "fi": "fin", "fr": "fra", "he": "heb", "hi": "hin", "hu": "hun", "id": "ind",
    "it": "ita", "ja": "jpn", "jv": "jav", "ka": "kat", "kk": "kaz", "ko": "kor", "ml": "mal", "mr": "mar",
    "nl": "nld", "pt": "por", "ru": "rus", "sw": "swh", "ta": "tam", "te": "tel", "th": "tha", "tl": "tgl",
    "tr": "tur", "ur": "urd", "vi": "vie", "zh": "cmn",
}
# Not verified: the value the tatoeba script wrote is `source_file.split(".")[-1]` of the machine's
# download path; on a cache folder without dots that is the whole path, the same for every row.
TATOEBA_SOURCE_LANG = "/storage/hf-datasets-cache/downloads/5d1c0e8f2b4a"

TRAIN_ROWS, ROWS = 8, 4  # English training splits hold a few batches; other splits a handful


def _rng(*key) -> random.Random:
    return random.Random("/".join(map(str, key)))


def _word(rng: random.Random, lang: str) -> str:
    syl = _SYLLABLES[_SCRIPT.get(lang, "latin")]
    return "".join(rng.choice(syl) for _ in range(rng.randint(1, 3)))


def _words(rng, lang, lo=3, hi=8) -> list[str]:
    return [_word(rng, lang) for _ in range(rng.randint(lo, hi))]


def _sentence(rng, lang, lo=3, hi=8) -> str:
    return " ".join(_words(rng, lang, lo, hi)) + "."


def _parquet(features, columns: dict) -> bytes:
    """A Parquet file as datasets writes it: the features ride in the schema's metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pydict(features.encode_batch(columns), schema=features.arrow_schema), buf)
    return buf.getvalue()


def _card(configs: dict[str, tuple], paths: dict[tuple[str, str], str], note: str) -> bytes:
    """A dataset card with the hub's YAML: dataset_info (features, splits) and configs (data_files)."""
    info, cfgs = [], []
    for name, (features, splits) in configs.items():
        info.append({"config_name": name, "features": features._to_yaml_list(),
                     "splits": [{"name": s, "num_bytes": 0, "num_examples": len(next(iter(cols.values())))}
                                for s, cols in splits.items()]})
        cfgs.append({"config_name": name,
                     "data_files": [{"split": s, "path": paths[(name, s)].rsplit("-", 3)[0] + "-*"
                                     if "-00000-of-" in paths[(name, s)] else paths[(name, s)]}
                                    for s in splits]})
    meta = {"dataset_info": info if len(info) > 1 else info[0], "configs": cfgs}
    return ("---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n\n"
            + f"# Replica for tests\n\n{note}\n").encode()


def _parquet_repo(store: HubStore, repo_id: str, configs: dict[str, tuple], *, layout: str, note: str,
                  card: bool = True, refs=("main",), sha: str | None = None) -> str:
    """configs: {config: (features, {split: columns})}; layout e.g. '{config}/{split}-00000-of-00001.parquet'."""
    files, paths = {}, {}
    for name, (features, splits) in configs.items():
        for split, columns in splits.items():
            path = layout.format(config=name, split=split)
            files[path] = _parquet(features, columns)
            paths[(name, split)] = path
    if card:
        files["README.md"] = _card(configs, paths, note)
    return store.commit(repo_id, files, refs=refs, sha=sha)


def _columns(rows: list[dict]) -> dict:
    return {k: [r[k] for r in rows] for k in rows[0]}


# -----------------------------------------------------------------------------------------------
# intermediate tasks (English)
# -----------------------------------------------------------------------------------------------

def _glue(store: HubStore) -> None:
    import datasets as D

    def pair_rows(key, split, a, b, n_labels, test):
        n = TRAIN_ROWS if split == "train" else ROWS
        rng = _rng("glue", key, split)
        return _columns([{a: _sentence(rng, "en"), **({b: _sentence(rng, "en")} if b else {}),
                          "label": -1 if test else i % n_labels, "idx": i} for i in range(n)])

    def cfg(key, a, b, names, splits):
        feats = {a: D.Value("string"), **({b: D.Value("string")} if b else {}),
                 "label": D.ClassLabel(names=names), "idx": D.Value("int32")}
        return D.Features(feats), {s: pair_rows(key, s, a, b, len(names), s.startswith("test")) for s in splits}

    _parquet_repo(store, "nyu-mll/glue", {
        "mnli": cfg("mnli", "premise", "hypothesis", NLI,
                    ["train", "validation_matched", "validation_mismatched", "test_matched", "test_mismatched"]),
        "qqp": cfg("qqp", "question1", "question2", ["not_duplicate", "duplicate"], ["train", "validation", "test"]),
        "sst2": cfg("sst2", "sentence", None, ["negative", "positive"], ["train", "validation", "test"]),
    }, layout="{config}/{split}-00000-of-00001.parquet",  # file names: not verified
        note="GLUE configs mnli, qqp, sst2 (glue.py, dataset_infos.json); test labels are -1.")


def glue_mnli_reordered(store: HubStore, ref: str) -> None:
    """GLUE mnli whose ClassLabel order differs from the registry's, on its own ref of the replica."""
    import datasets as D

    names = ["contradiction", "entailment", "neutral"]
    feats = D.Features({"premise": D.Value("string"), "hypothesis": D.Value("string"),
                        "label": D.ClassLabel(names=names), "idx": D.Value("int32")})
    rows = {"premise": ["p0", "p1", "p2"], "hypothesis": ["h0", "h1", "h2"],
            "label": [names.index("entailment"), names.index("neutral"), names.index("contradiction")],
            "idx": [0, 1, 2]}
    _parquet_repo(store, "nyu-mll/glue", {"mnli": (feats, {"train": rows, "validation_matched": rows})},
                  layout="{config}/{split}-00000-of-00001.parquet", refs=(ref,),
                  note="Test variant: ClassLabel (contradiction, entailment, neutral).")


def pawsx_lost_rows(store: HubStore, ref: str) -> None:
    """PAWS-X en and es on their own ref of google/xtreme, es validation and test one row short: the
    real hub's PAWS-X lost rows to quote handling (es dev 1,961, ko test 1,999 of 2,000), so its sets
    are not parallel."""
    configs = _xtreme_configs()
    en, (features, es) = configs["PAWS-X.en"], configs["PAWS-X.es"]
    short = {split: {k: v[:-1] for k, v in es[split].items()} for split in ("validation", "test")}
    _parquet_repo(store, "google/xtreme", {"PAWS-X.en": en, "PAWS-X.es": (features, {**es, **short})},
                  layout="{config}/{split}-00000-of-00001.parquet", refs=(ref,),
                  note="Test variant: PAWS-X.es validation and test one row short.")


def _anli(store: HubStore) -> None:
    import datasets as D

    feats = D.Features({"uid": D.Value("string"), "premise": D.Value("string"), "hypothesis": D.Value("string"),
                        "label": D.ClassLabel(names=NLI), "reason": D.Value("string")})
    splits = {}
    for r in (1, 2, 3):
        for part in ("train", "dev", "test"):
            rng = _rng("anli", part, r)
            n = TRAIN_ROWS if part == "train" else ROWS
            # uids repeat across rounds, as ids may on the hub: the loader prefixes each part
            splits[f"{part}_r{r}"] = _columns([{"uid": f"uid-{i}", "premise": _sentence(rng, "en"),
                                                "hypothesis": _sentence(rng, "en"), "label": (i + r) % 3,
                                                "reason": "" if part == "train" else "because"}
                                               for i in range(n)])
    _parquet_repo(store, "facebook/anli", {"plain_text": (feats, splits)},
                  layout="{config}/{split}-00000-of-00001.parquet",  # file names: not verified
                  note="ANLI plain_text, rounds r1-r3 (anli.py, dataset_infos.json).")


def _snli(store: HubStore) -> None:
    import datasets as D

    feats = D.Features({"premise": D.Value("string"), "hypothesis": D.Value("string"),
                        "label": D.ClassLabel(names=NLI)})
    splits = {}
    for split in ("test", "validation", "train"):
        rng = _rng("snli", split)
        n = TRAIN_ROWS if split == "train" else ROWS
        # label -1: annotators reached no gold label (snli.py maps gold_label "-" to -1)
        splits[split] = _columns([{"premise": _sentence(rng, "en"), "hypothesis": _sentence(rng, "en"),
                                   "label": -1 if i == 1 else i % 3} for i in range(n)])
    _parquet_repo(store, "stanfordnlp/snli", {"plain_text": (feats, splits)},
                  layout="{config}/{split}-00000-of-00001.parquet",
                  note="SNLI plain_text (snli.py); rows without gold label have label -1.")


def qa_row(rng, lang, qid, *, title=True, shift=0) -> dict:
    """A SQuAD-layout row whose answer is a word of the context. shift > 0 imitates google/xtreme:
    the context lost `shift` leading characters to .strip() but answer_start was not moved."""
    words = _words(rng, lang, 6, 14)
    k = rng.randrange(len(words))
    context = " ".join(words) + "."
    start = len(" ".join(words[:k])) + (1 if k else 0)
    row = {"id": qid, "context": context, "question": _sentence(rng, lang, 3, 6)[:-1] + "?",
           "answers": {"text": [words[k]], "answer_start": [start + shift]}}
    if title:
        row["title"] = "T"
    return row


def _squad_features(D, title=True):
    feats = {"id": D.Value("string")}
    if title:
        feats["title"] = D.Value("string")
    feats.update(context=D.Value("string"), question=D.Value("string"),
                 answers=D.Sequence({"text": D.Value("string"), "answer_start": D.Value("int32")}))
    return D.Features(feats)


def _squad(store: HubStore) -> None:
    import datasets as D

    splits = {}
    for split in ("train", "validation"):
        rng = _rng("squad", split)
        n = TRAIN_ROWS if split == "train" else ROWS
        splits[split] = _columns([qa_row(rng, "en", f"sq-{split}-{i}") for i in range(n)])
    _parquet_repo(store, "rajpurkar/squad", {"plain_text": (_squad_features(D), splits)},
                  layout="{config}/{split}-00000-of-00001.parquet",  # file names: not verified
                  note="SQuAD v1.1 plain_text (squad.py): answers is a Sequence of {text, answer_start}.")


def _hellaswag(store: HubStore) -> None:
    import datasets as D

    feats = D.Features({"ind": D.Value("int32"), "activity_label": D.Value("string"), "ctx_a": D.Value("string"),
                        "ctx_b": D.Value("string"), "ctx": D.Value("string"), "endings": D.Sequence(D.Value("string")),
                        "source_id": D.Value("string"), "split": D.Value("string"),
                        "split_type": D.Value("string"), "label": D.Value("string")})
    splits = {}
    for split in ("train", "test", "validation"):
        rng = _rng("hellaswag", split)
        rows = []
        for i in range(TRAIN_ROWS if split == "train" else ROWS):
            a, b = _sentence(rng, "en"), " ".join(_words(rng, "en", 1, 3))
            rows.append({"ind": 10 * i + 3, "activity_label": "Act", "ctx_a": a, "ctx_b": b, "ctx": f"{a} {b}",
                         "endings": [_sentence(rng, "en") for _ in range(4)], "source_id": f"src~{i}",
                         "split": split, "split_type": "indomain",
                         "label": "" if split == "test" else str(i % 4)})  # test labels hidden: ""
        splits[split] = _columns(rows)
    _parquet_repo(store, "Rowan/hellaswag", {"default": (feats, splits)},
                  layout="data/{split}-00000-of-00001.parquet",  # layout: not verified
                  note="HellaSwag (hellaswag.py): label is a string, '' on test.")


def _cosmos_qa(store: HubStore) -> None:
    import datasets as D

    feats = D.Features({"id": D.Value("string"), "context": D.Value("string"), "question": D.Value("string"),
                        **{f"answer{i}": D.Value("string") for i in range(4)}, "label": D.Value("int32")})
    splits = {}
    for split in ("train", "test", "validation"):
        rng = _rng("cosmos", split)
        splits[split] = _columns([{"id": f"cq-{split}-{i}", "context": _sentence(rng, "en", 8, 14),
                                   "question": _sentence(rng, "en")[:-1] + "?",
                                   **{f"answer{j}": _sentence(rng, "en") for j in range(4)},
                                   "label": -1 if split == "test" else i % 4}
                                  for i in range(TRAIN_ROWS if split == "train" else ROWS)])
    # the Parquet export: no card, one folder per config and split (refs/convert/parquet)
    _parquet_repo(store, "allenai/cosmos_qa", {"default": (feats, splits)}, layout="{config}/{split}/0000.parquet",
                  card=False, refs=("refs/convert/parquet",), sha=COSMOS_QA_PARQUET, note="")
    # main: the loading script alone (datasets >= 4 refuses to run it). Not verified: the card's
    # exact text; its features are the script's
    card = ("---\ndataset_info:\n  features:\n" + "".join(f"  - name: {k}\n    dtype: {v.dtype}\n"
                                                         for k, v in feats.items()) + "---\n# Cosmos QA\n")
    store.commit("allenai/cosmos_qa", {
        "README.md": card.encode(),
        "cosmos_qa.py": b"# Replica placeholder for the dataset's loading script (not its code).\n",
        ".gitattributes": b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"}, refs=("main",), sha=COSMOS_QA_MAIN)


def _commonsense_qa(store: HubStore) -> None:
    import datasets as D

    feats = D.Features({"id": D.Value("string"), "question": D.Value("string"),
                        "question_concept": D.Value("string"),
                        "choices": D.Sequence({"label": D.Value("string"), "text": D.Value("string")}),
                        "answerKey": D.Value("string")})
    splits = {}
    for split in ("train", "validation", "test"):
        rng = _rng("csqa", split)
        splits[split] = _columns([{"id": f"k{split}{i}", "question": _sentence(rng, "en")[:-1] + "?",
                                   "question_concept": _word(rng, "en"),
                                   "choices": {"label": list("ABCDE"), "text": [_word(rng, "en") for _ in range(5)]},
                                   "answerKey": "" if split == "test" else "ABCDE"[i % 5]}
                                  for i in range(TRAIN_ROWS if split == "train" else ROWS)])
    _parquet_repo(store, "tau/commonsense_qa", {"default": (feats, splits)},
                  layout="data/{split}-00000-of-00001.parquet",
                  note="CommonsenseQA (commonsense_qa.py): choices {label, text}; answerKey '' on test.")


# -----------------------------------------------------------------------------------------------
# google/xtreme
# -----------------------------------------------------------------------------------------------

def _xtreme_configs() -> dict[str, tuple]:
    import datasets as D

    S = D.Value("string")
    out: dict[str, tuple] = {}

    def n_rows(split):
        return TRAIN_ROWS if split == "train" else ROWS

    # XNLI: one config, every language in it (xtreme.py: test and validation only)
    xnli = {}
    for split in ("test", "validation"):
        rows = []
        for lang in XNLI_LANGS:
            rng = _rng("xnli", split, lang)
            rows += [{"language": lang, "sentence1": _sentence(rng, lang), "sentence2": _sentence(rng, lang),
                      "gold_label": NLI[i % 3]} for i in range(ROWS)]
        xnli[split] = _columns(rows)
    out["XNLI"] = (D.Features({"language": S, "sentence1": S, "sentence2": S, "gold_label": S}), xnli)

    for lang in PAWSX_LANGS:
        out[f"PAWS-X.{lang}"] = (D.Features({"sentence1": S, "sentence2": S, "label": S}), {
            split: _columns([{"sentence1": _sentence(rng, lang), "sentence2": _sentence(rng, lang),
                              "label": str(i % 2)} for i in range(n_rows(split))])
            for split in ("validation", "test", "train") for rng in [_rng("pawsx", split, lang)]})

    upos = D.Features({"tokens": D.Sequence(S), "pos_tags": D.Sequence(D.ClassLabel(names=UPOS))})
    for lang, name in UD_NAMES.items():
        splits = (("test",) if name in ("Tagalog", "Thai", "Yoruba") else
                  ("train", "test") if name == "Kazakh" else ("train", "validation", "test"))
        cfg = {}
        for split in splits:
            rng = _rng("udpos", split, lang)
            rows = []
            for i in range(n_rows(split)):
                toks = _words(rng, lang)
                rows.append({"tokens": toks, "pos_tags": [rng.randrange(len(UPOS)) for _ in toks]})
            cfg[split] = _columns(rows)
        out[f"udpos.{name}"] = (upos, cfg)

    panx = D.Features({"tokens": D.Sequence(S), "ner_tags": D.Sequence(D.ClassLabel(names=PANX)),
                       "langs": D.Sequence(S)})
    for lang in PANX_LANGS:
        cfg = {}
        for split in ("validation", "test", "train"):
            rng = _rng("panx", split, lang)
            rows = []
            for i in range(n_rows(split)):
                toks = _words(rng, lang)
                tags = [0] * len(toks)
                j = rng.randrange(len(toks))
                tags[j] = rng.choice([1, 3, 5])  # a one-word entity
                rows.append({"tokens": toks, "ner_tags": tags, "langs": [lang] * len(toks)})
            cfg[split] = _columns(rows)
        out[f"PAN-X.{lang}"] = (panx, cfg)

    for lang in XQUAD_LANGS:  # XQuAD: no title; one split, validation
        rng = _rng("xquad", lang)
        out[f"XQuAD.{lang}"] = (_squad_features(D, title=False), {"validation": _columns(
            [qa_row(rng, lang, f"xq-{lang}-{i}", title=False, shift=1 if i == 1 else 0) for i in range(ROWS)])})
    for lang in MLQA_LANGS:  # the registry reads MLQA.<l>.<l> only (the hub has all 49 pairs)
        out[f"MLQA.{lang}.{lang}"] = (_squad_features(D), {
            split: _columns([qa_row(rng, lang, f"ml-{split}-{lang}-{i}", shift=1 if i == 1 else 0)
                             for i in range(ROWS)])
            for split in ("test", "validation") for rng in [_rng("mlqa", split, lang)]})
    tydi = {}
    for split in ("train", "validation"):
        rows = []
        for lang, name in TYDIQA_NAMES.items():
            rng = _rng("tydiqa", split, lang)
            n = TRAIN_ROWS if split == "train" and lang == "en" else 2
            rows += [qa_row(rng, lang, f"{name}-{1000 + i}-{i % 2}", shift=2 if i == 1 else 0) for i in range(n)]
        tydi[split] = _columns(rows)
    out["tydiqa"] = (_squad_features(D), tydi)

    bitext = D.Features({"source_sentence": S, "target_sentence": S, "source_lang": S, "target_lang": S})
    for lang in BUCC_LANGS:
        cfg = {}
        for split in ("validation", "test"):
            rng = _rng("bucc", split, lang)
            cfg[split] = _columns([{"source_sentence": _sentence(rng, lang), "target_sentence": _sentence(rng, "en"),
                                    "source_lang": f"{lang}-{100000 + 7 * i:09d}",
                                    "target_lang": f"en-{200000 + 11 * i:09d}"} for i in range(ROWS)])
        out[f"bucc18.{lang}"] = (bitext, cfg)
    for lang, code in TATOEBA_CODES.items():
        rng = _rng("tatoeba", lang)
        out[f"tatoeba.{code}"] = (bitext, {"validation": _columns(
            [{"source_sentence": _sentence(rng, lang) + "\n", "target_sentence": _sentence(rng, "en") + "\n",
              "source_lang": TATOEBA_SOURCE_LANG, "target_lang": "eng"} for i in range(ROWS)])})
    return out


def _xtreme(store: HubStore) -> None:
    _parquet_repo(store, "google/xtreme", _xtreme_configs(), layout="{config}/{split}-00000-of-00001.parquet",
                  note="google/xtreme: the configs the xrobust registry reads (xtreme.py, dataset_infos.json).")


BUILDERS = (_glue, _anli, _snli, _squad, _hellaswag, _cosmos_qa, _commonsense_qa, _xtreme)
REPOS = ("nyu-mll/glue", "facebook/anli", "stanfordnlp/snli", "rajpurkar/squad", "Rowan/hellaswag",
         "allenai/cosmos_qa", "tau/commonsense_qa", "google/xtreme")


def build_replicas(store: HubStore) -> HubStore:
    import datasets

    datasets.disable_progress_bars()
    for build in BUILDERS:
        build(store)
    return store
