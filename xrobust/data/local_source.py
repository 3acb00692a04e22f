"""A user's file source for a task (`data.sources.<task>` with a path), or the XTREME download
folder's file for a split: what xrobust.data.loading reads."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LocalSource:
    """A user override: `path` is a template ({split}, {lang}, {task}, {root}) or split -> path.
    `target_path` and `gold_path` take the same forms."""

    path: str | dict[str, str]
    format: str | None = None
    columns: dict[str, str] | None = None
    adapter: str | None = None  # hub layout: an adapter name, or "hub" for the task's own
    header: bool = True  # csv/tsv: first row names the columns; else columns are "0", "1", ...
    field: str | None = None  # json: records under this top-level key
    target_path: str | dict[str, str] | None = None  # retrieval: English side (default: lang=en)
    gold_path: str | dict[str, str] | None = None  # retrieval: "src_id<TAB>tgt_id" lines
    strip_lang_prefix: bool = True  # conll: drop "en:"-style prefixes (raw PAN-X files have them)
