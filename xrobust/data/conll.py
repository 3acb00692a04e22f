"""CoNLL (token TAG per line) and CoNLL-U readers producing tokens/tags string columns.

Tags stay strings here; xrobust.data.loading maps them to indices into the task's label set so
that a bad tag is reported with the file and line it came from (kept in the `line` column).
"""

from __future__ import annotations

import re
from pathlib import Path

import datasets

from xrobust.data.textfile import text_lines
from xrobust.errors import DataError

# Official XTREME PAN-X / UD-POS files prefix every token with its language ("en:Paris").
_LANG_PREFIX = re.compile(r"^[a-z]{2,3}:(?=.)")


def _strip_lang_prefix(token: str) -> str:
    return _LANG_PREFIX.sub("", token, count=1)


def read_conll(path: str | Path, *, strip_lang_prefix: bool = True) -> list[dict]:
    """Sentences of a `token<TAB or spaces>tag` file; blank lines separate sentences.

    The tag is the last whitespace field (files with extra middle columns, e.g. CoNLL-2003, work);
    `-DOCSTART-` lines are skipped.
    """
    path = Path(path)
    sentences: list[dict] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 0

    def flush() -> None:
        if tokens:
            sentences.append({"tokens": list(tokens), "tags": list(tags), "line": start})
        tokens.clear()
        tags.clear()

    for lineno, line in _lines(path):
        if not line.strip():
            flush()
            continue
        if line.startswith("-DOCSTART-"):
            flush()
            continue
        # A tab separates token and tag when present, so tokens may contain spaces.
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) < 2 or not parts[0].strip() or not parts[-1].strip():
            raise DataError(
                f"{path}:{lineno}: expected 'token<TAB>tag' (or 'token tag'), got {line!r}")
        if not tokens:
            start = lineno
        token = parts[0].strip()
        tokens.append(_strip_lang_prefix(token) if strip_lang_prefix else token)
        tags.append(parts[-1].strip())
    flush()
    return sentences


def read_conllu(path: str | Path) -> list[dict]:
    """Sentences of a CoNLL-U file: FORM (column 2) and UPOS (column 4).

    Comment lines, multiword-token ranges (ID "3-4") and empty nodes (ID "5.1") are skipped, so
    the tokens are the syntactic words UPOS is defined on.
    """
    path = Path(path)
    sentences: list[dict] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 0
    for lineno, line in _lines(path):
        if not line.strip():
            if tokens:
                sentences.append({"tokens": tokens, "tags": tags, "line": start})
            tokens, tags = [], []
            continue
        if line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) != 10:
            raise DataError(
                f"{path}:{lineno}: expected 10 tab-separated CoNLL-U columns, got {len(cols)}")
        word_id = cols[0]
        if "-" in word_id or "." in word_id:
            continue
        if not word_id.isdigit():
            raise DataError(f"{path}:{lineno}: expected an integer word ID, got {word_id!r}")
        if not tokens:
            start = lineno
        tokens.append(cols[1])
        tags.append(cols[3])
    if tokens:
        sentences.append({"tokens": tokens, "tags": tags, "line": start})
    return sentences


def conll_dataset(path: str | Path, fmt: str = "conll", *, strip_lang_prefix: bool = True
                  ) -> datasets.Dataset:
    """A `datasets.Dataset` with tokens, tags (strings) and line (first line of the sentence)."""
    rows = read_conllu(path) if fmt == "conllu" else read_conll(path, strip_lang_prefix=strip_lang_prefix)
    if not rows:
        raise DataError(f"{path}: no sentences found (expected {fmt} lines separated by blanks)")
    features = datasets.Features({
        "tokens": datasets.Sequence(datasets.Value("string")),
        "tags": datasets.Sequence(datasets.Value("string")),
        "line": datasets.Value("int64"),
    })
    return datasets.Dataset.from_list(rows, features=features)


def _lines(path: Path):
    """Numbered lines, decoded strictly: bytes that are not UTF-8 are named by file and line."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    return text_lines(path)
