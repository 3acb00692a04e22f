"""Annotated heatmaps of a study report's differences (matplotlib Agg canvas, no global backend).

delta.png: cell x task (and the average), each cell's difference to the baseline; effect.png: the
same for each adversarial method's effect (method minus plain training, same intermediate task);
languages_<task>.png: cell x language differences to the baseline. Each square
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
ANNOTATE_LIMIT = 600  # squares of a panel; beyond it the printed values would not be legible anyway
MAX_ROW_LABELS = 60


def _cmap():
    import matplotlib

    return matplotlib.colormaps["RdBu"].with_extremes(bad="#dddddd")


def heatmaps(panels: list[tuple[str, np.ndarray, np.ndarray]], rows: list[str], cols: list[str], path: Path) -> Path:
    """One panel per (title, values, marks); values rows x cols, NaN = no number, printed in each square."""
    # inches; large grids get small squares. Margins from the label lengths: a layout engine would
    # measure every text several times, the bulk of the cost of a large figure
    left = 0.3 + 0.065 * max(map(len, rows))
    bottom = 0.3 + (0.06 * max(map(len, cols)) if len(cols) > 12 else 0.15)
    width = min(16.0, max(4.0, 0.45 * len(cols))) + left + 1.2
    height = min(14.0, max(1.2, 0.3 * len(rows))) + bottom + 0.5
    fig = Figure(figsize=(width, height * len(panels)))
    fig.subplots_adjust(left=left / width, right=1 - 1.2 / width, bottom=bottom / (height * len(panels)),
                        top=1 - 0.5 / (height * len(panels)), hspace=(bottom + 0.5) / (height - bottom - 0.5))
    finite = np.concatenate([v[np.isfinite(v)] for _, v, _ in panels])
    limit = max(float(np.abs(finite).max()) if finite.size else 1.0, 1e-9)
    size = 7 if len(cols) <= 12 else 5
    for n, (title, values, marks) in enumerate(panels):
        ax = fig.add_subplot(len(panels), 1, n + 1)
        image = ax.imshow(np.ma.masked_invalid(values), cmap=_cmap(), vmin=-limit, vmax=limit, aspect="auto")
        ax.set_xticks(range(len(cols)), cols, rotation=90 if len(cols) > 12 else 0, fontsize=7)
        every = -(-len(rows) // MAX_ROW_LABELS)  # label every n-th row when there are many
        ax.set_yticks(range(0, len(rows), every), rows[::every], fontsize=7 if every == 1 else 5)
        if values.size <= ANNOTATE_LIMIT:
            for (i, j), v in np.ndenumerate(values):
                if np.isfinite(v):
                    ax.text(j, i, f"{v:+.1f}{'*' if marks[i, j] else ''}", ha="center", va="center", fontsize=size,
                            color="white" if abs(v) > 0.6 * limit else "black")
        else:
            title += " (values in differences.csv)"
        ax.set_title(title, fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
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


def write_plots(report: dict, vs_base: dict, effects: dict, out: Path) -> list[Path]:
    """vs_base, effects: (intermediate, method) -> comparison rows, against the baseline and against plain
    training (report.comparisons_by)."""
    out = Path(out)
    cols = report["tasks"] + [AVG]
    base = "/".join(report["baseline"])
    cells = [(c["intermediate"], c["method"]) for c in report["cells"]]
    names = [f"{i}/{m}" for i, m in cells]

    def task_avg(body, col):
        return body[AVG][AVG] if col == AVG else body[col][AVG]

    written = [heatmaps([(f"difference to the baseline ({base})", *_grid(vs_base, cells, cols, task_avg))],
                        names, cols, out / "delta.png")]
    adversarial = [key for key in cells if key in effects]
    if adversarial:
        written.append(heatmaps([("method effect: method minus none, same intermediate",
                                  *_grid(effects, adversarial, cols, task_avg))],
                                [f"{i}/{m}" for i, m in adversarial], cols, out / "effect.png"))
    for task in report["tasks"]:
        langs = report["languages"][task] + [AVG]
        values, marks = _grid(vs_base, cells, langs, lambda body, lang, t=task: body[t][lang])
        written.append(heatmaps([(f"{task}: difference to the baseline ({base}) per language", values, marks)],
                                names, langs, out / f"languages_{_safe(task)}.png"))
    return written
