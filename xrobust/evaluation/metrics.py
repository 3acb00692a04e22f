"""XTREME metrics, numerically identical to the official XTREME scorer.

The official scorer (google-research/xtreme `evaluate.py`) combines:
- accuracy over stripped lines (PAWS-X, XNLI, Tatoeba);
- seqeval (pip release, today 1.2.x) micro precision/recall/F1 on tag sequences (PAN-X, UD-POS);
- the SQuAD v1.1 script (XQuAD, TyDiQA-GoldP) and the MLQA v1 script (MLQA);
- set-based F1 over tab-separated id pairs (BUCC).
Every score is a percentage (x100), as there. The arithmetic is done in the same order so the
numbers agree to the last bit (except `all_task`, see `benchmark_scores`).
"""

from __future__ import annotations

import re
import string
import unicodedata
import warnings
from collections import Counter
from typing import Iterable, Mapping, Sequence

from xrobust.errors import XRobustError


class MetricError(XRobustError):
    """Inputs a metric cannot score (mismatched lengths, unknown language, ...)."""


# Task names, language order and groups as in the official scorer: averages are taken in this
# order, so keeping it keeps the floating-point sums identical.
TASK2LANGS: dict[str, list[str]] = {
    "pawsx": "de,en,es,fr,ja,ko,zh".split(","),
    "xnli": "ar,bg,de,el,en,es,fr,hi,ru,sw,th,tr,ur,vi,zh".split(","),
    "panx": (
        "ar,he,vi,id,jv,ms,tl,eu,ml,ta,te,af,nl,en,de,el,bn,hi,mr,ur,fa,fr,it,pt,es,bg,ru,ja,ka,"
        "ko,th,sw,yo,my,zh,kk,tr,et,fi,hu"
    ).split(","),
    "udpos": (
        "af,ar,bg,de,el,en,es,et,eu,fa,fi,fr,he,hi,hu,id,it,ja,kk,ko,mr,nl,pt,ru,ta,te,th,tl,tr,"
        "ur,vi,yo,zh"
    ).split(","),
    "bucc2018": "de,fr,ru,zh".split(","),
    "tatoeba": (
        "ar,he,vi,id,jv,tl,eu,ml,ta,te,af,nl,de,el,bn,hi,mr,ur,fa,fr,it,pt,es,bg,ru,ja,ka,ko,th,"
        "sw,zh,kk,tr,et,fi,hu"
    ).split(","),
    "xquad": "en,es,de,el,ru,tr,ar,vi,th,zh,hi".split(","),
    "mlqa": "en,es,de,ar,hi,vi,zh".split(","),
    "tydiqa": "en,ar,bn,fi,id,ko,ru,sw,te".split(","),
}

GROUP2TASK: dict[str, list[str]] = {
    "classification": ["pawsx", "xnli"],
    "tagging": ["udpos", "panx"],
    "qa": ["xquad", "mlqa", "tydiqa"],
    "retrieval": ["bucc2018", "tatoeba"],
}

QA_TASKS = frozenset(GROUP2TASK["qa"])
MLQA_LANGS = ("en", "es", "de", "ar", "hi", "vi", "zh")


# ---------------------------------------------------------------- classification / retrieval


def accuracy(golds: Sequence, preds: Sequence) -> dict[str, float]:
    """Percentage of positions where pred == gold (compare stripped strings for file input)."""
    if len(golds) != len(preds):
        raise MetricError(f"accuracy: {len(preds)} predictions for {len(golds)} gold labels")
    if not preds:
        raise MetricError("accuracy: no examples to score")
    correct = sum(int(p == g) for p, g in zip(preds, golds))
    return {"accuracy": float(correct) / len(preds) * 100}


def tatoeba_accuracy(gold_indices: Sequence, pred_indices: Sequence) -> dict[str, float]:
    """Nearest-neighbour accuracy; indices are compared as strings, as the file scorer does."""
    return accuracy([str(g).strip() for g in gold_indices], [str(p).strip() for p in pred_indices])


def _pair(item) -> tuple:
    # The official scorer splits each stripped line on tabs; tuples are taken as already split.
    return tuple(item.split("\t")) if isinstance(item, str) else tuple(item)


def bucc_prf(gold_pairs: Iterable, pred_pairs: Iterable) -> dict[str, float]:
    """F1 over sets of (src id, tgt id) pairs; items are "src\\ttgt" lines or tuples."""
    gold = {_pair(x) for x in gold_pairs}
    pred = {_pair(x) for x in pred_pairs}
    ncorrect = len(gold & pred)
    if ncorrect > 0:
        precision = ncorrect / len(pred)
        recall = ncorrect / len(gold)
        f1 = 2 * precision * recall / (precision + recall)
    else:
        precision = recall = f1 = 0
    return {"f1": f1 * 100, "precision": precision * 100, "recall": recall * 100}


# ---------------------------------------------------------------------------------- tagging


def check_tag_lengths(golds: Sequence[Sequence[str]], preds: Sequence[Sequence[str]]) -> None:
    """Raise MetricError naming the first sentence whose lengths differ (seqeval would too)."""
    if len(golds) != len(preds):
        raise MetricError(f"{len(preds)} predicted sentences for {len(golds)} gold sentences")
    for i, (g, p) in enumerate(zip(golds, preds)):
        if len(g) != len(p):
            raise MetricError(f"sentence {i}: {len(p)} predicted tags for {len(g)} gold tags")


def seqeval_prf(golds: Sequence[Sequence[str]], preds: Sequence[Sequence[str]]) -> dict[str, float]:
    """seqeval micro F1/precision/recall exactly as the official scorer calls it.

    Calls seqeval itself (default, non-strict mode) so chunking rules match. For tags without a
    B-/I- prefix (UD-POS) seqeval takes the first character as the chunk tag and the rest as the
    type, so runs of the same tag merge into one "entity" (NOUN NOUN -> one chunk of type "OUN"),
    SYM/SCONJ start with S (single-token chunks) and SCONJ/CCONJ share the type "CONJ". The score
    is therefore not per-token accuracy; we keep it because the published numbers use it.
    """
    check_tag_lengths(golds, preds)
    from seqeval.metrics import f1_score, precision_score, recall_score

    y_true = [list(s) for s in golds]
    y_pred = [list(s) for s in preds]
    with warnings.catch_warnings():
        # seqeval warns on every non-BIO tag (UD-POS) and on zero division (it returns 0 then).
        warnings.simplefilter("ignore")
        f1 = f1_score(y_true, y_pred)
        precision = precision_score(y_true, y_pred)
        recall = recall_score(y_true, y_pred)
    return {"f1": float(f1) * 100, "precision": float(precision) * 100, "recall": float(recall) * 100}


# --------------------------------------------------------------------------------------- QA

_SQUAD_PUNCT = frozenset(string.punctuation)
_SQUAD_ARTICLES = re.compile(r"\b(?:a|an|the)\b")


def squad_normalize(text: str) -> str:
    """SQuAD v1.1: lowercase, drop ASCII punctuation, drop English articles, squeeze spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _SQUAD_PUNCT)
    text = _SQUAD_ARTICLES.sub(" ", text)
    return " ".join(text.split())


_MLQA_ARTICLES = {
    "en": re.compile(r"\b(?:a|an|the)\b"),
    "es": re.compile(r"\b(?:un|una|unos|unas|el|la|los|las)\b"),
    "de": re.compile(r"\b(?:ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b"),
    "vi": re.compile(r"\b(?:của|là|cái|chiếc|những)\b"),
    "hi": None,
    "zh": None,
}
# The MLQA script's Arabic pattern is `\sال^|ال`: the first branch can never match (`^` after
# three characters), so every occurrence of "ال" is replaced, not only the prefix. Kept as is.
_ARABIC_ARTICLE = "ال"
_PUNCT_CACHE: dict[str, bool] = {}


def is_mlqa_punct(ch: str) -> bool:
    """Unicode category P* or ASCII string.punctuation (which also holds symbols like $ + ^)."""
    hit = _PUNCT_CACHE.get(ch)
    if hit is None:
        hit = unicodedata.category(ch).startswith("P") or ch in _SQUAD_PUNCT
        _PUNCT_CACHE[ch] = hit
    return hit


def _is_split_cjk(ch: str) -> bool:
    # The MLQA script splits the range U+4E00..U+9FA5 only (not the whole CJK block).
    return "\u4e00" <= ch <= "\u9fa5"


def mlqa_tokenize(text: str, lang: str) -> list[str]:
    """Whitespace tokens; for zh every CJK character and punctuation mark is its own token."""
    if lang == "zh":
        tokens: list[str] = []
        buf: list[str] = []
        for ch in text:
            if _is_split_cjk(ch) or is_mlqa_punct(ch):
                tokens.extend("".join(buf).split())
                buf = []
                tokens.append(ch)
            else:
                buf.append(ch)
        tokens.extend("".join(buf).split())
        return [t for t in tokens if t.strip()]
    if lang in _MLQA_ARTICLES or lang == "ar":
        return text.split()
    raise MetricError(f"MLQA normalization: unknown language '{lang}' (expected one of {', '.join(MLQA_LANGS)})")


def mlqa_normalize(text: str, lang: str) -> str:
    """MLQA v1: lowercase, drop Unicode punctuation, drop per-language articles, re-tokenize."""
    if lang not in MLQA_LANGS:
        raise MetricError(f"MLQA normalization: unknown language '{lang}' (expected one of {', '.join(MLQA_LANGS)})")
    text = "".join(ch for ch in text.lower() if not is_mlqa_punct(ch))
    if lang == "ar":
        text = text.replace(_ARABIC_ARTICLE, " ")
    elif _MLQA_ARTICLES[lang] is not None:
        text = _MLQA_ARTICLES[lang].sub(" ", text)
    return " ".join(mlqa_tokenize(text, lang))


def _token_f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    common = Counter(pred_tokens) & Counter(gold_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0  # also when both are empty: EM is 1 there but F1 is 0, as in the scripts
    precision = 1.0 * num_same / len(pred_tokens)
    recall = 1.0 * num_same / len(gold_tokens)
    return (2 * precision * recall) / (precision + recall)


def squad_exact_match(prediction: str, gold: str) -> bool:
    return squad_normalize(prediction) == squad_normalize(gold)


def squad_f1(prediction: str, gold: str) -> float:
    return _token_f1(squad_normalize(prediction).split(), squad_normalize(gold).split())


def mlqa_exact_match(prediction: str, gold: str, lang: str) -> bool:
    return mlqa_normalize(prediction, lang) == mlqa_normalize(gold, lang)


def mlqa_f1(prediction: str, gold: str, lang: str) -> float:
    return _token_f1(mlqa_normalize(prediction, lang).split(), mlqa_normalize(gold, lang).split())


def _items(gold) -> Iterable[tuple[str, Sequence[str]]]:
    return gold.items() if isinstance(gold, Mapping) else gold


def _qa_scores(gold, predictions: Mapping[str, str], em_fn, f1_fn) -> dict[str, float]:
    exact_match = f1 = total = 0
    for qid, answers in _items(gold):
        total += 1
        if qid not in predictions:
            continue  # unanswered question: scores 0, as in the official scripts
        if not answers:
            raise MetricError(f"question '{qid}' has no gold answers")
        prediction = predictions[qid]
        exact_match += max(em_fn(prediction, a) for a in answers)
        f1 += max(f1_fn(prediction, a) for a in answers)
    if total == 0:
        raise MetricError("QA: no gold questions to score")
    return {"exact_match": 100.0 * exact_match / total, "f1": 100.0 * f1 / total}


def squad_scores(gold, predictions: Mapping[str, str]) -> dict[str, float]:
    """SQuAD v1.1 EM/F1 (%). gold: {id: [answer texts]} or [(id, [answer texts])] in file order;
    questions missing from predictions score 0."""
    return _qa_scores(gold, predictions, squad_exact_match, squad_f1)


def mlqa_scores(gold, predictions: Mapping[str, str], lang: str) -> dict[str, float]:
    """MLQA v1 EM/F1 (%) with `lang`'s normalization; same inputs as squad_scores."""
    if lang not in MLQA_LANGS:
        raise MetricError(f"MLQA normalization: unknown language '{lang}' (expected one of {', '.join(MLQA_LANGS)})")
    return _qa_scores(
        gold,
        predictions,
        lambda p, g: mlqa_exact_match(p, g, lang),
        lambda p, g: mlqa_f1(p, g, lang),
    )


def squad_gold_answers(articles: Sequence[Mapping]) -> list[tuple[str, list[str]]]:
    """Flatten SQuAD-layout articles into [(question id, [answer texts])] in file order."""
    out = []
    for article in articles:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                out.append((qa["id"], [a["text"] for a in qa["answers"]]))
    return out


# ------------------------------------------------------------------------------ aggregation


def aggregate_task(task: str, per_language: Mapping[str, Mapping[str, float]]) -> dict:
    """Official per-task object: {metric: {lang: value}}, avg_<metric>, and avg_metric
    ((avg EM + avg F1) / 2 for QA, else avg F1, else avg accuracy)."""
    if not per_language:
        raise MetricError(f"task '{task}': no languages to aggregate")
    score: dict = {}
    for lang, metrics in per_language.items():
        for name, value in metrics.items():
            score.setdefault(name, {})[lang] = float(value)
    averages = {f"avg_{m}": sum(v.values()) / len(v) for m, v in score.items()}
    score.update(averages)
    if task in QA_TASKS:
        score["avg_metric"] = (score["avg_exact_match"] + score["avg_f1"]) / 2
    elif "avg_f1" in score:
        score["avg_metric"] = score["avg_f1"]
    elif "avg_accuracy" in score:
        score["avg_metric"] = score["avg_accuracy"]
    return score


def benchmark_scores(detailed: Mapping[str, Mapping]) -> dict[str, float]:
    """Group scores for every complete group and `all_task` when all nine tasks are present.

    The official scorer sums `all_task` over a Python set, whose order varies between runs, so
    its last bit can vary; we sum in TASK2LANGS order."""
    overall: dict[str, float] = {}
    if set(TASK2LANGS) == set(detailed):
        overall["all_task"] = sum(detailed[t]["avg_metric"] for t in TASK2LANGS) / len(TASK2LANGS)
    for group, tasks in GROUP2TASK.items():
        if all(t in detailed for t in tasks):
            overall[group] = sum(detailed[t]["avg_metric"] for t in tasks) / len(tasks)
    return overall
