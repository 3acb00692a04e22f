"""The embedded demo world: synthetic multilingual tasks, an MLM corpus, a tokenizer and a tiny
XLM-R config, all generated offline and deterministically from one seed.

    world = build_world(Path("runs/world"), seed=0)
    world["data_root"] / "demo_xnli" / "dev-xb.jsonl"

Layout under root:
    data/{task}/{split}-{lang}.jsonl   task files in canonical form (labels as names)
    corpus/mlm.jsonl                   {"lang", "kind", "text", "text_pair"} for masked-LM pretraining
    tokenizer/                         SentencePiece unigram model as an XLM-R tokenizer
    model/config.json                  tiny XLMRobertaConfig
    world.json                         manifest; a rebuild with the same seed and sizes is skipped
See docs/DEMO.md for the design of the languages and why zero-shot transfer works.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path

from xrobust.demo import task_generators
from xrobust.demo.grammar import code_switch, detokenize, render_clause, render_question
from xrobust.demo.lexicon import LANGUAGES
from xrobust.errors import DataError
from xrobust.io import atomic_write_json, atomic_write_text

DEMO_LANGUAGES = LANGUAGES
WORLD_VERSION = 5
MAX_LENGTH = 128  # longest input the tiny model accepts (QA contexts are ~60 tokens)
# shares of negated and of future-tense sentences in the MLM corpus: often enough that MLM aligns
# the negation words and the future particles of the four languages, which the demo NLI labels turn on
CORPUS_P_NEGATED = 0.5
CORPUS_P_FUTURE = 0.5

DEFAULT_SIZES = {
    "train": 2000,  # per intermediate task, English only
    "train_target": 8000,  # per target task, English only: fresh examples rather than epochs
    "dev": 200,  # per task and language
    "test": 200,
    "tatoeba": 200,  # per non-English language
    "corpus_mono": 1000,  # MLM sentences per language
    "corpus_parallel": 12000,  # translation pairs (each English with one other language, or two others)
    "corpus_codeswitch": 16000,  # sentences whose words are drawn from several lexicons
    "vocab_size": 450,  # small enough that cognates share their root piece (cup / cup+o)
}

MODEL_CONFIG = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 256,
}

# name -> format, labels, languages. Intermediate tasks are English train/dev; target tasks have
# English train and dev/test in every language (tatoeba: test in the non-English languages).
DEMO_TASKS = {
    "demo_nli": {"format": "classification", "labels": list(task_generators.NLI_LABELS), "role": "intermediate"},
    "demo_sentiment": {"format": "classification", "labels": list(task_generators.SENTIMENT_LABELS),
                       "role": "intermediate"},
    "demo_mc": {"format": "multiple_choice", "labels": ["0", "1", "2", "3"], "role": "intermediate"},
    "demo_qa": {"format": "span_qa", "labels": [], "role": "intermediate"},
    "demo_tag": {"format": "tagging", "labels": list(task_generators.POS_TAGS), "role": "intermediate"},
    "demo_xnli": {"format": "classification", "labels": list(task_generators.NLI_LABELS), "role": "target"},
    "demo_pos": {"format": "tagging", "labels": list(task_generators.POS_TAGS), "role": "target"},
    "demo_ner": {"format": "tagging", "labels": list(task_generators.NER_TAGS), "role": "target"},
    "demo_xqa": {"format": "span_qa", "labels": [], "role": "target"},
    "demo_tatoeba": {"format": "retrieval", "labels": [], "role": "target"},
}
for _name, _spec in DEMO_TASKS.items():
    if _spec["role"] == "intermediate":
        _spec.update(splits={"train": ["en"], "dev": ["en"]})
    elif _spec["format"] == "retrieval":
        # {id, source, target} rows per non-English language; gold is the same row
        _spec.update(splits={s: [lang for lang in LANGUAGES if lang != "en"] for s in ("dev", "test")})
    else:
        _spec.update(splits={"train": ["en"], "dev": list(LANGUAGES), "test": list(LANGUAGES)})

# task -> (sampler(rng, pools), renderer(lang, item)); each item is a meaning, rendered per language.
_GENERATORS = {
    "demo_nli": (lambda r, p: task_generators.sample_nli(r, p, facts=True), task_generators.nli_row),
    "demo_sentiment": (task_generators.sample_sentiment, task_generators.sentiment_row),
    "demo_mc": (task_generators.sample_mc, task_generators.mc_row),
    "demo_qa": (lambda r, p: task_generators.sample_qa(r, p, facts=0.0), task_generators.qa_row),
    "demo_tag": (lambda r, p: task_generators.sample_tagging(r, p, questions=True), task_generators.pos_row),
    "demo_xnli": (lambda r, p: task_generators.sample_nli(r, p, facts=False), task_generators.nli_row),
    "demo_pos": (lambda r, p: task_generators.sample_tagging(r, p, questions=False), task_generators.pos_row),
    "demo_ner": (task_generators.sample_ner, task_generators.ner_row),
    "demo_xqa": (lambda r, p: task_generators.sample_qa(r, p, facts=0.6), task_generators.qa_row),
    "demo_tatoeba": (task_generators.sample_bitext, task_generators.bitext_row),
}


def _rng(seed: int, *parts: str) -> random.Random:
    # str seeds hash with SHA-512 inside random: stable across processes and PYTHONHASHSEED
    return random.Random(f"xrobust-demo/{seed}/" + "/".join(parts))


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def generate_task(name: str, seed: int, sizes: dict) -> dict[tuple[str, str], list[dict]]:
    """(split, lang) -> rows. Eval meanings are drawn first and excluded from train; every eval
    item is rendered in every language, so dev/test sets are parallel across languages."""
    sample, render = _GENERATORS[name]
    spec = DEMO_TASKS[name]
    out: dict[tuple[str, str], list[dict]] = {}
    seen: set[str] = set()
    for split in [s for s in ("dev", "test", "train") if s in spec["splits"]]:
        n = sizes["tatoeba"] if spec["format"] == "retrieval" else sizes[split]
        if split == "train" and spec["role"] == "target":
            n = sizes["train_target"]
        rng, pools = _rng(seed, name, split), task_generators.Pools(split)
        items, attempts = [], 0
        while len(items) < n:
            attempts += 1
            if attempts > 50 * n + 1000:
                raise DataError(f"demo world: could not draw {n} distinct {name} {split} items; lower sizes[{split!r}]")
            item = sample(rng, pools)
            k = json.dumps(render("en", item), sort_keys=True)
            if k in seen:
                continue
            seen.add(k)
            items.append(item)
        for lang in spec["splits"][split]:
            rows = []
            for i, item in enumerate(items):
                rows.append({"id": f"{name}-{split}-{i:05d}", **render(lang, item)})
            out[(split, lang)] = rows
    return out


def _corpus(seed: int, sizes: dict, exclude: set[str]) -> list[dict]:
    """Monolingual, parallel and code-switched text. Parallel pairs (shown to MLM as one input) and
    code-switching put translations in the same contexts, which aligns the lexicons in the encoder."""
    rows = []
    for lang in LANGUAGES:
        rng, pools = _rng(seed, "corpus", "mono", lang), task_generators.Pools("dev")
        for _ in range(sizes["corpus_mono"]):
            c = task_generators.sample_bitext(rng, pools, CORPUS_P_NEGATED, CORPUS_P_FUTURE)
            if rng.random() < 0.2:
                toks = render_question(lang, c, rng.choice(task_generators._askable(c)))
            else:
                toks = render_clause(lang, c)
            rows.append({"lang": lang, "kind": "mono", "text": detokenize(toks)[0], "text_pair": None})
    rng, pools = _rng(seed, "corpus", "parallel"), task_generators.Pools("dev")
    others = [lang for lang in LANGUAGES if lang != "en"]
    n = 0
    while n < sizes["corpus_parallel"]:
        c = task_generators.sample_bitext(rng, pools, CORPUS_P_NEGATED, CORPUS_P_FUTURE)
        a, b = ("en", rng.choice(others)) if rng.random() < 0.7 else tuple(rng.sample(others, 2))
        if rng.random() < 0.5:
            a, b = b, a
        ta, tb = task_generators.text(a, render_clause(a, c)), task_generators.text(b, render_clause(b, c))
        if ta in exclude or tb in exclude:  # keep Tatoeba test pairs out of pretraining
            continue
        rows.append({"lang": f"{a}-{b}", "kind": "parallel", "text": ta, "text_pair": tb})
        n += 1
    rng, pools = _rng(seed, "corpus", "codeswitch"), task_generators.Pools("dev")
    for _ in range(sizes["corpus_codeswitch"]):
        c = task_generators.sample_bitext(rng, pools, CORPUS_P_NEGATED, CORPUS_P_FUTURE)
        lang = rng.choice(LANGUAGES)
        p = rng.uniform(0.3, 0.9)
        toks = code_switch(render_clause(lang, c), lambda: rng.choice(LANGUAGES) if rng.random() < p else None)
        rows.append({"lang": lang, "kind": "codeswitch", "text": detokenize(toks)[0], "text_pair": None})
    return rows


def _manifest(seed: int, sizes: dict) -> dict:
    return {"version": WORLD_VERSION, "seed": seed, "sizes": sizes, "model": MODEL_CONFIG, "max_length": MAX_LENGTH}


def world_paths(root: Path, seed: int = 0) -> dict:
    root = Path(root)
    return {
        "root": root,
        "data_root": root / "data",
        "corpus": root / "corpus" / "mlm.jsonl",
        "tokenizer_dir": root / "tokenizer",
        "model_config_dir": root / "model",
        "languages": list(LANGUAGES),
        "tasks": {k: dict(v) for k, v in DEMO_TASKS.items()},
        "seed": seed,
        "max_length": MAX_LENGTH,
    }


def build_world(root: str | Path, seed: int = 0, *, sizes: dict | None = None) -> dict:
    """Write the demo world under `root` and return its paths (see module docstring).

    Deterministic: the same seed and sizes give byte-identical files. If `root/world.json`
    already records the same seed, sizes and version, nothing is regenerated.
    """
    unknown = set(sizes or {}) - set(DEFAULT_SIZES)
    if unknown:
        raise DataError(f"build_world: unknown sizes keys {sorted(unknown)}; expected some of {sorted(DEFAULT_SIZES)}")
    sizes = {**DEFAULT_SIZES, **(sizes or {})}
    for k, v in sizes.items():
        if not isinstance(v, int) or v < 1:
            raise DataError(f"build_world: sizes[{k!r}]={v!r}; expected a positive int")
    paths = world_paths(Path(root), seed)
    root = paths["root"]
    manifest_path = root / "world.json"
    manifest = _manifest(seed, sizes)
    if manifest_path.exists():
        try:
            old = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        if old and {k: old.get(k) for k in manifest} == manifest and all(
                (root / f).exists() for f in old.get("files", {})):
            return paths

    files: dict[str, str] = {}

    def write(rel: str, content: str) -> None:
        atomic_write_text(root / rel, content)
        files[rel] = hashlib.sha256(content.encode("utf-8")).hexdigest()

    tatoeba_text: set[str] = set()
    for name in DEMO_TASKS:
        for (split, lang), rows in generate_task(name, seed, sizes).items():
            write(f"data/{name}/{split}-{lang}.jsonl", _jsonl(rows))
            if name == "demo_tatoeba":
                tatoeba_text.update(t for r in rows for t in (r["source"], r["target"]))

    corpus = _corpus(seed, sizes, tatoeba_text)
    write("corpus/mlm.jsonl", _jsonl(corpus))

    from xrobust.demo.tokenizer import train_sentencepiece_tokenizer

    sentences = [t for r in corpus for t in (r["text"], r["text_pair"]) if t]
    tokenizer = train_sentencepiece_tokenizer(sentences, root / "tokenizer", vocab_size=sizes["vocab_size"])
    # record the model's length limit so featurizers truncate to what the position table holds
    tok_cfg_path = root / "tokenizer" / "tokenizer_config.json"
    tok_cfg = json.loads(tok_cfg_path.read_text(encoding="utf-8"))
    tok_cfg["model_max_length"] = MAX_LENGTH
    atomic_write_json(tok_cfg_path, tok_cfg)

    from transformers import XLMRobertaConfig

    config = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        **MODEL_CONFIG,
        # XLM-R positions start after the padding index: ids 2 .. MAX_LENGTH + 1
        max_position_embeddings=MAX_LENGTH + 2,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    )
    if config.pad_token_id != 1:
        raise DataError(f"demo tokenizer at {root / 'tokenizer'}: pad id {config.pad_token_id}; expected 1 as in XLM-R")
    write("model/config.json", config.to_json_string(use_diff=False))
    atomic_write_json(manifest_path, {**manifest, "files": files})
    return paths


def _encoder_matches(encoder: Path, world_root: Path) -> bool:
    """Whether `encoder` was pretrained on the corpus that world.json records."""
    try:
        log = json.loads((encoder / "pretrain_log.json").read_text(encoding="utf-8"))
        manifest = json.loads((world_root / "world.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (encoder / "config.json").is_file() and log.get("corpus_sha256") == manifest["files"].get("corpus/mlm.jsonl")


def prepare_world(out: Path, seed: int = 0) -> dict:
    """The world and its MLM-pretrained encoder under out/demo-world, built once per output folder
    and reused; the result holds the encoder's folder under "encoder" as well."""
    from xrobust.demo.pretrain import pretrain_mlm

    world_root = Path(out) / "demo-world"
    world = build_world(world_root, seed=seed)
    encoder = world_root / "mlm"
    if not _encoder_matches(encoder, world_root):
        if encoder.exists():  # pretrained on another corpus (an older world version): not reusable
            shutil.rmtree(encoder)
        pretrain_mlm(world, encoder, seed=seed)
    world["encoder"] = str(encoder)
    return world
