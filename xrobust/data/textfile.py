"""Text files read strictly as UTF-8: bytes that are not UTF-8 are a DataError naming the file and
line, never a UnicodeDecodeError from deep inside a reader (or, with pyarrow, text that fails only
when a later step reads it). A UTF-8 byte order mark at the start of a file is dropped, as pandas
does for CSV files.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from xrobust.errors import DataError

_BOM = "\ufeff"


def not_utf8(path, lineno: int, line: bytes, start: int, reason: str) -> DataError:
    """The error for a line holding bytes that are not UTF-8 (`start`: their offset in the line)."""
    near = line[max(0, start - 20):start + 20]
    return DataError(f"{path}:{lineno}: not valid UTF-8 ({reason} at byte {start + 1} of the line, near "
                     f"{near!r}); expected UTF-8 text (re-encode the file, e.g. iconv -f latin1 -t utf-8)")


def text_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number from 1, line without its line ending) for every line of a UTF-8 file.

    Lines end at "\\n" only (as pandas and pyarrow split them), never at the other characters
    str.splitlines() breaks on."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise not_utf8(path, lineno, raw, exc.start, exc.reason) from None
            if lineno == 1 and text.startswith(_BOM):
                text = text[1:]
            yield lineno, text.rstrip("\r\n")


def read_text(path: str | Path) -> str:
    """A whole UTF-8 file as one string (a JSON document); bad bytes are named by line."""
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        start = data.rfind(b"\n", 0, exc.start) + 1
        end = data.find(b"\n", exc.start)
        line = data[start:] if end < 0 else data[start:end]
        raise not_utf8(path, data.count(b"\n", 0, start) + 1, line, exc.start - start, exc.reason) from None
    return text[1:] if text.startswith(_BOM) else text
