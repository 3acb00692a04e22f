"""Annotated heatmaps of a study report's differences (matplotlib Agg canvas, no global backend).

delta.png: one panel per method, intermediate x task (and the average): each cell's difference to the
baseline; effect.png: the same grid, one panel per adversarial method, for its effect (method minus
plain training); languages_<task>.png: cell x language differences to the baseline. Each square
prints its value, `*` when the interval excludes 0, up to ANNOTATE_LIMIT squares a panel (beyond, the
numbers are in differences.csv); grey squares have no number (incomplete cell, or the baseline).
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..io import atomic_write_bytes

AVG = "avg"
ANNOTATE_LIMIT = 1500  # squares of a panel; beyond it the printed values would not be legible anyway


def _cmap():
    import matplotlib

    return matplotlib.colormaps["RdBu"].with_extremes(bad="#dddddd")


def heatmaps(panels: list[tuple[str, np.ndarray, np.ndarray]], rows: list[str], cols: list[str], path: Path) -> Path:
    """One panel per (title, values, marks); values rows x cols, NaN = no number, printed in each square."""
    width = max(4.0, 0.62 * len(cols) + 2.2)
    height = max(2.0, 0.36 * len(rows) + 1.2)
    fig = Figure(figsize=(width, height * len(panels)), layout="constrained")
    finite = np.concatenate([v[np.isfinite(v)] for _, v, _ in panels])
    limit = max(float(np.abs(finite).max()) if finite.size else 1.0, 1e-9)
    size = 7 if len(cols) <= 12 else 5
    for n, (title, values, marks) in enumerate(panels):
        ax = fig.add_subplot(len(panels), 1, n + 1)
        image = ax.imshow(np.ma.masked_invalid(values), cmap=_cmap(), vmin=-limit, vmax=limit, aspect="auto")
        ax.set_xticks(range(len(cols)), cols, rotation=90 if len(cols) > 12 else 0, fontsize=7)
        ax.set_yticks(range(len(rows)), rows, fontsize=7 if len(rows) <= 40 else 4)
        if values.size <= ANNOTATE_LIMIT:
            for (i, j), v in np.ndenumerate(values):
                if np.isfinite(v):
                    ax.text(j, i, f"{v:+.1f}{'*' if marks[i, j] else ''}", ha="center", va="center", fontsize=size,
                            color="white" if abs(v) > 0.6 * limit else "black")
        else:
            title += " (values in differences.csv)"
        ax.set_title(title, fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.04)
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _grid(comparisons: dict, rows: list, cols: list, pick) -> tuple[np.ndarray, np.ndarray]:
    values = np.full((len(rows), len(cols)), np.nan)
    marks = np.zeros((len(rows), len(cols)), dtype=bool)
    for i, row in enumerate(rows):
        body = comparisons.get(row)
        if body is None:
            continue
        for j, col in enumerate(cols):
            r = pick(body, col)
            if r is not None:
                values[i, j], marks[i, j] = r["diff"], r["excludes_zero"]
    return values, marks


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def write_plots(report: dict, out: Path) -> list[Path]:
    from .report import comparisons_by

    out = Path(out)
    cols = report["tasks"] + [AVG]
    inter = report["intermediate"]

    def task_avg(body, col):
        return body[AVG][AVG] if col == AVG else body[col][AVG]

    vs_base = comparisons_by(report, "baseline")
    effects = comparisons_by(report, "method")
    base = "/".join(report["baseline"])
    panels = [(f"method {m}: difference to the baseline ({base})", *_grid(vs_base, [(i, m) for i in inter], cols,
                                                                          task_avg)) for m in report["methods"]]
    written = [heatmaps(panels, inter, cols, out / "delta.png")]
    adversarial = [m for m in report["methods"] if m != "none"] if "none" in report["methods"] else []
    if adversarial:
        panels = [(f"effect of {m}: {m} minus none", *_grid(effects, [(i, m) for i in inter], cols, task_avg))
                  for m in adversarial]
        written.append(heatmaps(panels, inter, cols, out / "effect.png"))
    cells = [(c["intermediate"], c["method"]) for c in report["cells"]]
    for task in report["tasks"]:
        langs = report["languages"][task] + [AVG]
        values, marks = _grid(vs_base, cells, langs, lambda body, lang, t=task: body[t][lang])
        written.append(heatmaps([(f"{task}: difference to the baseline ({base}) per language", values, marks)],
                                [f"{i}/{m}" for i, m in cells], langs, out / f"languages_{_safe(task)}.png"))
    return written
