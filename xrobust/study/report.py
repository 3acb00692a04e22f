"""The study report: per-cell means and standard deviations over seeds, every cell's difference to the
baseline and every method's effect (adversarial minus plain) with paired-bootstrap intervals, as
markdown, CSV, JSON and annotated heatmaps, optionally logged to a study-level W&B run.

A cell is complete when every seed's runs are done and scored on the same task/language pairs. An
incomplete cell is listed with its missing seeds and gets no number: a mean over fewer seeds than
the others would not be comparable, and the report never takes one silently.
"""

from __future__ import annotations

import csv
import io
import json
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import atomic_write_text
from . import bootstrap as B
from .spec import NONE

AVG = "avg"  # the task average (over languages) and the overall average (over tasks)


@dataclass
class RunScores:
    """One seed of one cell: per (task, language) its score, per-example influences and gold digest."""
    values: dict  # (task, lang) -> float
    psi: dict  # (task, lang) -> np.ndarray (float32)
    labels: dict  # (task, lang) -> gold file digest


@dataclass
class Cell:
    intermediate: str
    method: str
    runs: dict = field(default_factory=dict)  # seed -> RunScores
    missing: list = field(default_factory=list)  # seeds without finished runs
    _stacked: tuple | None = None

    @property
    def name(self) -> str:
        return f"{self.intermediate}/{self.method}"

    def stacked(self, meta: "Meta") -> tuple:
        """(values (S, G), psi (S, N), examples per group (G,), gold digests (S, G)) in meta.groups order,
        seeds sorted; the per-group arrays are released once stacked."""
        if self._stacked is None:
            seeds = sorted(self.runs)
            groups = meta.groups
            lengths = np.array([len(self.runs[seeds[0]].psi[g]) for g in groups], dtype=np.int64)
            for s in seeds:
                for g, n in zip(groups, lengths):
                    if len(self.runs[s].psi[g]) != n:
                        raise DataError(f"{self.name}: seed {s} has {len(self.runs[s].psi[g])} test examples for "
                                        f"{g[0]}/{g[1]}, seed {seeds[0]} {n}")
            values = np.array([[self.runs[s].values[g] for g in groups] for s in seeds])
            psi = np.stack([np.concatenate([self.runs[s].psi[g] for g in groups]) for s in seeds])
            labels = [[self.runs[s].labels[g] for g in groups] for s in seeds]
            for s in seeds:
                self.runs[s].psi = None
            self._stacked = (values, psi, lengths, labels)
        return self._stacked


@dataclass
class Meta:
    """What the analysis needs to know of the study."""
    name: str
    baseline: tuple[str, str]
    seeds: list[int]
    intermediate: list[str]
    methods: list[str]
    languages: dict[str, list[str]]  # task (official name) -> languages scored, in order
    same_runs_as: dict = field(default_factory=dict)  # (intermediate, method) -> "intermediate/method"

    @property
    def tasks(self) -> list[str]:
        return list(self.languages)

    @property
    def groups(self) -> list[tuple[str, str]]:
        return [(t, l) for t, ls in self.languages.items() for l in ls]


# -- gathering ----------------------------------------------------------------------------------------

def _official(task: str) -> str:
    from ..evaluation.scorer import official_name

    return official_name(task)


def _cache_args(plan, unit) -> tuple:
    from .execute import results_file

    return (str(unit.run_dir), str(results_file(unit)), unit.config["evaluation"]["split"],
            [_official(t) for t in unit.evaluates], str(plan.study.root / "cache" / f"{unit.file_name}.npz"))


def run_scores(scores: dict) -> dict:
    """(task, lang) -> (score, per-example influences (float32), gold digest) of one run's scores."""
    keys = list(scores)
    if not keys:
        return {}
    lengths = [len(scores[k].num) for k in keys]
    _, psi = B.influences(np.concatenate([scores[k].num for k in keys]),
                          np.concatenate([scores[k].den for k in keys]), lengths)
    parts = np.split(psi.astype(np.float32), np.cumsum(lengths)[:-1])
    return {k: (scores[k].value, part, scores[k].labels) for k, part in zip(keys, parts)}


def _load_unit(args) -> dict:
    from .examples import cached_run_examples

    run_dir, results, split, tasks, cache = args
    return run_scores(cached_run_examples(Path(run_dir), Path(results), split, tasks, Path(cache)))


def _finished_units(plan) -> list:
    from .execute import unit_done

    keys = dict.fromkeys(k for r in plan.runs.values() for k in (r.cell, r.encoder) if k)
    return [plan.units[k] for k in keys if plan.units[k].evaluates and unit_done(plan.units[k])]


def warm_caches(plan, workers: int) -> None:
    """Read every finished run's prediction files once (in `workers` processes) into the study's cache."""
    todo = [_cache_args(plan, u) for u in _finished_units(plan)]
    if workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(workers) as pool:
            for _ in pool.map(_probe_cache, todo):
                pass
    else:
        for args in todo:
            _probe_cache(args)


def _probe_cache(args) -> None:
    from .examples import cached_run_examples

    run_dir, results, split, tasks, cache = args
    cached_run_examples(Path(run_dir), Path(results), split, tasks, Path(cache))


def cell_loader(plan):
    """A function (intermediate, method) -> Cell reading the cell's finished runs (retrieval tasks from
    the encoder runs), with the gold digests that pairing checks."""
    finished = {u.key for u in _finished_units(plan)}
    retrieval = _has_retrieval(plan)

    def load(intermediate: str, method: str) -> Cell:
        cell = Cell(intermediate, method)
        for seed in plan.study.seeds:
            run = plan.runs[(intermediate, method, seed)]
            keys = [k for k in (run.cell, run.encoder if retrieval else None) if k]
            if not all(k in finished for k in keys):
                cell.missing.append(seed)
                continue
            values, psi, labels = {}, {}, {}
            for key in keys:
                for group, (value, influence, digest) in _load_unit(_cache_args(plan, plan.units[key])).items():
                    values[group], psi[group], labels[group] = value, influence, digest
            cell.runs[seed] = RunScores(values, psi, labels)
        return cell

    return load


def _has_retrieval(plan) -> bool:
    from .plan import is_retrieval

    return any(is_retrieval(t) for t in plan.study.targets)


def study_meta(plan) -> Meta:
    from ..tasks import get_task

    study = plan.study
    wanted = study.base.evaluation.languages
    split = study.base.evaluation.split
    languages = {}
    for task in study.targets:
        available = list(get_task(task).split_languages(split))
        languages[_official(task)] = [l for l in available if not wanted or l in wanted]
    units = {(i, m): tuple(k for s in study.seeds for k in (plan.runs[(i, m, s)].cell, plan.runs[(i, m, s)].encoder))
             for i, m in study.cells}
    same = {}
    for n, key in enumerate(study.cells):
        twin = next((other for other in study.cells[:n] if units[other] == units[key]), None)
        if twin is not None:
            same[key] = "/".join(twin)
    return Meta(study.name, study.baseline, study.seeds, study.intermediate, study.methods, languages, same)


# -- statistics ---------------------------------------------------------------------------------------

def complete(meta: Meta, cell: Cell) -> bool:
    groups = meta.groups
    return not cell.missing and all(all(g in r.values for g in groups) for r in cell.runs.values())


def cell_scores(meta: Meta, cell: Cell) -> dict:
    """{task: {lang | avg: {mean, std, values}}, avg: {...}} over the cell's seeds (complete cells only)."""
    seeds = sorted(cell.runs)

    def summary(values: np.ndarray) -> dict:
        return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                "values": [float(v) for v in values]}

    out: dict = {}
    task_values = []
    for task, langs in meta.languages.items():
        per = {l: np.array([cell.runs[s].values[(task, l)] for s in seeds]) for l in langs}
        avg = np.mean(list(per.values()), axis=0)
        task_values.append(avg)
        out[task] = {**{l: summary(v) for l, v in per.items()}, AVG: summary(avg)}
    out[AVG] = summary(np.mean(task_values, axis=0))
    return out


def aggregate_weights(meta: Meta) -> np.ndarray:
    """(tasks + 1, G): each task's average over its languages, then the average over the tasks."""
    groups = meta.groups
    w = np.zeros((len(meta.tasks) + 1, len(groups)))
    for i, task in enumerate(meta.tasks):
        for j, (t, _) in enumerate(groups):
            if t == task:
                w[i, j] = 1.0 / len(meta.languages[task])
    w[-1] = w[:-1].mean(axis=0)
    return w


def comparison_moments(meta: Meta, a: Cell, b: Cell) -> B.Moments:
    """a minus b, paired by seed and by example, at every group, then every task average and the overall
    average (rows in that order)."""
    va, pa, na, la = a.stacked(meta)
    vb, pb, nb, lb = b.stacked(meta)
    for s, (x, y) in enumerate(zip(la, lb)):
        bad = next((g for g, dx, dy in zip(meta.groups, x, y) if dx != dy), None)
        if bad is not None:
            raise DataError(f"{a.name} and {b.name} (seed {sorted(a.runs)[s]}) were scored on different gold files "
                            f"for {bad[0]}/{bad[1]}: their examples cannot be paired")
    if not np.array_equal(na, nb):
        raise DataError(f"{a.name} and {b.name}: different numbers of test examples; they cannot be paired")
    per_group = B.pair_moments(va, pa, vb, pb, na)
    averages = B.combine(per_group, aggregate_weights(meta))
    return B.Moments(np.concatenate([per_group.mean, averages.mean]), np.concatenate([per_group.cov, averages.cov]))


def analyse(meta: Meta, load_cell, *, samples: int, seed: int, confidence: float, timings: dict | None = None) -> dict:
    """The report's content. Cells are loaded one intermediate task at a time (its plain cell, then
    each method's), so memory holds the baseline, one plain cell and one more, whatever the grid.
    `timings`, when given, receives the seconds spent on cells and moments, and on the intervals."""
    import time

    t0 = time.perf_counter()
    baseline = load_cell(*meta.baseline)
    base_ok = complete(meta, baseline)
    entries, comparisons = {}, []  # comparisons: (kind, a, b, moments)
    for inter in meta.intermediate:
        plain = None
        if NONE in meta.methods:
            plain = baseline if (inter, NONE) == tuple(meta.baseline) else load_cell(inter, NONE)
        for method in meta.methods:
            key = (inter, method)
            cell = baseline if key == tuple(meta.baseline) else plain if method == NONE else load_cell(*key)
            done = complete(meta, cell)
            entries[key] = {"intermediate": inter, "method": method, "seeds": sorted(cell.runs),
                            "missing_seeds": cell.missing,
                            "missing_groups": [] if cell.missing or done else sorted(
                                {f"{t}/{l}" for r in cell.runs.values() for t, l in meta.groups
                                 if (t, l) not in r.values}),
                            "same_runs_as": meta.same_runs_as.get(key),
                            "scores": cell_scores(meta, cell) if done else None}
            if done and base_ok and key != tuple(meta.baseline):
                comparisons.append(("baseline", key, tuple(meta.baseline), comparison_moments(meta, cell, baseline)))
            if done and method != NONE and plain is not None and complete(meta, plain):
                comparisons.append(("method", key, (inter, NONE), comparison_moments(meta, cell, plain)))
    t1 = time.perf_counter()
    results = _intervals(comparisons, meta, samples, seed, confidence)
    if timings is not None:
        timings.update(cells_and_moments_s=t1 - t0, bootstrap_s=time.perf_counter() - t1)
    return {
        "study": meta.name,
        "baseline": list(meta.baseline),
        "seeds": meta.seeds,
        "tasks": meta.tasks,
        "languages": meta.languages,
        "intermediate": meta.intermediate,
        "methods": meta.methods,
        "bootstrap": {"samples": samples, "seed": seed, "confidence": confidence,
                      "resampling": "seeds and test examples, paired (docs/STUDIES.md)"},
        "cells": [entries[(i, m)] for i in meta.intermediate for m in meta.methods],
        "comparisons": [{"kind": kind, "a": list(a), "b": list(b), "rows": rows}
                        for (kind, a, b, _), rows in zip(comparisons, results)],
    }


def build_report(plan, *, samples: int, seed: int, confidence: float, workers: int = 1) -> dict:
    warm_caches(plan, workers)
    return analyse(study_meta(plan), cell_loader(plan), samples=samples, seed=seed, confidence=confidence)


def _intervals(comparisons: list, meta: Meta, samples: int, seed: int, confidence: float) -> list[dict]:
    """Per comparison {task: {lang | avg: {diff, low, high, excludes_zero}}, avg: {avg: ...}}."""
    groups = meta.groups + [(t, AVG) for t in meta.tasks] + [(AVG, AVG)]
    if not comparisons:
        return []
    means = np.concatenate([c[3].mean for c in comparisons])
    covs = np.concatenate([c[3].cov for c in comparisons])
    low, high = B.intervals(means, covs, samples=samples, seed=seed, confidence=confidence)
    diffs = means.mean(axis=1)
    out = []
    for n in range(len(comparisons)):
        rows: dict = {}
        for j, (task, lang) in enumerate(groups):
            k = n * len(groups) + j
            rows.setdefault(task, {})[lang] = {"diff": float(diffs[k]), "low": float(low[k]), "high": float(high[k]),
                                               "excludes_zero": bool(low[k] > 0 or high[k] < 0)}
        out.append(rows)
    return out


# -- writing ------------------------------------------------------------------------------------------

def _fmt(v: float | None, sign: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:+.1f}" if sign else f"{v:.1f}"


def _diff_text(r: dict | None) -> str:
    if r is None:
        return "-"
    return f"{r['diff']:+.1f} [{r['low']:+.1f}, {r['high']:+.1f}]{'*' if r['excludes_zero'] else ''}"


def comparisons_by(report: dict, kind: str) -> dict[tuple[str, str], dict]:
    return {tuple(c["a"]): c["rows"] for c in report["comparisons"] if c["kind"] == kind}


def _columns(report: dict) -> tuple[list[str], str]:
    from ..evaluation.metrics import TASK2LANGS

    return report["tasks"] + [AVG], ("XTREME" if set(report["tasks"]) == set(TASK2LANGS) else "avg")


def markdown(report: dict) -> str:
    cells = {(c["intermediate"], c["method"]): c for c in report["cells"]}
    vs_base = comparisons_by(report, "baseline")
    effects = comparisons_by(report, "method")
    columns, avg_name = _columns(report)
    head = [("avg" if c == AVG else c) for c in columns[:-1]] + [avg_name]
    bs = report["bootstrap"]
    level = f"{100 * bs['confidence']:g}%"
    lines = [f"# Study {report['study']}", "",
             f"Baseline: intermediate `{report['baseline'][0]}`, method `{report['baseline'][1]}`. "
             f"Seeds: {', '.join(map(str, report['seeds']))}. Scores are means over seeds (percent); "
             f"Δ is the difference to the reference with its {level} paired-bootstrap interval "
             f"({bs['samples']} replicates resampling seeds and test examples, seed {bs['seed']}); "
             f"`*`: the interval excludes 0.", ""]
    incomplete = [c for c in report["cells"] if c["scores"] is None]
    if incomplete:
        lines += ["## Incomplete cells (no numbers: never averaged over fewer runs)", "",
                  "| cell | seeds done | missing |", "|---|---|---|"]
        for c in incomplete:
            missing = ("seeds " + ", ".join(map(str, c["missing_seeds"]))) if c["missing_seeds"] else \
                "scores for " + ", ".join(c["missing_groups"][:8]) + (" ..." if len(c["missing_groups"]) > 8 else "")
            lines.append(f"| {c['intermediate']}/{c['method']} | {', '.join(map(str, c['seeds'])) or '-'} | {missing} |")
        lines.append("")
    twins = [c for c in report["cells"] if c["same_runs_as"]]
    if twins:
        lines += ["Same runs as another cell (the method does not change any phase they train): "
                  + ", ".join(f"{c['intermediate']}/{c['method']} = {c['same_runs_as']}" for c in twins), ""]
    for method in report["methods"]:
        lines += [f"## Method `{method}`: score, Δ to the baseline", "",
                  "| intermediate | " + " | ".join(head) + " |", "|---|" + "---:|" * len(columns)]
        for inter in report["intermediate"]:
            c = cells[(inter, method)]
            row = [inter]
            for col in columns:
                if c["scores"] is None:
                    row.append("incomplete")
                    continue
                s = c["scores"][AVG] if col == AVG else c["scores"][col][AVG]
                if [inter, method] == report["baseline"]:
                    row.append(f"{_fmt(s['mean'])} ± {_fmt(s['std'])} (baseline)")
                else:
                    rows = vs_base.get((inter, method))
                    d = rows[col][AVG] if rows and col != AVG else rows[AVG][AVG] if rows else None
                    row.append(f"{_fmt(s['mean'])} ± {_fmt(s['std'])}, Δ {_diff_text(d)}")
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    for method in [m for m in report["methods"] if m != NONE and NONE in report["methods"]]:
        lines += [f"## Method effect: `{method}` minus `{NONE}`", "",
                  "| intermediate | " + " | ".join(head) + " |", "|---|" + "---:|" * len(columns)]
        for inter in report["intermediate"]:
            rows = effects.get((inter, method))
            cells_text = [_diff_text((rows[AVG] if col == AVG else rows[col])[AVG]) if rows else "-"
                          for col in columns]
            lines.append(f"| {inter} | " + " | ".join(cells_text) + " |")
        lines.append("")
    for task in report["tasks"]:
        langs = report["languages"][task] + [AVG]
        lines += [f"## {task} per language: mean ± std over seeds; Δ to the baseline", "",
                  "| cell | " + " | ".join(langs) + " |", "|---|" + "---:|" * len(langs)]
        for (inter, method), c in cells.items():
            if c["scores"] is None:
                continue
            rows = vs_base.get((inter, method))
            texts = []
            for lang in langs:
                s = c["scores"][task][lang]
                d = f"<br>Δ {_diff_text(rows[task][lang])}" if rows else ""
                texts.append(f"{_fmt(s['mean'])} ± {_fmt(s['std'])}{d}")
            lines.append(f"| {inter}/{method} | " + " | ".join(texts) + " |")
        lines.append("")
    return "\n".join(lines)


def csv_tables(report: dict) -> dict[str, str]:
    scores = io.StringIO()
    w = csv.writer(scores, lineterminator="\n")
    w.writerow(["intermediate", "method", "task", "language", "n_seeds", "missing_seeds", "mean", "std", "values"])
    for c in report["cells"]:
        if c["scores"] is None:
            w.writerow([c["intermediate"], c["method"], "", "", len(c["seeds"]),
                        " ".join(map(str, c["missing_seeds"])), "", "", ""])
            continue
        for task in report["tasks"] + [AVG]:
            body = {AVG: c["scores"][AVG]} if task == AVG else c["scores"][task]
            for lang, s in body.items():
                w.writerow([c["intermediate"], c["method"], task, lang, len(c["seeds"]), "", f"{s['mean']:.6f}",
                            f"{s['std']:.6f}", " ".join(f"{v:.6f}" for v in s["values"])])
    diffs = io.StringIO()
    w = csv.writer(diffs, lineterminator="\n")
    w.writerow(["comparison", "intermediate", "method", "ref_intermediate", "ref_method", "task", "language", "diff",
                "low", "high", "excludes_zero"])
    for comp in report["comparisons"]:
        for task, body in comp["rows"].items():
            for lang, r in body.items():
                w.writerow([comp["kind"], *comp["a"], *comp["b"], task, lang, f"{r['diff']:.6f}", f"{r['low']:.6f}",
                            f"{r['high']:.6f}", int(r["excludes_zero"])])
    return {"cells.csv": scores.getvalue(), "differences.csv": diffs.getvalue()}


def write_report(report: dict, out: Path) -> list[Path]:
    from .plots import write_plots

    out = Path(out)
    written = []
    atomic_write_text(out / "report.json", json.dumps(report) + "\n")  # compact: large grids, fast encoder
    written.append(out / "report.json")
    for name, text in csv_tables(report).items():
        atomic_write_text(out / name, text)
        written.append(out / name)
    pngs = write_plots(report, comparisons_by(report, "baseline"), comparisons_by(report, "method"), out)
    md = markdown(report) + "\n" + "".join(f"![{p.stem}]({p.name})\n" for p in pngs)
    atomic_write_text(out / "report.md", md)
    return [out / "report.md", *written, *pngs]


def log_to_wandb(report: dict, plan, out: Path) -> str | None:
    """A study-level W&B run (the study name as its group) holding the report's tables."""
    from ..config import to_dict
    from ..tracking.wandb_run import Tracker
    from .execute import study_id

    tracking = dict(to_dict(plan.study.base)["tracking"])
    if tracking["mode"] == "disabled":
        return None
    tracking.update(group=plan.study.name, run_id=f"{plan.study.name}-{study_id(plan)}-report")
    cfg = {"name": f"{plan.study.name}-report", "tracking": tracking,
           "study": {"name": plan.study.name, "intermediate": plan.study.intermediate,
                     "method": plan.study.methods, "seeds": plan.study.seeds, "targets": plan.study.targets}}
    tracker = Tracker(cfg, out, 0)
    try:
        rows = [[c["kind"], *c["a"], task, lang, r["diff"], r["low"], r["high"], r["excludes_zero"]]
                for c in report["comparisons"] for task, body in c["rows"].items() for lang, r in body.items()]
        tracker.table("study/differences", ["comparison", "intermediate", "method", "task", "language", "diff",
                                            "low", "high", "excludes_zero"], rows)
        rows = [[c["intermediate"], c["method"], task, lang, s["mean"], s["std"], len(c["seeds"])]
                for c in report["cells"] if c["scores"] for task, body in c["scores"].items()
                for lang, s in (body.items() if task != AVG else [(AVG, body)])]
        tracker.table("study/scores", ["intermediate", "method", "task", "language", "mean", "std", "seeds"], rows)
        return tracker.run_id if tracker.active else None
    finally:
        tracker.finish()

