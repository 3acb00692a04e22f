"""What a split turns into: examples, features (windows), truncated and skipped examples, lengths.

Loading records what it changed in a split (answers moved back onto their text, answers not found
in their context); the featurizers leave per-feature columns (`truncated`, `unk_words`) and produce
no feature for a training example they skip. `data_report` puts both together per task, split and
language, so a run logs it, writes it next to its metrics and into its results settings, and
`xrobust data stats` prints the same numbers before a run. Nothing is skipped silently.
"""

from __future__ import annotations

import os
import sys

# (task, split, lang) -> counts recorded while loading (replaced when a split is loaded again)
_LOADS: dict[tuple[str, str, str], dict[str, int]] = {}

# counts that mean "this data is not exactly what the source says": always logged when non-zero
NOTEWORTHY = ("skipped", "realigned", "unaligned", "unk_words")


def record_load(task: str, split: str, lang: str, **counts: int) -> None:
    _LOADS[(task, split, lang)] = dict(counts)


def is_main() -> bool:
    """Rank 0 (or no launcher): the process that prints."""
    return os.environ.get("RANK", "0") == "0"


def log(message: str) -> None:
    if is_main():
        print(message, file=sys.stderr, flush=True)


def percentiles(values: list[int], points=(50, 90, 99)) -> dict[str, int]:
    """Nearest-rank percentiles and the maximum (0 for no values)."""
    ordered = sorted(values)
    if not ordered:
        return {**{f"p{p}": 0 for p in points}, "max": 0}
    pick = {f"p{p}": ordered[max(0, -(-p * len(ordered) // 100) - 1)] for p in points}
    return {**pick, "max": ordered[-1]}


def data_report(spec, split: str, lang: str, examples, features, *, train: bool) -> dict:
    """Counts for one task, split and language: examples, features, skipped (training examples
    without any feature: span-QA answers not found in their context), truncated features,
    unk_words (words longer than a window, or erased by the tokenizer, fed as <unk>), realigned /
    unaligned answers (from loading) and feature length percentiles."""
    from xrobust.data.featurize import feature_lengths
    from xrobust.tasks.formats import get_format

    report = {"examples": len(examples), "features": len(features)}
    if get_format(spec.format).windowed and train:  # examples whose answer is misaligned make no feature
        report["skipped"] = len(examples) - len(set(features["example_id"]))
    for column in ("truncated", "unk_words"):
        if column in features.column_names:
            report[column] = int(sum(features[column]))
    report.update(_LOADS.get((spec.name, split, lang), {}))
    report["length"] = percentiles(feature_lengths(features))
    return report


def report_line(task: str, split: str, lang: str, report: dict) -> str:
    counts = ", ".join(f"{k} {v}" for k, v in report.items() if k not in ("examples", "features", "length"))
    return (f"data {task} {split} {lang}: {report['examples']} examples -> {report['features']} "
            f"features" + (f"; {counts}" if counts else ""))


def log_report(task: str, split: str, lang: str, report: dict) -> dict:
    """Log the report's line when something was skipped or changed; return the report."""
    if any(report.get(k) for k in NOTEWORTHY):
        log(report_line(task, split, lang, report))
    return report


def write_phase_report(run_dir, reports: dict, tracker=None, prefix: str = "") -> None:
    """A training phase's data report: run_dir/data_report.json (rank 0), W&B summary keys."""
    if not is_main():
        return
    from pathlib import Path

    from xrobust.io import atomic_write_json

    atomic_write_json(Path(run_dir) / "data_report.json", reports)
    if tracker:
        tracker.summary({f"{prefix}data/{task}/{key}": value for task, report in reports.items()
                         for key, value in report.items() if key != "length"})
