"""Markdown XTREME tables, report.md and its heatmap, built from results.json
(xrobust.evaluation.results); chance levels from the gold files of a run.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from pathlib import Path
from typing import Mapping

from xrobust.errors import XRobustError
from xrobust.io import atomic_write_text

from .metrics import TASK2LANGS, mlqa_scores, seqeval_prf, squad_scores
from .results import language_score, languages, mean_chance, task_order, task_score


def _fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}"


def xtreme_status(results: Mapping) -> str:
    """The XTREME score, or why a run has none: it is the mean over all nine XTREME tasks."""
    if results.get("score") is not None:
        return _fmt(results["score"])
    have = [t for t in TASK2LANGS if t in results["tasks"]]
    if not have:
        return "not defined (no XTREME task evaluated)"
    return f"not defined ({len(have)} of {len(TASK2LANGS)} XTREME tasks)"


def _score_note(results: Mapping) -> list[str]:
    if results.get("score") is not None:
        return []
    missing = [t for t in TASK2LANGS if t not in results["tasks"]]
    lacks = ("none of them was evaluated" if len(missing) == len(TASK2LANGS)
             else f"this run lacks {', '.join(missing)}")
    return ["", f"The XTREME score is the mean of the nine XTREME task scores ({', '.join(TASK2LANGS)}); {lacks}."]


def languages_markdown(results: Mapping, chance: Mapping | None = None) -> str:
    """One row per task, one column per language: the per-language task score (see
    `language_score`), with the task's chance level (mean over its languages) when known."""
    tasks = task_order(results["tasks"])
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
    tasks = task_order(results["tasks"])
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
    for task in task_order(results["tasks"]):
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

    from .scorer import OFFICIAL_NAMES

    name = {v: k for k, v in OFFICIAL_NAMES.items()}.get(task, task)
    try:
        return get_task(name)
    except XRobustError:
        return None


def _chance(spec, task: str, path: Path, lang: str) -> float | None:
    from .scorer import read_label_file, read_qa_gold, read_tag_file

    kind = spec.task_format.score_kind
    if not spec.task_format.has_head:  # retrieval
        if spec.metric != "tatoeba_accuracy":
            return 0.0  # BUCC: no pair mined, F1 0
        n = sum(1 for line in read_label_file(path) if line)
        return 100.0 / n if n else None
    if kind == "accuracy":
        labels = [line for line in read_label_file(path) if line]
        return 100.0 * Counter(labels).most_common(1)[0][1] / len(labels) if labels else None
    if kind == "seqeval":
        golds = [s for s in read_tag_file(path)[0] if s]
        if not golds:
            return None
        tag = Counter(t for s in golds for t in s).most_common(1)[0][0]
        return seqeval_prf(golds, [[tag] * len(s) for s in golds])["f1"]
    gold = read_qa_gold(path)
    if not gold:
        return None
    answer = Counter(answers[0] for _, answers in gold if answers).most_common(1)[0][0]
    guess = {qid: answer for qid, _ in gold}
    metrics = mlqa_scores(gold, guess, lang) if spec.metric == "mlqa_em_f1" else squad_scores(gold, guess)
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
    all_tasks = task_order({t for r in runs.values() for t in r["tasks"]})
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
