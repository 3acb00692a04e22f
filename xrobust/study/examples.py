"""Per-example scores of a run, from the files every evaluation writes (predictions/ and labels/ in the
official XTREME layout), with the project's metric functions.

Each (task, language) becomes a ratio of per-example sums, value = 100 * sum(num) / sum(den), equal to the
language's number in results.json (`evaluation.results.language_score`; checked on every read):
- accuracy (classification, Tatoeba): num = 1 when the prediction is right, den = 1;
- QA: num = language_score of the example's exact match and F1 ((EM + F1) / 2 for XTREME QA), den = 1;
- F1 over entities (tagging, seqeval's chunking via its own get_entities) or over id pairs (BUCC):
  num = 2 x true positives and den = predicted + gold, per sentence or per source sentence; micro F1
  is 2 TP / (P + G), so the sums reproduce the official number.
Results are cached per run under the study's cache/ folder, keyed by the files' sizes and times.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..evaluation import metrics as M
from ..evaluation import scorer as S
from ..evaluation.results import language_score, load_results


@dataclass
class LanguageScores:
    value: float  # the language's score (percent)
    num: np.ndarray  # per example
    den: np.ndarray  # per example
    labels: str  # digest of the gold file: runs compared example by example must share it


def _qa(task: str, rules: str, lang: str, pred: Path, gold: Path):
    preds = S.read_qa_predictions(pred)
    golds = S.read_qa_gold(gold)
    if rules == "mlqa":
        em_fn, f1_fn = (lambda p, a: M.mlqa_exact_match(p, a, lang)), (lambda p, a: M.mlqa_f1(p, a, lang))
    else:
        em_fn, f1_fn = M.squad_exact_match, M.squad_f1
    num = np.zeros(len(golds))
    for i, (qid, answers) in enumerate(golds):
        if qid in preds:  # unanswered: 0, as the official scripts
            em = max(em_fn(preds[qid], a) for a in answers)
            f1 = max(f1_fn(preds[qid], a) for a in answers)
            num[i] = language_score(task, {"exact_match": 100.0 * em, "f1": 100.0 * f1})
    return num, np.ones(len(golds))


def _tagging(pred: Path, gold: Path):
    from seqeval.metrics.sequence_labeling import get_entities

    preds, _ = S.read_tag_file(pred)
    golds, _ = S.read_tag_file(gold)
    M.check_tag_lengths(golds, preds)
    num, den = np.zeros(len(golds)), np.zeros(len(golds))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seqeval warns on every non-BIO tag (UD-POS)
        for i, (g, p) in enumerate(zip(golds, preds)):
            true, found = set(get_entities(list(g))), set(get_entities(list(p)))
            num[i] = 200.0 * len(true & found)
            den[i] = len(true) + len(found)
    return num, den


def _bucc(pred: Path, gold: Path):
    gold_pairs = {tuple(line.split("\t")) for line in S.read_label_file(gold) if line}
    pred_pairs = {tuple(line.split("\t")) for line in S.read_label_file(pred) if line}
    sources = sorted({p[0] for p in gold_pairs | pred_pairs})
    index = {s: i for i, s in enumerate(sources)}
    num, den = np.zeros(len(sources)), np.zeros(len(sources))
    for pair in gold_pairs:
        den[index[pair[0]]] += 1
    for pair in pred_pairs:
        den[index[pair[0]]] += 1
        if pair in gold_pairs:
            num[index[pair[0]]] += 200.0
    return num, den


def _accuracy(pred: Path, gold: Path):
    preds, golds = S.read_label_file(pred), S.read_label_file(gold)
    if len(preds) != len(golds) or not golds:
        raise DataError(f"{pred}: {len(preds)} lines, but {gold} has {len(golds)} (one prediction per gold line)")
    return 100.0 * (np.array(preds, dtype=object) == np.array(golds, dtype=object)).astype(float), np.ones(len(golds))


def language_examples(task: str, lang: str, pred: Path, gold: Path) -> tuple[np.ndarray, np.ndarray]:
    rules = S.scoring_rules(task)
    if rules in S.TAG_TASKS:
        return _tagging(pred, gold)
    if rules == "bucc2018":
        return _bucc(pred, gold)
    if rules in S.LABEL_TASKS:
        return _accuracy(pred, gold)
    if rules in M.QA_TASKS:
        return _qa(task, rules, lang, pred, gold)
    raise DataError(f"{pred}: no per-example scoring for task '{task}'")


def _files(run_dir: Path, split: str, tasks: list[str]) -> dict[tuple[str, str], tuple[Path, Path]]:
    out = {}
    for task in tasks:
        for gold in sorted((run_dir / "labels" / task).glob(f"{split}-*")):
            lang = gold.name[len(split) + 1:].split(".")[0]
            out[(task, lang)] = (run_dir / "predictions" / task / gold.name, gold)
    return out


def run_examples(run_dir: Path, results_path: Path, split: str, tasks: list[str]) -> dict[tuple[str, str],
                                                                                        LanguageScores]:
    """Per-example scores of `tasks` (official names) for every language results.json has."""
    results = load_results(results_path)
    files = _files(run_dir, split, tasks)
    out = {}
    for task in tasks:
        for lang, metrics in (results["tasks"].get(task) or {"languages": {}})["languages"].items():
            if (task, lang) not in files:
                raise DataError(f"{run_dir}/labels/{task}/{split}-{lang}.*: missing, but {results_path} scores "
                                f"{task}/{lang}; per-example scores need the gold file the evaluation writes")
            pred, gold = files[(task, lang)]
            num, den = language_examples(task, lang, pred, gold)
            value = num.sum() / den.sum() if den.sum() else 0.0
            expected = language_score(task, metrics)
            if not abs(value - expected) <= 1e-6 * max(1.0, abs(expected)):
                raise DataError(f"{pred}: per-example scores give {value:.6f} for {task}/{lang}, but {results_path} "
                                f"says {expected:.6f}; were the predictions rewritten after the evaluation?")
            digest = hashlib.sha1(gold.read_bytes()).hexdigest()
            # float32, as the cache stores them: a report does not depend on whether the cache existed
            out[(task, lang)] = LanguageScores(float(expected), num.astype(np.float32), den.astype(np.float32), digest)
    return out


# -- cache ----------------------------------------------------------------------------------------------

def _signature(run_dir: Path, results_path: Path, split: str, tasks: list[str]) -> str:
    paths = [results_path] + [p for pair in _files(run_dir, split, tasks).values() for p in pair]
    stats = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths if p.is_file()]
    return json.dumps(stats)


def write_cache(path: Path, scores: dict, signature: str) -> None:
    """One .npz per run: examples of every (task, language) concatenated; den stored only where it is
    not all ones (the mean metrics)."""
    import io

    from ..io import atomic_write_bytes

    keys = list(scores)
    ones = np.array([bool((scores[k].den == 1).all()) for k in keys], dtype=bool)
    num_lengths = [len(scores[k].num) for k in keys]
    den_lengths = [0 if o else len(scores[k].den) for k, o in zip(keys, ones)]
    buf = io.BytesIO()
    np.savez(buf, signature=np.array(signature), keys=np.array(["\t".join(k) for k in keys], dtype=str),
             value=np.array([scores[k].value for k in keys], dtype=np.float64),
             num_offsets=np.concatenate([[0], np.cumsum(num_lengths)]).astype(np.int64),
             den_offsets=np.concatenate([[0], np.cumsum(den_lengths)]).astype(np.int64), ones=ones,
             num=np.concatenate([scores[k].num for k in keys] or [np.zeros(0)]).astype(np.float32),
             den=np.concatenate([scores[k].den for k, o in zip(keys, ones) if not o] or [np.zeros(0)])
             .astype(np.float32),
             labels=np.array([scores[k].labels for k in keys], dtype=str))
    atomic_write_bytes(path, buf.getvalue())


def read_cache(path: Path, signature: str | None = None) -> dict | None:
    """The scores in a cache file; None when its signature is not `signature` (when one is given)."""
    with np.load(path, allow_pickle=False) as z:
        if signature is not None and str(z["signature"]) != signature:
            return None
        # every member once: each z[name] reads it from the archive again
        num, den, value, keys, labels = z["num"], z["den"], z["value"], z["keys"], z["labels"]
        no, do, ones = z["num_offsets"], z["den_offsets"], z["ones"]
    out = {}
    for i, key in enumerate(keys):
        n = num[no[i]:no[i + 1]]
        d = np.ones(len(n), dtype=np.float32) if ones[i] else den[do[i]:do[i + 1]]
        out[tuple(str(key).split("\t"))] = LanguageScores(float(value[i]), n, d, str(labels[i]))
    return out


def cached_run_examples(run_dir: Path, results_path: Path, split: str, tasks: list[str], cache: Path):
    """run_examples, read from `cache` (.npz) when the run's files have not changed since it was written."""
    signature = _signature(run_dir, results_path, split, tasks)
    if cache.is_file():
        scores = read_cache(cache, signature)
        if scores is not None:
            return scores
    scores = run_examples(run_dir, results_path, split, tasks)
    write_cache(cache, scores, signature)
    return scores
