"""Load a task split in one language as canonical examples (a `datasets.Dataset`).

Four routes, in order of precedence:
1. a local override (`data.sources.<task>.path` in the config): files in json/jsonl/parquet/csv/
   tsv/conll/conllu/squad, in canonical layout (optionally renamed with `columns`) or in a hub
   layout (`adapter: <name>` or `adapter: hub`);
2. `data.xtreme_dir`: the folder XTREME's scripts/download_data.sh writes (xrobust.data.xtreme_dir),
   for every split that folder holds;
3. demo tasks: `{root}/{task}/{split}-{lang}.jsonl` in canonical layout;
4. real tasks: `datasets.load_dataset(id, config, split=..., revision=...)` plus the adapter.
Labels are mapped to indices into the task's label set and checked here, for every route, as are
the texts (UTF-8, none missing or blank) and span-QA answers against their contexts (moved back by
a few characters where a source shifted them; see `align_answers`). Errors name the file and line
(text files are decoded strictly, and each row remembers the line it was read from), else the row.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa

from xrobust.data.conll import conll_dataset
from xrobust.data.local_source import LocalSource
from xrobust.data.stats import log, record_load
from xrobust.data.textfile import read_text, text_lines
from xrobust.errors import DataError
from xrobust.tasks.adapters import apply_adapter
from xrobust.tasks.featurizers import IGNORE_INDEX
from xrobust.tasks.formats import get_format
from xrobust.tasks.registry import (
    SPLITS,
    TATOEBA_CODES,
    UD_LANGUAGE_NAMES,
    HubSource,
    TaskSpec,
    all_tasks,
    get_task,
)

LOCAL_FORMATS = ("json", "jsonl", "parquet", "tsv", "csv", "conll", "conllu", "squad", "text")
_EXTENSIONS = {".json": "json", ".jsonl": "jsonl", ".parquet": "parquet", ".tsv": "tsv",
               ".csv": "csv", ".conll": "conll", ".conllu": "conllu", ".txt": "text"}
# Keys of data.sources.<task> (xrobust.config.schema.SourceConfig) and what they hold.
SOURCE_KEYS = ("path", "format", "columns", "adapter", "header", "field", "target_path",
               "gold_path", "revision")

# Canonical columns, required columns and text fields per format: xrobust.tasks.formats. Text
# fields: a string holds non-blank text, a list (choices, tokens) is non-empty with no missing item
# (a blank word is fed as <unk>, as XTREME does). Missing or blank text gives the model nothing to
# read and almost always means a shifted column or a wrong `columns` mapping.
# Tags unseen in the training split of an open label set (CCG) are ignored, like sub-tokens.


@dataclass(frozen=True)
class HubCall:
    dataset: str
    config: str | None
    split: str
    adapter: str
    revision: str | None = None


@dataclass(frozen=True)
class Bitext:
    """Both sides of a retrieval split and its gold (source id, target id) pairs."""

    source: datasets.Dataset  # id, text in the requested language
    target: datasets.Dataset  # id, text in English
    gold: tuple[tuple[str, str], ...]


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def source_problems(task: str, source: Any) -> list[tuple[str, str]]:
    """(key, problem) for each wrong key of a `data.sources.<task>` entry (dict or object);
    config validation reports them with the config file's name."""
    from xrobust.tasks.adapters import ADAPTERS

    key = f"data.sources.{task}"
    out = []
    path, revision = _get(source, "path"), _get(source, "revision")
    if path in (None, "", {}) and not revision:
        return [(f"{key}.path", "missing required value: a file path template, a mapping "
                                "split -> template, or (hub source) a revision")]
    if path not in (None, "", {}) and revision:
        out.append((f"{key}.revision", "applies to the hub source; it cannot be combined with path"))
    for name in ("path", "target_path", "gold_path"):
        value = _get(source, name)
        if value is None or isinstance(value, str):
            continue
        if not isinstance(value, dict) or not value or not all(
                k in SPLITS and isinstance(v, str) for k, v in value.items()):
            out.append((f"{key}.{name}", f"expected a path template or a mapping of splits "
                                          f"({', '.join(SPLITS)}) to path templates, got {value!r}"))
    fmt = _get(source, "format")
    if fmt is not None and fmt not in LOCAL_FORMATS:
        out.append((f"{key}.format", f"{fmt!r} is not one of: {', '.join(LOCAL_FORMATS)}"))
    adapter = _get(source, "adapter")
    if adapter is not None and adapter != "hub" and adapter not in ADAPTERS:
        out.append((f"{key}.adapter", f"{adapter!r} is not 'hub' or an adapter name: "
                                      f"{', '.join(ADAPTERS)}"))
    columns = _get(source, "columns")
    if columns and not all(isinstance(k, str) and isinstance(v, str) for k, v in columns.items()):
        out.append((f"{key}.columns", f"expected canonical field -> file column names, got {columns!r}"))
    spec_of_task = {t.name: t for t in all_tasks()}.get(task)
    if (_get(source, "target_path") or _get(source, "gold_path")) and spec_of_task and spec_of_task.task_format.has_head:
        out.append((f"{key}.target_path", f"target_path and gold_path are for retrieval tasks; "
                                          f"{task} is {spec_of_task.format}"))
    return out


def resolve_source(source: Any, task: str = "?") -> LocalSource | None:
    """Accept the config's source as a dict or an object with attributes; None if it names no
    files (absent, or a hub revision only)."""
    if source is None or isinstance(source, LocalSource):
        return source
    path = _get(source, "path")
    if path in (None, "", {}):
        return None
    problems = source_problems(task, source)
    if problems:
        raise DataError("; ".join(f"{k}: {m}" for k, m in problems))
    columns = _get(source, "columns") or None
    header = _get(source, "header", True)
    return LocalSource(path=_template(path), format=_get(source, "format"),
                       columns=dict(columns) if columns else None,
                       adapter=_get(source, "adapter"), header=True if header is None else bool(header),
                       field=_get(source, "field"), target_path=_template(_get(source, "target_path")),
                       gold_path=_template(_get(source, "gold_path")))


def _template(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    return {str(k): str(v) for k, v in dict(value).items()}


def hub_revision(source: Any) -> str | None:
    """The hub revision a config's source asks for (None = the registry's pin or main)."""
    return None if source is None or isinstance(source, LocalSource) else _get(source, "revision")


# --------------------------------------------------------------------------------------------
# public entry points
# --------------------------------------------------------------------------------------------

def load_examples(spec: TaskSpec | str, split: str, lang: str = "en", *, source: Any = None,
                  root: str | os.PathLike | None = None,
                  cache_dir: str | os.PathLike | None = None,
                  xtreme_dir: str | os.PathLike | None = None) -> datasets.Dataset:
    """Canonical examples of `spec`'s `split` in `lang` (see docs/ARCHITECTURE.md).

    For retrieval tasks this is one side of the bitext (`load_bitext` gives both and the gold).
    """
    spec = get_task(spec) if isinstance(spec, str) else spec
    _check_split_lang(spec, split, lang)
    labels = task_labels(spec, source=source, root=root, cache_dir=cache_dir,
                         xtreme_dir=xtreme_dir) if spec.open_labels else spec.labels
    ds, origin = _load_raw(spec, split, lang, source, root, cache_dir, xtreme_dir)
    if not spec.task_format.has_head:  # one side of a bitext
        ds = ds.select_columns([c for c in ("id", "text", "row", "line") if c in ds.column_names])
    return _finish(ds, spec, labels, split, lang, origin)


def load_bitext(spec: TaskSpec | str, split: str, lang: str, *, source: Any = None,
                root: str | os.PathLike | None = None,
                cache_dir: str | os.PathLike | None = None,
                xtreme_dir: str | os.PathLike | None = None) -> Bitext:
    """Both sides of a retrieval split: `lang` sentences, English sentences, gold pairs."""
    spec = get_task(spec) if isinstance(spec, str) else spec
    if spec.task_format.has_head:
        raise DataError(f"task {spec.name} is {spec.format}, not retrieval: use load_examples")
    _check_split_lang(spec, split, lang)
    local = resolve_source(source, spec.name) or _xtreme_source(spec, split, lang, xtreme_dir)
    ds, origin = _load_raw(spec, split, lang, local or source, root, cache_dir)
    if "target_text" in ds.column_names:  # hub bitext layout: one row per gold pair
        src = _finish(ds.select_columns([c for c in ("id", "text", "row", "line") if c in ds.column_names]),
                      spec, (), split, lang, origin)
        tgt_ds = ds.select_columns(["target_id", "target_text", "row"]).rename_columns(
            {"target_id": "id", "target_text": "text"})
        tgt = _finish(tgt_ds, spec, (), split, "en", origin)
        return Bitext(src, tgt, tuple(zip(src["id"], tgt["id"])))
    src = _finish(ds, spec, (), split, lang, origin)
    if local is not None and local.target_path:
        # the English side of this language's pairs: {lang} in its template names the pair
        path = _local_path(replace(local, path=local.target_path), spec, split, lang, root, "target_path")
        tgt_local = replace(local, path=str(path))
    else:
        tgt_local = local
    tgt_raw, tgt_origin = _load_raw(spec, split, "en", tgt_local, root, cache_dir)
    tgt = _finish(tgt_raw, spec, (), split, "en", tgt_origin)
    if local is not None and local.gold_path:
        gold = _read_gold(_local_path(replace(local, path=local.gold_path), spec, split, lang, root,
                                      "gold_path"), src, tgt)
    else:
        tgt_ids = set(tgt["id"])
        gold = tuple((i, i) for i in src["id"] if i in tgt_ids)
    if not gold:
        raise DataError(f"{origin}: no gold pairs: expected rows sharing an id with {tgt_origin}"
                        " (or a gold_path file)")
    return Bitext(src, tgt, gold)


def hub_load_args(spec: TaskSpec | str, split: str, lang: str = "en",
                  revision: str | None = None) -> list[HubCall]:
    """The `datasets.load_dataset(dataset, config, split=split, revision=revision)` calls for a
    split, in order; `revision` (a config's data.sources.<task>.revision) replaces the pins."""
    spec = get_task(spec) if isinstance(spec, str) else spec
    _check_split_lang(spec, split, lang)
    if not spec.sources:
        raise DataError(f"task {spec.name} has no hub source "
                        f"({'demo data under data.root' if spec.demo else 'local path only'})")
    if split not in spec.sources:
        raise DataError(f"task {spec.name} has no {split!r} split on the hub; available: "
                        f"{', '.join(spec.sources)}")
    return [HubCall(h.dataset, _format_config(h, lang), h.split, h.adapter, revision or h.revision)
            for h in spec.sources[split]]


def with_labels(spec: TaskSpec, **where: Any) -> TaskSpec:
    """`spec` with its label set filled in: an open label set (CCG) is read from the training
    split (`where`: source, root, cache_dir, xtreme_dir as for load_examples), so heads and
    featurizers see the real number of labels."""
    if not spec.open_labels:
        return spec
    return replace(spec, labels=task_labels(spec, **where))


def task_labels(spec: TaskSpec | str, *, source: Any = None, root: Any = None,
                cache_dir: Any = None, xtreme_dir: Any = None) -> tuple[str, ...]:
    """The label set: fixed in the registry, or (CCG) the sorted tags of the training split."""
    spec = get_task(spec) if isinstance(spec, str) else spec
    if not spec.open_labels:
        return spec.labels
    ds, origin = _load_raw(spec, "train", "en", source, root, cache_dir, xtreme_dir)
    key = spec.task_format.label_column
    values = ds[key]
    flat = {str(v) for seq in values for v in seq} if key == "tags" else {str(v) for v in values}
    if not flat:
        raise DataError(f"{origin}: no labels found in the training split")
    return tuple(sorted(flat))


# --------------------------------------------------------------------------------------------
# routes
# --------------------------------------------------------------------------------------------

def _check_split_lang(spec: TaskSpec, split: str, lang: str) -> None:
    if split not in SPLITS:
        raise DataError(f"task {spec.name}: unknown split {split!r}; expected one of "
                        f"{', '.join(SPLITS)}")
    if lang not in spec.languages:
        raise DataError(f"task {spec.name}: language {lang!r} is not one of its languages "
                        f"({' '.join(spec.languages)})")
    allowed = spec.split_languages(split)
    if lang not in allowed:
        why = "training is zero-shot from English" if split == "train" else \
            "this split is not per-language"
        raise DataError(f"task {spec.name}: split {split!r} exists only in "
                        f"{' '.join(allowed)} ({why}); got {lang!r}")


def _xtreme_source(spec: TaskSpec, split: str, lang: str, xtreme_dir: Any) -> LocalSource | None:
    if xtreme_dir is None:
        return None
    from xrobust.data.xtreme_dir import xtreme_source

    return xtreme_source(spec, split, lang, xtreme_dir)


def local_file(spec: TaskSpec, split: str, lang: str, *, source: Any = None, root: Any = None,
               xtreme_dir: Any = None) -> Path | None:
    """The file a set is read from when it comes from data.sources or data.xtreme_dir, else None."""
    local = resolve_source(source, spec.name) or _xtreme_source(spec, split, lang, xtreme_dir)
    return None if local is None else _local_path(local, spec, split, lang, root)


def _load_raw(spec: TaskSpec, split: str, lang: str, source: Any, root: Any,
              cache_dir: Any, xtreme_dir: Any = None) -> tuple[datasets.Dataset, str]:
    """The split before label mapping: canonical columns (+ `row`, maybe `line`)."""
    prefix = f"{spec.name}-{split}-{lang}"
    local = resolve_source(source, spec.name)
    xtreme = local is None and _xtreme_source(spec, split, lang, xtreme_dir)
    if xtreme:
        local = xtreme
    if local is not None:
        path = _local_path(local, spec, split, lang, root)
        ds = _read_local(path, local, cache_dir)
        origin = str(path)
        if xtreme:
            from xrobust.data.xtreme_dir import check_labeled

            check_labeled(ds, spec, local, origin)
        adapter = local.adapter
        if adapter == "hub":
            if split not in spec.sources:
                raise DataError(f"data.sources.{spec.name}.adapter: 'hub' but task {spec.name} "
                                f"has no hub source for split {split!r}")
            adapter = spec.sources[split][0].adapter
        if adapter:
            return _lines_by_row(apply_adapter(ds, adapter, lang, prefix, origin), ds), origin
        return _canonical_columns(ds, spec, local.columns, origin), origin
    if spec.local_only:
        raise DataError(
            f"task {spec.name} has no public download ({spec.notes}). Configure its files, e.g. "
            f"data: {{sources: {{{spec.name}: {{path: /data/ccgbank/{{split}}.conll, "
            f"format: conll}}}}}} (see docs/TASKS.md)")
    if spec.local_template:
        if root is None:
            raise DataError(f"task {spec.name} reads demo data from data.root, which is not set "
                            f"(expected {spec.local_template})")
        path = Path(spec.local_template.format(root=os.fspath(root), task=spec.name,
                                               split=split, lang=lang))
        ds = _read_local(path, LocalSource(path=str(path), format="jsonl"), cache_dir)
        if not spec.task_format.has_head and {"source", "target"} <= set(ds.column_names):
            ds = _pair_rows(ds)
        return _canonical_columns(ds, spec, None, str(path)), str(path)
    return _load_hub(spec, split, lang, cache_dir, hub_revision(source))


def _lines_by_row(ds: datasets.Dataset, raw: datasets.Dataset) -> datasets.Dataset:
    """The `line` of each adapted row (adapters number rows by their position in `raw`)."""
    if "line" not in raw.column_names or "line" in ds.column_names or "row" not in ds.column_names:
        return ds  # no lines known, or nothing left (an adapter filter can keep no row)
    lines = raw["line"]
    return ds.add_column("line", [lines[r] for r in ds["row"]])


def _pair_rows(ds: datasets.Dataset) -> datasets.Dataset:
    """A file of translation pairs {id, source, target} -> the bitext layout (one row per gold pair)."""
    return ds.map(lambda b: {"text": b["source"], "target_text": b["target"],
                             "target_id": [f"{i}-en" for i in b["id"]]},
                  batched=True, remove_columns=["source", "target"])


_WARNED: set[str] = set()


def warn_once(key: str, message: str) -> None:
    """One `warning:` line on stderr per process (rank 0 only under torchrun/deepspeed)."""
    if key not in _WARNED:
        _WARNED.add(key)
        log(f"warning: {message}")


def _load_hub(spec: TaskSpec, split: str, lang: str, cache_dir: Any, revision: str | None = None
              ) -> tuple[datasets.Dataset, str]:
    calls = hub_load_args(spec, split, lang, revision)
    if spec.hub_difference:
        warn_once(f"hub:{spec.name}", f"task {spec.name}: {spec.hub_difference}")
    parts = []
    for call in calls:
        at = f", revision {call.revision}" if call.revision else ""
        origin = f"hub dataset {call.dataset} (config {call.config}, split {call.split}{at})"
        try:
            raw = datasets.load_dataset(call.dataset, call.config, split=call.split,
                                        revision=call.revision,
                                        cache_dir=os.fspath(cache_dir) if cache_dir else None)
        except Exception as exc:  # datasets raises many types; the user needs one clear message
            raise DataError(_hub_error(spec, call, exc)) from exc
        ds = apply_adapter(raw, call.adapter, lang, f"{spec.name}-{split}-{lang}", origin)
        if len(calls) > 1:  # ids stay unique across the concatenated parts (ANLI+)
            tag = f"{call.dataset.split('/')[-1]}_{call.split}"
            ds = ds.map(lambda b: {"id": [f"{tag}:{i}" for i in b["id"]]}, batched=True)
        parts.append(ds)
    origin = " + ".join(f"{c.dataset}/{c.config or ''}:{c.split}" for c in calls)
    if len(parts) == 1:
        return parts[0], origin
    # every part left its adapter with the same raw schema (TaskFormat.features(raw=True))
    return datasets.concatenate_datasets(parts), origin


def _hub_error(spec: TaskSpec, call: HubCall, exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    offline = os.environ.get("HF_DATASETS_OFFLINE") == "1" or \
        os.environ.get("HF_HUB_OFFLINE") == "1" or isinstance(exc, ConnectionError)
    at = f", revision {call.revision!r}" if call.revision else ""
    head = (f"cannot load {call.dataset} (config {call.config!r}, split {call.split!r}{at}) for "
            f"task {spec.name}: {type(exc).__name__}: {text}.")
    if "scripts are no longer supported" in text:
        head += (" This revision holds only a loading script, which datasets >= 4 does not run; "
                 f"set data.sources.{spec.name}.revision to a revision with data files (e.g. "
                 "refs/convert/parquet, the hub's Parquet export).")
    if offline:
        head += (" The dataset is not in the local datasets cache and the hub cannot be reached"
                 " (offline mode or no network).")
    elif "split" in text.lower():
        head += " This split does not exist for this language on the hub."
    return (head + f" Download it once where the hub is reachable, or point "
            f"data.sources.{spec.name}.path at local files (see docs/TASKS.md).")


def _format_config(h: HubSource, lang: str) -> str | None:
    if h.config is None:
        return None
    return h.config.format(lang=lang, ud_name=UD_LANGUAGE_NAMES.get(lang, lang),
                           tatoeba_code=TATOEBA_CODES.get(lang, lang))


# --------------------------------------------------------------------------------------------
# local files
# --------------------------------------------------------------------------------------------

def _expand(template: str, spec: TaskSpec, split: str, lang: str, root: Any) -> Path:
    values = {"split": split, "lang": lang, "task": spec.name}
    if root is not None:
        values["root"] = os.fspath(root)
    try:
        text = template.format(**values)
    except (KeyError, IndexError) as exc:
        raise DataError(f"data.sources.{spec.name}.path {template!r}: unknown placeholder {exc}; "
                        f"expected {{split}}, {{lang}}, {{task}} or {{root}} (with data.root set)"
                        ) from None
    path = Path(text).expanduser()
    if not path.is_absolute() and root is not None:
        path = Path(root) / path
    return path


def _local_path(local: LocalSource, spec: TaskSpec, split: str, lang: str, root: Any,
                key: str = "path") -> Path:
    template = local.path
    if isinstance(template, dict):
        if split not in template:
            raise DataError(f"data.sources.{spec.name}.{key} has no {split!r} split; configured: "
                            f"{', '.join(template) or 'none'}")
        template = template[split]
    return _expand(template, spec, split, lang, root)


def _infer_format(path: Path, fmt: str | None) -> str:
    if fmt:
        return fmt
    for ext, name in _EXTENSIONS.items():
        if path.name.endswith(ext):
            return name
    raise DataError(f"{path}: cannot infer the format from the extension; set format to one of "
                    f"{', '.join(LOCAL_FORMATS)}")


def _read_local(path: Path, local: LocalSource, cache_dir: Any) -> datasets.Dataset:
    fmt = _infer_format(path, local.format)
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected {fmt} data)")
    if fmt in ("conll", "conllu"):
        return conll_dataset(path, fmt, strip_lang_prefix=local.strip_lang_prefix)
    if fmt in ("squad", "text"):
        return _read_squad(path) if fmt == "squad" else _read_lines(path)
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (expected {fmt} examples)")
    # pyarrow keeps bytes that are not UTF-8 until something reads them: decode text files first
    lines = None if fmt == "parquet" else _record_lines(path, fmt, local)
    kwargs: dict[str, Any] = {}
    builder = fmt
    if fmt in ("json", "jsonl"):
        builder = "json"
        if local.field:
            kwargs["field"] = local.field
    elif fmt in ("csv", "tsv"):
        builder = "csv"
        # a field is text as written: pandas would read "NA", "null", "None" or "nan" as missing
        kwargs["na_filter"] = False
        if fmt == "tsv":
            # XNLI/PAWS-X style TSV: quotes are literal text, not field quoting
            kwargs.update(delimiter="\t", quoting=csv.QUOTE_NONE)
        if not local.header:
            kwargs["header"] = None
    try:
        ds = datasets.load_dataset(builder, data_files={"data": str(path)}, split="data",
                                   cache_dir=os.fspath(cache_dir) if cache_dir else None,
                                   **kwargs)
    except Exception as exc:
        raise DataError(_parse_error(path, fmt, exc)) from exc
    if lines is not None and len(lines) == len(ds) and "line" not in ds.column_names:
        ds = ds.add_column("line", lines)
    return ds


def _record_lines(path: Path, fmt: str, local: LocalSource) -> list[int] | None:
    """Read the whole file as UTF-8 (a DataError names the file and line otherwise) and return the
    line on which each record starts, header excluded; None for a JSON document. The reader skips
    blank lines as pandas and pyarrow do; _read_local uses the lines only when the counts agree."""
    lines = text_lines(path)
    if fmt == "json" and (local.field or path.suffix != ".jsonl"):
        for _ in lines:
            pass
        return None
    if fmt == "csv":  # a quoted field may span lines: a record starts where the csv module starts it
        starts, end = [], 0
        reader = csv.reader(text + "\n" for _, text in lines)
        for record in reader:
            if any(field.strip() for field in record) or len(record) > 1:
                starts.append(end + 1)
            end = reader.line_num
    else:  # jsonl, tsv: one record per line
        delimiter = "\t" if fmt == "tsv" else None
        starts = [n for n, text in lines
                  if text.strip() or (delimiter is not None and delimiter in text)]
    return starts[1:] if fmt in ("csv", "tsv") and local.header else starts


def _read_squad(path: Path) -> datasets.Dataset:
    """SQuAD v1.1 JSON ({"data": [{"paragraphs": [{"context", "qas": [...]}]}]}), one row per
    question, texts exactly as written (XQuAD, MLQA, TyDiQA-GoldP and SQuAD ship in it)."""
    text = read_text(path)
    try:
        data = json.loads(text)
        rows = [{"id": str(qa["id"]), "question": qa["question"], "context": par["context"],
                 "answers": {"text": [a["text"] for a in qa.get("answers", [])],
                             "answer_start": [int(a["answer_start"]) for a in qa.get("answers", [])]}}
                for article in data["data"] for par in article["paragraphs"] for qa in par["qas"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not SQuAD v1.1 JSON ({type(exc).__name__}: {exc}); expected "
                        "{'data': [{'paragraphs': [{'context', 'qas': [{'id', 'question', "
                        "'answers': [{'text', 'answer_start'}]}]}]}]}") from None
    if not rows:
        raise DataError(f"{path}: no questions found (expected SQuAD v1.1 JSON)")
    return datasets.Dataset.from_list(rows, features=get_format("span_qa").features()).add_column("row", list(range(len(rows))))


def _read_lines(path: Path) -> datasets.Dataset:
    """One text per line (retrieval sides such as Tatoeba's); line numbers are the ids."""
    texts = [text for _, text in text_lines(path)]
    if not texts:
        raise DataError(f"{path}: empty file (expected one sentence per line)")
    return datasets.Dataset.from_dict({"id": [str(i) for i in range(len(texts))], "text": texts,
                                       "line": list(range(1, len(texts) + 1))})


def _parse_error(path: Path, fmt: str, exc: Exception) -> str:
    if fmt == "jsonl" or (fmt == "json" and path.suffix == ".jsonl"):
        # whatever the bytes: this runs after a reader failed, and must not fail itself
        with path.open("rb") as f:
            for lineno, raw in enumerate(f, 1):
                line = raw.decode("utf-8", errors="replace")
                if not line.strip():
                    continue
                try:
                    json.loads(line)
                except ValueError as err:
                    return f"{path}:{lineno}: invalid JSON ({err.msg}); expected one object per line"
    cause = exc
    while cause.__cause__ is not None:  # datasets wraps the parser's error
        cause = cause.__cause__
    return f"{path}: cannot be read as {fmt}: {type(cause).__name__}: {str(cause)[:300]}"


def _canonical_columns(ds: datasets.Dataset, spec: TaskSpec, columns: dict[str, str] | None,
                       origin: str) -> datasets.Dataset:
    if columns:
        absent = [f"{canon} <- {col!r}" for canon, col in columns.items()
                  if col not in ds.column_names]
        if absent:
            raise DataError(f"{origin}: columns mapping names missing file column(s): "
                            f"{', '.join(absent)}; file has {', '.join(ds.column_names)}")
        ds = ds.rename_columns({col: canon for canon, col in columns.items() if col != canon})
    required = spec.task_format.required_columns(spec)
    missing = [c for c in required if c not in ds.column_names]
    if missing:
        raise DataError(f"{origin}: missing required column(s) {', '.join(missing)} for a "
                        f"{spec.format} task (expected {', '.join(required)}; file has "
                        f"{', '.join(ds.column_names)}; map names with columns: {{...}})")
    if "row" not in ds.column_names:
        ds = ds.add_column("row", list(range(len(ds))))
    return _class_names(ds)


def _class_names(ds: datasets.Dataset) -> datasets.Dataset:
    """ClassLabel `label` / `tags` columns (e.g. Parquet files saved from the hub) as their class
    names, so they map by name like every other label, whatever order the file's ClassLabel has."""
    from xrobust.tasks.adapters import class_label_names, label_name

    names = {c: n for c, n in class_label_names(ds).items() if c in ("label", "tags")}
    if not names:
        return ds
    for column, classes in names.items():
        values = ds[column]
        as_names = ([[label_name(v, classes) for v in seq] for seq in values] if column == "tags"
                    else [label_name(v, classes) for v in values])
        ds = ds.remove_columns(column).add_column(column, as_names)
    return ds


def _read_gold(path: Path, src: datasets.Dataset, tgt: datasets.Dataset
               ) -> tuple[tuple[str, str], ...]:
    if not path.is_file():
        raise DataError(f"{path}: gold file not found (expected 'src_id<TAB>tgt_id' lines)")
    src_ids, tgt_ids = set(src["id"]), set(tgt["id"])
    gold = []
    for lineno, line in text_lines(path):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise DataError(f"{path}:{lineno}: expected 'src_id<TAB>tgt_id', got {line!r}")
        if parts[0] not in src_ids or parts[1] not in tgt_ids:
            raise DataError(f"{path}:{lineno}: gold pair {parts[0]}/{parts[1]} names an id "
                            f"absent from the source or target sentences")
        gold.append((parts[0], parts[1]))
    return tuple(gold)


# --------------------------------------------------------------------------------------------
# labels and final schema
# --------------------------------------------------------------------------------------------

def _where(ds: datasets.Dataset, i: int, origin: str) -> str:
    """`file:line` where the row's line is known, else `origin, row N` (N from 1, in the source)."""
    # one column only: the row's other fields may be what is wrong with it
    if "line" in ds.column_names:
        return f"{origin}:{ds.select_columns(['line'])[i]['line']}"
    return f"{origin}, row {ds.select_columns(['row'])[i]['row'] + 1}"


def _check_utf8(ds: datasets.Dataset, origin: str) -> None:
    """Name the row of text that is not UTF-8 (Parquet files and hub datasets store bytes; text
    files were decoded strictly when read), before anything reads it."""
    for name in ds.column_names:
        try:
            for chunk in ds.data.column(name).chunks:
                chunk.validate(full=True)  # checks UTF-8 in C, nested lists included
        except pa.ArrowInvalid:
            _name_undecodable(ds, name, origin)


def _name_undecodable(ds: datasets.Dataset, name: str, origin: str, block: int = 1000) -> None:
    column = ds.select_columns([name])
    for start in range(0, len(ds), block):
        try:
            column[start:start + block]
            continue
        except UnicodeDecodeError:
            pass
        for i in range(start, min(start + block, len(ds))):
            try:
                column[i]
            except UnicodeDecodeError as exc:
                raise DataError(f"{_where(ds, i, origin)}: {name} is not valid UTF-8 ({exc.reason}); "
                                "expected UTF-8 text") from None


def _text_problem(field: str, value: Any) -> str | None:
    """What is wrong with one example's text field (TaskFormat.text_fields), or None."""
    if value is None:
        return f"{field} is missing; expected text"
    if isinstance(value, list):
        if not value:
            return f"{field} is an empty list; expected at least one text"
        missing = [k for k, v in enumerate(value) if v is None]
        return f"{field}[{missing[0]}] is missing; expected text" if missing else None
    if isinstance(value, str) and not value.strip():
        return f"{field} is empty ({value!r}); expected non-blank text"
    return None


def _check_texts(ds: datasets.Dataset, spec: TaskSpec, origin: str) -> None:
    ids = ds["id"]
    for field in spec.task_format.text_fields:
        if field not in ds.column_names or (field == "text_b" and not spec.pair):
            continue
        for i, value in enumerate(ds[field]):
            problem = _text_problem(field, value)
            if problem:
                raise DataError(f"{_where(ds, i, origin)} (id {ids[i]!r}): {problem} (task {spec.name})")


def _label_index(value: Any, labels: tuple[str, ...], index: dict[str, int]) -> int | None:
    """Index of a raw label: a class name, an integer index or a digit string; None if bad."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value < len(labels) else None
    if isinstance(value, str):
        if value in index:
            return index[value]
        if value.strip().lstrip("-").isdigit():
            n = int(value)
            return n if 0 <= n < len(labels) else None
    if isinstance(value, float) and value.is_integer():
        return _label_index(int(value), labels, index)
    return None


def _bad_label(ds, i, origin, spec, value, labels) -> DataError:
    allowed = ", ".join(labels) if labels else "none"
    return DataError(f"{_where(ds, i, origin)}: label {value!r} is not in the label set of task "
                     f"{spec.name} (allowed: {allowed}, or their indices 0-{len(labels) - 1})")


# google/xtreme strips contexts and answers without moving answer_start; such shifts are a few
# characters (the whitespace that was stripped)
MAX_ANSWER_SHIFT = 10


def align_answers(contexts: list[str], answers: list[dict]) -> tuple[list[dict], int, int]:
    """Answers whose text is not at answer_start are moved to the nearest place within
    MAX_ANSWER_SHIFT characters where it is. Returns (answers, moved, not found); answers not found
    keep their start (their text still scores predictions; training skips them)."""
    out, moved, lost = [], 0, 0
    for context, ans in zip(contexts, answers):
        texts, starts = list(ans.get("text") or []), list(ans.get("answer_start") or [])
        for k, (text, start) in enumerate(zip(texts, starts)):
            if not text or context[start:start + len(text)] == text:
                continue
            lo = max(0, start - MAX_ANSWER_SHIFT)
            hits = [i for i in range(lo, start + MAX_ANSWER_SHIFT + 1)
                    if context.startswith(text, i)]
            if hits:
                starts[k] = min(hits, key=lambda i: abs(i - start))
                moved += 1
            else:
                lost += 1
        out.append({"text": texts, "answer_start": starts})
    return out, moved, lost


def _finish(ds: datasets.Dataset, spec: TaskSpec, labels: tuple[str, ...], split: str,
            lang: str, origin: str) -> datasets.Dataset:
    if len(ds) == 0:
        raise DataError(f"{origin}: no examples for task {spec.name} split {split} language "
                        f"{lang}")
    _check_utf8(ds, origin)
    fmt = spec.task_format
    index = {name: i for i, name in enumerate(labels)}
    ids = ds["id"] if "id" in ds.column_names else [None] * len(ds)
    rows = ds["row"]
    new_ids = [str(v) if v is not None and str(v) != "" else f"{spec.name}-{split}-{lang}-{r}"
               for v, r in zip(ids, rows)]
    ds = ds.remove_columns([c for c in ("id",) if c in ds.column_names]).add_column("id", new_ids)
    _check_texts(ds, spec, origin)

    label_kind = fmt.columns.get(fmt.label_column)
    if label_kind == "label":  # one label per example
        out = []
        choices = ds["choices"] if "choices" in fmt.columns else None
        for i, value in enumerate(ds["label"]):
            k = _label_index(value, labels, index)
            if k is None:
                raise _bad_label(ds, i, origin, spec, value, labels)
            if choices is not None and len(choices[i]) != len(labels):
                raise DataError(f"{_where(ds, i, origin)}: expected {len(labels)} choices for "
                                f"task {spec.name}, got {len(choices[i])}")
            out.append(k)
        ds = ds.remove_columns("label").add_column("label", out)
    elif label_kind == "labels":  # one label per token
        out_tags = []
        tokens = ds["tokens"]
        for i, seq in enumerate(ds["tags"]):
            if len(seq) != len(tokens[i]):
                raise DataError(f"{_where(ds, i, origin)}: {len(tokens[i])} tokens but "
                                f"{len(seq)} tags")
            mapped = []
            for value in seq:
                k = _label_index(value, labels, index)
                if k is None:
                    if spec.open_labels and split != "train":
                        k = IGNORE_INDEX
                    else:
                        raise _bad_label(ds, i, origin, spec, value, labels)
                mapped.append(k)
            out_tags.append(mapped)
        ds = ds.remove_columns("tags").add_column("tags", out_tags)
    if "answers" in fmt.columns:
        answers, moved, lost = align_answers(ds["context"], ds["answers"])
        if moved:
            ds = ds.remove_columns("answers").add_column("answers", answers)
        record_load(spec.name, split, lang, realigned=moved, unaligned=lost)
        if moved or lost:
            log(f"{spec.name} {split} {lang}: {moved} answer(s) moved back onto their text "
                f"(answer_start off by <= {MAX_ANSWER_SHIFT} characters in {origin}); {lost} "
                f"answer(s) not found near answer_start (training skips those examples)")
    for column in fmt.columns:  # optional text (text_b of single-text classification) is None
        if column not in ds.column_names and column not in fmt.required:
            ds = ds.add_column(column, [None] * len(ds))
    features = fmt.features()
    ds = ds.select_columns(list(features))
    try:
        return ds.cast(features)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{origin}: columns do not have the canonical {fmt.name} types "
                        f"({', '.join(f'{k}: {v}' for k, v in features.items())}): {exc}"
                        ) from None
