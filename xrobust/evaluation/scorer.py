"""Score a submission folder in the official XTREME layout (same numbers as its evaluate.py).

Layout, for both the prediction folder and the label folder:
    <folder>/<task>/test-<lang>.tsv     pawsx xnli panx udpos bucc2018 tatoeba
    <folder>/<task>/test-<lang>.json    xquad mlqa tydiqa
Every task with a directory in the label folder is scored: its prediction directory and, for every
language of the task (metrics.TASK2LANGS), both files must exist. (The official evaluate.py passes
over a gold task without predictions; here that is an error, so a partial submission is never
reported as complete.) Prediction folders without gold are not scored.

File contents:
- pawsx, xnli, tatoeba: one label per line (compared as stripped strings; tatoeba: the index of
  the retrieved sentence).
- panx, udpos: one tag per line, a blank line after each sentence (consecutive blank lines make
  empty sentences, as in the official reader).
- bucc2018: one "src_id<TAB>tgt_id" pair per line; order and count are free.
- QA predictions: a JSON object {question id: answer text}. QA gold: SQuAD v1.1 JSON
  ({"data": [articles]} or the list of articles).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from xrobust.errors import DataError

from . import metrics as M

log = logging.getLogger(__name__)

OFFICIAL_NAMES = {"bucc": "bucc2018"}  # the official scorer's task names, where they differ from ours
TAG_TASKS = ("panx", "udpos")
LABEL_TASKS = ("pawsx", "xnli", "tatoeba", "bucc2018")


def official_name(task: str) -> str:
    return OFFICIAL_NAMES.get(task, task)


def task_file(folder: str | os.PathLike, task: str, lang: str) -> Path:
    suffix = "json" if task in M.QA_TASKS else "tsv"
    return Path(folder) / task / f"test-{lang}.{suffix}"


def _open(path: Path):
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected the {path.parent.name} file for language "
                        f"'{path.stem.removeprefix('test-')}')")
    # Universal newlines and per-line iteration, exactly like the official reader.
    return open(path, "r", encoding="utf-8")


def read_label_file(path: str | os.PathLike) -> list[str]:
    """Every line, stripped (blank lines included, as the official reader keeps them)."""
    path = Path(path)
    try:
        with _open(path) as f:
            return [line.strip() for line in f]
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 ({exc})") from None


def read_tag_file(path: str | os.PathLike) -> tuple[list[list[str]], list[int]]:
    """Sentences of tags plus the 1-based line where each sentence starts (for error messages)."""
    path = Path(path)
    sentences: list[list[str]] = []
    starts: list[int] = []
    current: list[str] = []
    start = 1
    try:
        with _open(path) as f:
            for lineno, line in enumerate(f, 1):
                line = line.strip()
                if line:
                    if not current:
                        start = lineno
                    current.append(line)
                else:
                    # A blank line closes the sentence, even an empty one (official behaviour).
                    sentences.append(current)
                    starts.append(start if current else lineno)
                    current = []
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 ({exc})") from None
    if current:
        sentences.append(current)
        starts.append(start)
    return sentences, starts


def _load_json(path: Path):
    with _open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None


def read_qa_gold(path: str | os.PathLike) -> list[tuple[str, list[str]]]:
    """[(question id, [answer texts])] from a SQuAD v1.1 file, in file order."""
    path = Path(path)
    data = _load_json(path)
    if isinstance(data, dict) and "data" in data:
        data = data["data"]
    if not isinstance(data, list):
        raise DataError(f"{path}: expected SQuAD layout {{\"data\": [articles]}} or a list of articles")
    try:
        gold = M.squad_gold_answers(data)
    except (KeyError, TypeError) as exc:
        raise DataError(f"{path}: expected SQuAD layout (articles > paragraphs > qas with id and "
                        f"answers[].text); missing or malformed {exc}") from None
    for qid, answers in gold:
        if any(not isinstance(a, str) for a in answers):
            raise DataError(f"{path}: question '{qid}': answer texts must be strings")
    return gold


def read_qa_predictions(path: str | os.PathLike) -> dict[str, str]:
    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object {{question id: answer text}}")
    for qid, text in data.items():
        if not isinstance(text, str):
            raise DataError(f"{path}: prediction for '{qid}' must be a string, got {type(text).__name__}")
    return data


# Registered tasks outside XTREME (the embedded demo's) are scored by the rules of the XTREME task
# with the same metric; they appear after the official tasks and never enter the group scores.
_RULES_BY_METRIC = {"accuracy": "xnli", "tatoeba_accuracy": "tatoeba", "seqeval_f1": "panx",
                    "squad_em_f1": "xquad", "mlqa_em_f1": "mlqa", "bucc_f1": "bucc2018"}


def scoring_rules(task: str) -> str | None:
    """The official task whose file format and metric `task` follows (itself for XTREME tasks)."""
    if task in M.TASK2LANGS:
        return task
    from xrobust.errors import ConfigError
    from xrobust.tasks import get_task

    try:
        return _RULES_BY_METRIC.get(get_task(task).metric)
    except ConfigError:
        return None


def score_language(task: str, lang: str, prediction_file: str | os.PathLike,
                   label_file: str | os.PathLike) -> dict[str, float]:
    """Scores of one task/language pair, keys as in the official scorer."""
    pred_path, gold_path = Path(prediction_file), Path(label_file)
    task = scoring_rules(task) or task
    if task in TAG_TASKS:
        preds, pred_starts = read_tag_file(pred_path)
        golds, gold_starts = read_tag_file(gold_path)
        if len(preds) != len(golds):
            raise DataError(f"{pred_path}: {len(preds)} sentences, but {gold_path} has {len(golds)} "
                            f"(sentences are separated by blank lines)")
        for i, (p, g) in enumerate(zip(preds, golds)):
            if len(p) != len(g):
                raise DataError(f"{pred_path}: sentence {i + 1} (line {pred_starts[i]}) has {len(p)} tags, "
                                f"but {gold_path} sentence {i + 1} (line {gold_starts[i]}) has {len(g)}")
        return M.seqeval_prf(golds, preds)
    if task in LABEL_TASKS:
        preds = read_label_file(pred_path)
        golds = read_label_file(gold_path)
        if task == "bucc2018":
            return M.bucc_prf(golds, preds)  # a set of pairs: counts may differ
        if len(preds) != len(golds):
            raise DataError(f"{pred_path}: {len(preds)} lines, but {gold_path} has {len(golds)} "
                            f"(expected one prediction per gold line)")
        if not golds:
            raise DataError(f"{gold_path}: no examples")
        return M.accuracy(golds, preds)
    if task in M.QA_TASKS:
        preds = read_qa_predictions(pred_path)
        golds = read_qa_gold(gold_path)
        if not golds:
            raise DataError(f"{gold_path}: no questions")
        for qid, answers in golds:
            if not answers and qid in preds:
                raise DataError(f"{gold_path}: question '{qid}' has no gold answers")
        unanswered = sum(qid not in preds for qid, _ in golds)
        if unanswered:
            log.warning("%s: %d of %d questions unanswered; they score 0", pred_path, unanswered, len(golds))
        if task == "mlqa":
            return M.mlqa_scores(golds, preds, lang)
        return M.squad_scores(golds, preds)
    raise DataError(f"unknown task '{task}' (expected one of {', '.join(M.TASK2LANGS)})")


def score_folder(prediction_folder: str | os.PathLike, label_folder: str | os.PathLike) -> dict:
    """Official output: group scores (all_task first when all nine tasks are present), then one
    object per scored task in official task order."""
    pred_root, gold_root = Path(prediction_folder), Path(label_folder)
    for root, what in ((pred_root, "prediction"), (gold_root, "label")):
        if not root.is_dir():
            raise DataError(f"{root}: {what} folder not found")
    unpredicted = sorted(p.name for p in gold_root.iterdir() if p.is_dir() and scoring_rules(p.name) is not None
                         and not (pred_root / p.name).is_dir())
    if unpredicted:
        raise DataError(f"{pred_root}: no prediction folder for the gold task(s) {', '.join(unpredicted)} of "
                        f"{gold_root}; expected {pred_root / unpredicted[0]}/ (remove the gold folder to score "
                        "without it)")
    detailed = {}
    for task, langs in M.TASK2LANGS.items():
        if not ((pred_root / task).is_dir() and (gold_root / task).is_dir()):
            continue
        per_lang = {lang: score_language(task, lang, task_file(pred_root, task, lang),
                                         task_file(gold_root, task, lang)) for lang in langs}
        detailed[task] = M.aggregate_task(task, per_lang)
    for folder in sorted(p for p in pred_root.iterdir() if p.is_dir()):
        task = folder.name
        if task in M.TASK2LANGS or not (gold_root / task).is_dir() or scoring_rules(task) is None:
            continue
        langs = sorted(f.name.split(".")[0].removeprefix("test-") for f in (gold_root / task).glob("test-*"))
        per_lang = {lang: score_language(task, lang, task_file(pred_root, scoring_rules(task), lang).parent.parent
                                         / task / task_file(pred_root, scoring_rules(task), lang).name,
                                         task_file(gold_root, scoring_rules(task), lang).parent.parent / task
                                         / task_file(gold_root, scoring_rules(task), lang).name)
                    for lang in langs}
        if per_lang:
            detailed[task] = M.aggregate_task(task, per_lang)
    if not detailed:
        raise DataError(f"no task to score: {pred_root} and {gold_root} share no task folder "
                        f"(expected some of {', '.join(M.TASK2LANGS)})")
    out = M.benchmark_scores(detailed)
    out.update(detailed)
    return out
