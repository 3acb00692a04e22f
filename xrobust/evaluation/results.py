"""results.json, the evaluation results file: build, validate, read and write it, and read
per-language and per-task scores from it.

Schema (docs/EVALUATION.md):
    {"tasks": {task: {"languages": {lang: {metric: value}},
                      "avg": {metric: mean over languages, ..., "metric": task score}}},
     "groups": {group: score},          # complete groups only
     "score": XTREME score or null,     # mean of the nine task scores; null unless all nine
     "settings": {...}}                 # every choice that changes numbers (layer, pooling, ...)
Values are percentages. Task names are the official XTREME ones (metrics.TASK2LANGS).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Mapping

from xrobust.errors import DataError
from xrobust.io import atomic_write_json

from .metrics import GROUP2TASK, QA_TASKS, TASK2LANGS, aggregate_task, benchmark_scores

RESULTS_FILE = "results.json"


def results_dir(root: str | os.PathLike, split: str) -> Path:
    """Where a run's results.json for `split` sits: test results (the benchmark) in the run directory,
    other splits in eval-<split>/."""
    return Path(root) if split == "test" else Path(root) / f"eval-{split}"


def task_order(tasks) -> list[str]:
    """The XTREME tasks in their official order, then any other task alphabetically."""
    known = [t for t in TASK2LANGS if t in tasks]
    return known + sorted(t for t in tasks if t not in TASK2LANGS)


def build_results(scores: Mapping[str, Mapping[str, Mapping[str, float]]], settings: Mapping | None = None) -> dict:
    """results.json dict from {task: {lang: {metric: value}}}; averages as the official scorer."""
    tasks, detailed = {}, {}
    for task in task_order(scores):
        per_lang = scores[task]
        agg = aggregate_task(task, per_lang)
        detailed[task] = agg
        avg = {k[len("avg_"):]: v for k, v in agg.items() if k.startswith("avg_")}
        tasks[task] = {"languages": {lang: {m: float(v) for m, v in ms.items()} for lang, ms in per_lang.items()},
                       "avg": avg}
    overall = benchmark_scores({t: d for t, d in detailed.items() if t in TASK2LANGS})
    return {
        "tasks": tasks,
        "groups": {g: overall[g] for g in GROUP2TASK if g in overall},
        "score": overall.get("all_task"),
        "settings": dict(settings or {}),
    }


def results_from_official(official: Mapping) -> dict:
    """Convert `xrobust score` output (official layout) into the results.json layout."""
    scores: dict = {}
    for task in TASK2LANGS:
        if task not in official:
            continue
        per_lang: dict = {}
        for metric, values in official[task].items():
            if metric.startswith("avg_"):
                continue
            for lang, v in values.items():
                per_lang.setdefault(lang, {})[metric] = v
        scores[task] = per_lang
    return build_results(scores, {"source": "official submission layout"})


def write_results(path: str | os.PathLike, results: Mapping) -> None:
    validate_results(results, str(path))
    atomic_write_json(path, results)


def validate_results(results, where: str) -> None:
    if not isinstance(results, Mapping) or not isinstance(results.get("tasks"), Mapping):
        raise DataError(f"{where}: expected an object with \"tasks\": {{task: {{\"languages\": ..., \"avg\": ...}}}}")
    for task, body in results["tasks"].items():
        langs = body.get("languages") if isinstance(body, Mapping) else None
        if not isinstance(langs, Mapping) or not isinstance(body.get("avg"), Mapping):
            raise DataError(f"{where}: tasks.{task} needs \"languages\" and \"avg\" objects")
        for lang, ms in langs.items():
            if not isinstance(ms, Mapping) or not all(isinstance(v, (int, float)) for v in ms.values()):
                raise DataError(f"{where}: tasks.{task}.languages.{lang} must map metric names to numbers")
    score = results.get("score")
    if score is not None and not isinstance(score, (int, float)):
        raise DataError(f"{where}: \"score\" must be a number or null")


def load_results(path: str | os.PathLike) -> dict:
    """Read a results.json, or <dir>/results.json when given a run directory."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        raise DataError(f"{path}: results file not found (expected a run directory holding {RESULTS_FILE})")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    validate_results(results, str(path))
    return results


def metrics_score(metrics: Mapping[str, float], qa: bool) -> float:
    """The one number a task's metrics stand for: (EM + F1) / 2 for QA, else F1, else accuracy.
    Results ask it per language (QA: the official QA tasks), dev selection per dev set (QA: span QA)."""
    if qa and "exact_match" in metrics and "f1" in metrics:
        return (metrics["exact_match"] + metrics["f1"]) / 2
    for key in ("f1", "accuracy"):
        if key in metrics:
            return metrics[key]
    return next(iter(metrics.values()), math.nan)


def language_score(task: str, metrics: Mapping[str, float]) -> float:
    """The per-language number behind the task score of results.json."""
    return metrics_score(metrics, qa=task in QA_TASKS)


def task_score(results: Mapping, task: str) -> float:
    avg = results["tasks"][task]["avg"]
    return avg.get("metric", math.nan)


def languages(results: Mapping) -> list[str]:
    """Every language of the results, English (the training language) first, then as they come."""
    langs = list(dict.fromkeys(l for t in task_order(results["tasks"]) for l in results["tasks"][t]["languages"]))
    return sorted(langs, key=lambda l: l != "en")


def language_deltas(results_a: Mapping, results_b: Mapping) -> dict[str, dict[str, float]]:
    """{task: {lang: score_b - score_a}} over task/language pairs present in both runs."""
    out: dict = {}
    for task in task_order(set(results_a["tasks"]) & set(results_b["tasks"])):
        la, lb = results_a["tasks"][task]["languages"], results_b["tasks"][task]["languages"]
        d = {lang: language_score(task, lb[lang]) - language_score(task, la[lang]) for lang in la if lang in lb}
        if d:
            out[task] = d
    return out


def mean_chance(chance: Mapping | None, task: str) -> float | None:
    values = list((chance or {}).get(task, {}).values())
    return sum(values) / len(values) if values else None
