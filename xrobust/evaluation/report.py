"""results.json (the evaluation results file) and the markdown XTREME tables built from it.

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
from collections import Counter
from pathlib import Path
from typing import Mapping

from xrobust.errors import DataError, XRobustError
from xrobust.io import atomic_write_json, atomic_write_text

from . import metrics as M

RESULTS_FILE = "results.json"


def _task_order(tasks) -> list[str]:
    known = [t for t in M.TASK2LANGS if t in tasks]
    return known + sorted(t for t in tasks if t not in M.TASK2LANGS)


def build_results(scores: Mapping[str, Mapping[str, Mapping[str, float]]], settings: Mapping | None = None) -> dict:
    """results.json dict from {task: {lang: {metric: value}}}; averages as the official scorer."""
    tasks, detailed = {}, {}
    for task in _task_order(scores):
        per_lang = scores[task]
        agg = M.aggregate_task(task, per_lang)
        detailed[task] = agg
        avg = {k[len("avg_"):]: v for k, v in agg.items() if k.startswith("avg_")}
        tasks[task] = {"languages": {lang: {m: float(v) for m, v in ms.items()} for lang, ms in per_lang.items()},
                       "avg": avg}
    overall = M.benchmark_scores({t: d for t, d in detailed.items() if t in M.TASK2LANGS})
    return {
        "tasks": tasks,
        "groups": {g: overall[g] for g in M.GROUP2TASK if g in overall},
        "score": overall.get("all_task"),
        "settings": dict(settings or {}),
    }


def results_from_official(official: Mapping) -> dict:
    """Convert `xrobust score` output (official layout) into the results.json layout."""
    scores: dict = {}
    for task in M.TASK2LANGS:
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


def language_score(task: str, metrics: Mapping[str, float]) -> float:
    """The per-language number behind the task score: (EM + F1) / 2 for QA, else F1, else accuracy."""
    if task in M.QA_TASKS and "exact_match" in metrics and "f1" in metrics:
        return (metrics["exact_match"] + metrics["f1"]) / 2
    for key in ("f1", "accuracy"):
        if key in metrics:
            return metrics[key]
    return next(iter(metrics.values()), math.nan)


def task_score(results: Mapping, task: str) -> float:
    avg = results["tasks"][task]["avg"]
    return avg.get("metric", math.nan)


def _fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}"


def languages(results: Mapping) -> list[str]:
    """Every language of the results, English (the training language) first, then as they come."""
    langs = list(dict.fromkeys(l for t in _task_order(results["tasks"]) for l in results["tasks"][t]["languages"]))
    return sorted(langs, key=lambda l: l != "en")


def xtreme_status(results: Mapping) -> str:
    """The XTREME score, or why a run has none: it is the mean over all nine XTREME tasks."""
    if results.get("score") is not None:
        return _fmt(results["score"])
    have = [t for t in M.TASK2LANGS if t in results["tasks"]]
    if not have:
        return "not defined (no XTREME task evaluated)"
    return f"not defined ({len(have)} of {len(M.TASK2LANGS)} XTREME tasks)"


def _score_note(results: Mapping) -> list[str]:
    if results.get("score") is not None:
        return []
    missing = [t for t in M.TASK2LANGS if t not in results["tasks"]]
    lacks = ("none of them was evaluated" if len(missing) == len(M.TASK2LANGS)
             else f"this run lacks {', '.join(missing)}")
    return ["", f"The XTREME score is the mean of the nine XTREME task scores ({', '.join(M.TASK2LANGS)}); {lacks}."]


def mean_chance(chance: Mapping | None, task: str) -> float | None:
    values = list((chance or {}).get(task, {}).values())
    return sum(values) / len(values) if values else None


def languages_markdown(results: Mapping, chance: Mapping | None = None) -> str:
    """One row per task, one column per language: the per-language task score (see
    `language_score`), with the task's chance level (mean over its languages) when known."""
    tasks = _task_order(results["tasks"])
    langs = languages(results)
    lines = ["| task | chance | " + " | ".join(langs) + " | avg |", "|---|" + "---:|" * (len(langs) + 2)]
    for task in tasks:
        ms = results["tasks"][task]["languages"]
        cells = [_fmt(language_score(task, ms[l])) if l in ms else "" for l in langs]
        lines.append(f"| {task} | {_fmt(mean_chance(chance, task))} | " + " | ".join(cells)
                     + f" | {_fmt(task_score(results, task))} |")
    return "\n".join(lines) + "\n"


def summary_markdown(results: Mapping, title: str = "XTREME results", chance: Mapping | None = None) -> str:
    """The task scores with the XTREME score (or why there is none), then scores per language."""
    tasks = _task_order(results["tasks"])
    lines = [f"# {title}", "", "| task | " + " | ".join(tasks) + " | XTREME score |",
             "|---|" + "---:|" * (len(tasks) + 1),
             "| score | " + " | ".join(_fmt(task_score(results, t)) for t in tasks) + f" | {xtreme_status(results)} |"]
    lines += _score_note(results)
    groups = results.get("groups") or {}
    if groups:
        lines += ["", "| group | score |", "|---|---:|"] + [f"| {g} | {_fmt(v)} |" for g, v in groups.items()]
    lines += ["", "## Scores per language", "",
              "Accuracy, F1 or (EM + F1) / 2 for XTREME QA; chance: the best score of a prediction that "
              "ignores the input (majority label or tag, most frequent answer, 1 / candidates).", "",
              languages_markdown(results, chance).rstrip("\n")]
    return "\n".join(lines) + "\n"


def xtreme_markdown(results: Mapping, title: str = "XTREME results", chance: Mapping | None = None) -> str:
    """Markdown for report.md: `summary_markdown`, then one table per task with a row per
    language and an average row, then the settings."""
    lines = [summary_markdown(results, title, chance).rstrip("\n")]
    for task in _task_order(results["tasks"]):
        body = results["tasks"][task]
        langs = body["languages"]
        metrics = list(dict.fromkeys(m for ms in langs.values() for m in ms))
        lines += ["", f"## {task}", "", "| lang | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
        for lang, ms in langs.items():
            lines.append(f"| {lang} | " + " | ".join(_fmt(ms.get(m)) for m in metrics) + " |")
        lines.append("| **avg** | " + " | ".join(_fmt(body["avg"].get(m)) for m in metrics) + " |")
        lines.append(f"\nTask score: {_fmt(body['avg'].get('metric'))}")
    settings = results.get("settings") or {}
    if settings:
        lines += ["", "## Settings", ""] + [f"- {k}: `{json.dumps(v, ensure_ascii=False)}`" for k, v in settings.items()]
    return "\n".join(lines) + "\n"


# ---- chance levels --------------------------------------------------------------------------------

def _spec(task: str):
    from xrobust.tasks import get_task

    from .run import OFFICIAL_NAMES

    name = {v: k for k, v in OFFICIAL_NAMES.items()}.get(task, task)
    try:
        return get_task(name)
    except XRobustError:
        return None


def _chance(spec, task: str, path: Path, lang: str) -> float | None:
    from .scorer import read_label_file, read_qa_gold, read_tag_file

    if spec.format == "retrieval":
        if spec.metric != "tatoeba_accuracy":
            return 0.0  # BUCC: no pair mined, F1 0
        n = sum(1 for line in read_label_file(path) if line)
        return 100.0 / n if n else None
    if spec.format in ("classification", "multiple_choice"):
        labels = [line for line in read_label_file(path) if line]
        return 100.0 * Counter(labels).most_common(1)[0][1] / len(labels) if labels else None
    if spec.format == "tagging":
        golds = [s for s in read_tag_file(path)[0] if s]
        if not golds:
            return None
        tag = Counter(t for s in golds for t in s).most_common(1)[0][0]
        return M.seqeval_prf(golds, [[tag] * len(s) for s in golds])["f1"]
    gold = read_qa_gold(path)
    if not gold:
        return None
    answer = Counter(answers[0] for _, answers in gold if answers).most_common(1)[0][0]
    guess = {qid: answer for qid, _ in gold}
    metrics = M.mlqa_scores(gold, guess, lang) if spec.metric == "mlqa_em_f1" else M.squad_scores(gold, guess)
    return language_score(task, metrics)


def chance_levels(labels_dir: str | os.PathLike, split: str = "test") -> dict[str, dict[str, float]]:
    """{task: {lang: chance}} from the gold files of `split` in the official layout (labels/ of
    a run): the score, in the task's per-language metric, of the best prediction that ignores
    its input. Classification: the majority label's share; tagging: every word gets the most
    frequent tag; QA: every question gets the most frequent answer; Tatoeba: 100 / candidates;
    BUCC: 0. Tasks unknown to the registry are left out."""
    out: dict[str, dict[str, float]] = {}
    folder = Path(labels_dir)
    if not folder.is_dir():
        return out
    for task_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        spec = _spec(task_dir.name)
        if spec is None:
            continue
        for path in sorted(task_dir.glob(f"{split}-*.*")):
            value = _chance(spec, task_dir.name, path, path.stem[len(split) + 1:])
            if value is not None:
                out.setdefault(task_dir.name, {})[path.stem[len(split) + 1:]] = value
    return out


def gold_folder(results_dir: str | os.PathLike, split: str) -> Path:
    """Where the gold files behind a results folder are: <run>/labels, for the run's own
    results.json (test) and for eval-<split>/ alike."""
    out = Path(results_dir)
    return out.parent / "labels" if out.name == f"eval-{split}" else out / "labels"


def compare_markdown(runs: Mapping[str, Mapping]) -> str:
    """Side-by-side per-language task scores of several runs, with delta = each run - first."""
    names = list(runs)
    all_tasks = _task_order({t for r in runs.values() for t in r["tasks"]})
    head = ["task", "lang"] + names + [f"Δ {n}" for n in names[1:]]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]

    def cell(run, task, lang):
        body = runs[run]["tasks"].get(task)
        if body is None:
            return None
        if lang == "avg":
            return body["avg"].get("metric")
        ms = body["languages"].get(lang)
        return None if ms is None else language_score(task, ms)

    def delta(a, b):
        return None if a is None or b is None else b - a

    for task in all_tasks:
        langs = list(dict.fromkeys(l for r in runs.values() if task in r["tasks"] for l in r["tasks"][task]["languages"]))
        for lang in langs + ["avg"]:
            vals = [cell(n, task, lang) for n in names]
            deltas = [delta(vals[0], v) for v in vals[1:]]
            row = [task, f"**{lang}**" if lang == "avg" else lang] + [_fmt(v) for v in vals]
            row += ["-" if d is None else f"{d:+.1f}" for d in deltas]
            lines.append("| " + " | ".join(row) + " |")
    scores = [runs[n].get("score") for n in names]
    row = ["XTREME", ""] + [_fmt(s) for s in scores] + [
        "-" if delta(scores[0], s) is None else f"{delta(scores[0], s):+.1f}" for s in scores[1:]]
    lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def language_deltas(results_a: Mapping, results_b: Mapping) -> dict[str, dict[str, float]]:
    """{task: {lang: score_b - score_a}} over task/language pairs present in both runs."""
    out: dict = {}
    for task in _task_order(set(results_a["tasks"]) & set(results_b["tasks"])):
        la, lb = results_a["tasks"][task]["languages"], results_b["tasks"][task]["languages"]
        d = {lang: language_score(task, lb[lang]) - language_score(task, la[lang]) for lang in la if lang in lb}
        if d:
            out[task] = d
    return out


def write_report(results: Mapping, out_dir: str | os.PathLike, title: str = "XTREME results",
                 chance: Mapping | None = None) -> list[Path]:
    """report.md plus heatmap.png in out_dir; returns the written paths. Chance levels default to
    those of the gold files next to the results (`gold_folder`)."""
    from .plots import heatmap_png

    out = Path(out_dir)
    if chance is None:
        split = (results.get("settings") or {}).get("split", "test")
        chance = chance_levels(gold_folder(out, split), split)
    md, png = out / "report.md", out / "heatmap.png"
    atomic_write_text(md, xtreme_markdown(results, title, chance) + "\n![task x language](heatmap.png)\n")
    heatmap_png(results, png, chance)
    return [md, png]
