"""`data.xtreme_dir`: the folder XTREME's scripts/download_data.sh writes, read as XTREME reads it.

Layout (github.com/google-research/xtreme, scripts/download_data.sh + utils_preprocess.py):

  xnli/{train,dev,test}-<lang>.tsv       sentence1 TAB sentence2 TAB label (train: en = MNLI)
  pawsx/{train,dev,test}-<lang>.tsv      sentence1 TAB sentence2 TAB 0/1 (train: en)
  udpos/{train,dev,test}-<lang>.tsv      word TAB UPOS per line, blank line between sentences
  panx/{train,dev,test}-<lang>.tsv       token TAB BIO tag per line, blank line between sentences
  squad/{train,dev}-v1.1.json            SQuAD v1.1 (English training data of XQuAD and MLQA)
  xquad/xquad.<lang>.json                SQuAD layout
  mlqa/MLQA_V1/{dev,test}/{dev,test}-context-<lang>-question-<lang>.json
  tydiqa/tydiqa-goldp-v1.1-train/tydiqa.goldp.en.train.json   (XTREME trains on English only)
  tydiqa/tydiqa-goldp-v1.1-dev/tydiqa.goldp.<lang>.dev.json   (the test set)
  bucc2018/<lang>-en.{dev,test}.{<lang>,en,gold}              "id TAB sentence"; gold "id TAB id"
  tatoeba/<lang>-en.{<lang>,en}                               one sentence per line

The TSV files were written with Python's csv writer and XTREME reads them with quoting off, so
quotes are text here too (the `tsv` format). Every split the folder holds is read from it: the nine
tasks' splits, plus MNLI's and SQuAD's training (and SQuAD's dev) data, which XTREME ships for
XNLI, XQuAD and MLQA. The script removes test labels and answers (the XTREME leaderboard scores
test predictions), the BUCC test gold, and sorts Tatoeba's English side: such a split is a
DataError saying so, never an unlabeled or misaligned set scored as if it were gold.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from xrobust.data.local_source import LocalSource
from xrobust.data.textfile import text_lines
from xrobust.errors import DataError

_TSV_PAIR = dict(format="tsv", header=False, columns={"text_a": "0", "text_b": "1", "label": "2"})
_TAGS = dict(format="conll", strip_lang_prefix=False)
_SQUAD = dict(format="squad")

# (task, split) -> relative path template and LocalSource settings
LAYOUT: dict[tuple[str, str], tuple[str, dict]] = {
    ("mnli", "train"): ("xnli/train-en.tsv", _TSV_PAIR),
    **{("xnli", s): (f"xnli/{s}-{{lang}}.tsv", _TSV_PAIR) for s in ("train", "dev", "test")},
    **{("pawsx", s): (f"pawsx/{s}-{{lang}}.tsv", _TSV_PAIR) for s in ("train", "dev", "test")},
    **{("udpos", s): (f"udpos/{s}-{{lang}}.tsv", _TAGS) for s in ("train", "dev", "test")},
    **{("panx", s): (f"panx/{s}-{{lang}}.tsv", _TAGS) for s in ("train", "dev", "test")},
    **{(t, s): (f"squad/{s}-v1.1.json", _SQUAD) for t in ("squad", "xquad", "mlqa") for s in ("train", "dev")},
    ("xquad", "test"): ("xquad/xquad.{lang}.json", _SQUAD),
    ("mlqa", "dev"): ("mlqa/MLQA_V1/dev/dev-context-{lang}-question-{lang}.json", _SQUAD),
    ("mlqa", "test"): ("mlqa/MLQA_V1/test/test-context-{lang}-question-{lang}.json", _SQUAD),
    ("tydiqa", "train"): ("tydiqa/tydiqa-goldp-v1.1-train/tydiqa.goldp.en.train.json", _SQUAD),
    ("tydiqa", "test"): ("tydiqa/tydiqa-goldp-v1.1-dev/tydiqa.goldp.{lang}.dev.json", _SQUAD),
    **{("bucc", s): (f"bucc2018/{{lang}}-en.{s}.{{lang}}",
                     dict(format="tsv", header=False, columns={"id": "0", "text": "1"},
                          target_path=f"bucc2018/{{lang}}-en.{s}.en", gold_path=f"bucc2018/{{lang}}-en.{s}.gold"))
       for s in ("dev", "test")},
    ("tatoeba", "test"): ("tatoeba/{lang}-en.{lang}", dict(format="text", target_path="tatoeba/{lang}-en.en")),
}

_NO_TEST_LABELS = ("XTREME's scripts/download_data.sh removes test labels (the XTREME leaderboard scores "
                   "test predictions); evaluate on dev (evaluation.split: dev), or give labeled test files "
                   "in data.sources.{task}.path (a mapping split -> file)")


def xtreme_source(spec, split: str, lang: str, xtreme_dir: str | os.PathLike):
    """The LocalSource reading `split` of `spec` from an XTREME download folder, or None when the
    folder has no such split (then the task's other routes apply)."""
    entry = LAYOUT.get((spec.name, split))
    if entry is None:
        return None
    root = Path(xtreme_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"data.xtreme_dir {root}: not a folder (expected the download/ folder written by "
                        "XTREME's scripts/download_data.sh)")
    template, settings = entry
    settings = dict(settings)
    for key in ("target_path", "gold_path"):
        if key in settings:
            settings[key] = str(root / settings[key])
    source = LocalSource(path=str(root / template), **settings)
    path = Path(source.path.format(lang=lang))
    if not path.is_file():
        raise DataError(f"{path}: file not found in data.xtreme_dir (task {spec.name}, split {split}, "
                        f"language {lang}; expected XTREME's download layout, see docs/TASKS.md)")
    _check_retrieval(spec, split, lang, source)
    if spec.task_format.label_column == "tags" and not _first_line_has_tab(path):
        raise DataError(f"{path}: tokens without tags. " + _NO_TEST_LABELS.format(task=spec.name))
    return source


def _check_retrieval(spec, split: str, lang: str, source) -> None:
    if spec.name == "tatoeba":
        raise DataError(f"{source.target_path.format(lang=lang)}: XTREME's download sorts Tatoeba's English "
                        "side, so its line order no longer gives the gold pairs (the XTREME leaderboard "
                        "scores Tatoeba); give the LASER tatoeba.<code>-eng files in data.sources.tatoeba "
                        "(path, target_path, format: text) or use the hub source")
    if spec.name == "bucc" and not Path(source.gold_path.format(lang=lang)).is_file():
        raise DataError(f"{source.gold_path.format(lang=lang)}: missing. XTREME's download removes the BUCC "
                        "test gold (the XTREME leaderboard scores it); give the official "
                        f"bucc2018-{lang}-en.training-gold file in data.sources.bucc.gold_path, or "
                        "evaluate on dev")


def _first_line_has_tab(path: Path) -> bool:
    for _, line in text_lines(path):
        if line.strip():
            return "\t" in line
    return True  # empty: the reader reports it


def check_labeled(ds, spec, source, origin: str) -> None:
    """Raise unless a split read from the XTREME folder carries its labels."""
    label = (source.columns or {}).get("label", "label")
    answers = "answers" in spec.task_format.columns
    missing = (spec.task_format.label_column == "label" and label not in ds.column_names) or (
        answers and all(not any(a["text"]) for a in ds["answers"]))
    if missing:
        what = "answers" if answers else "labels"
        raise DataError(f"{origin}: no {what}. " + _NO_TEST_LABELS.format(task=spec.name))


def covered(task: str, split: str) -> bool:
    return (task, split) in LAYOUT


def describe(task: str) -> dict[str, Any]:
    return {split: LAYOUT[(t, split)][0] for (t, split) in LAYOUT if t == task}
