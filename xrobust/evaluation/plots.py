"""PNG plots of evaluation results (matplotlib, Agg canvas: no display, no global backend switch)."""

from __future__ import annotations

import io
import math
import os
from typing import Mapping

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from xrobust.io import atomic_write_bytes

from . import metrics as M
from .results import language_deltas, language_score, languages, mean_chance, task_order


def save_png(fig: Figure, path: str | os.PathLike) -> None:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def heatmap_title(results: Mapping) -> str:
    """What was evaluated: XTREME (with its score when defined) or other zero-shot tasks."""
    tasks = results["tasks"]
    if tasks and all(t in M.TASK2LANGS for t in tasks):
        score = results.get("score")
        return "XTREME zero-shot scores per language" + ("" if score is None else f" (XTREME score {score:.1f})")
    return "Zero-shot scores per language"


def _relative(value: float, chance: float) -> float:
    """-1 at 0, 0 at chance, 1 at 100: one colour scale for tasks with different chance levels."""
    if value >= chance:
        return (value - chance) / (100.0 - chance) if chance < 100 else 0.0
    return (value - chance) / chance


def heatmap_png(results: Mapping, path: str | os.PathLike, chance: Mapping | None = None) -> None:
    """`heatmap_figure` as a PNG file."""
    save_png(heatmap_figure(results, chance), path)


def heatmap_figure(results: Mapping, chance: Mapping | None = None) -> Figure:
    """Task x language heatmap of per-language task scores, each cell printed; blank where a task
    lacks a language. The colour is the score relative to the task's chance level for that
    language (white at chance, blue above, red below), so tasks with different chance levels
    share one scale; each row's label states its chance level."""
    tasks = task_order(results["tasks"])
    langs = languages(results)
    grid = np.full((len(tasks), len(langs)), np.nan)
    colour = np.full_like(grid, np.nan)
    for i, t in enumerate(tasks):
        for j, l in enumerate(langs):
            ms = results["tasks"][t]["languages"].get(l)
            if ms:
                grid[i, j] = language_score(t, ms)
                colour[i, j] = _relative(grid[i, j], (chance or {}).get(t, {}).get(l, 0.0))
    fig = Figure(figsize=(max(6.0, 0.45 * len(langs) + 3), 0.5 * len(tasks) + 1.6))
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["RdBu"].with_extremes(bad="#d9d9d9")  # grey: no such language
    im = ax.imshow(np.ma.masked_invalid(colour), aspect="auto", cmap=cmap, vmin=-1, vmax=1)
    fontsize = 8 if len(langs) <= 12 else 6
    for (i, j), v in np.ndenumerate(grid):
        if math.isnan(v):
            ax.text(j, i, "-", ha="center", va="center", fontsize=fontsize, color="#606060")
        else:
            ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=fontsize,
                    color="white" if abs(colour[i, j]) > 0.6 else "black")
    ax.set_xticks(range(len(langs)), langs, rotation=90 if len(langs) > 12 else 0, fontsize=8)
    rows = []
    for t in tasks:
        c = mean_chance(chance, t)
        rows.append(f"{t}\n(chance {c:.1f})" if c is not None else f"{t}\n(chance unknown)")
    ax.set_yticks(range(len(tasks)), rows, fontsize=8)
    ax.set_title(heatmap_title(results))
    bar = fig.colorbar(im, ax=ax, fraction=0.04, ticks=[-1, 0, 1])
    bar.ax.set_yticklabels(["0", "chance", "100"], fontsize=8)
    bar.set_label("score relative to the task's chance level", fontsize=8)
    return fig


def delta_png(results_a: Mapping, results_b: Mapping, path: str | os.PathLike,
              label_a: str = "A", label_b: str = "B") -> None:
    """Bars of per-language score deltas (B - A), one panel per task present in both runs."""
    deltas = language_deltas(results_a, results_b)
    n = max(1, len(deltas))
    fig = Figure(figsize=(10, 1.9 * n + 0.6))
    if not deltas:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no task/language in common", ha="center", va="center")
        ax.set_axis_off()
    for i, (task, d) in enumerate(deltas.items()):
        ax = fig.add_subplot(n, 1, i + 1)
        langs, vals = list(d), [d[l] for l in d]
        colors = ["tab:green" if v >= 0 else "tab:red" for v in vals]
        ax.bar(range(len(langs)), vals, color=colors)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_xticks(range(len(langs)), langs, rotation=90, fontsize=7)
        mean = sum(vals) / len(vals)
        ax.set_ylabel(task, fontsize=8)
        ax.set_title(f"{task}: mean Δ {mean:+.2f}" if not math.isnan(mean) else task, fontsize=8, loc="left")
    fig.suptitle(f"per-language delta: {label_b} - {label_a}")
    fig.tight_layout()
    save_png(fig, path)
