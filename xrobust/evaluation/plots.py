"""PNG plots of evaluation results (matplotlib, Agg canvas: no display, no global backend switch)."""

from __future__ import annotations

import io
import math
import os
from typing import Mapping

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from xrobust.io import atomic_write_bytes

from .report import _task_order, language_deltas, language_score


def _save(fig: Figure, path: str | os.PathLike) -> None:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def heatmap_png(results: Mapping, path: str | os.PathLike) -> None:
    """Task x language heatmap of per-language task scores (blank where a task lacks a language)."""
    tasks = _task_order(results["tasks"])
    langs = sorted({l for t in tasks for l in results["tasks"][t]["languages"]})
    grid = np.full((len(tasks), len(langs)), np.nan)
    for i, t in enumerate(tasks):
        for j, l in enumerate(langs):
            ms = results["tasks"][t]["languages"].get(l)
            if ms:
                grid[i, j] = language_score(t, ms)
    fig = Figure(figsize=(max(6.0, 0.32 * len(langs) + 2), 0.45 * len(tasks) + 1.5))
    ax = fig.add_subplot()
    im = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap="viridis", vmin=0, vmax=100)
    ax.set_xticks(range(len(langs)), langs, rotation=90, fontsize=7)
    ax.set_yticks(range(len(tasks)), tasks, fontsize=8)
    score = results.get("score")
    ax.set_title("XTREME per-language scores" + ("" if score is None else f" (score {score:.1f})"))
    fig.colorbar(im, ax=ax, fraction=0.03)
    _save(fig, path)


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
    _save(fig, path)
