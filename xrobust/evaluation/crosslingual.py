"""The generalized cross-lingual setting: sentence pairs whose two sides are in different languages.

For a pair task whose evaluation sets are translations of each other (XNLI, PAWS-X, the demo's
demo_xnli), cell (A, B) scores the examples with the first sentence (premise / sentence1) taken
from language A and the second (hypothesis / sentence2) from language B; the gold label is shared
because the sets are parallel. The diagonal is the ordinary per-language evaluation. Every cell
goes through predict.predict and predict.score, the one evaluation path.

Writes crosslingual.json, crosslingual.md and crosslingual_<task>.png (heatmap).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import ConfigError, DataError, XRobustError
from ..io import atomic_write_json, atomic_write_text
from .. import distributed as dist
from ..tasks import get_task
from .finished_run import FinishedRun, first
from .predict import predict, score
from .scorer import official_name

CROSSLINGUAL_TASKS = ("xnli", "pawsx", "demo_xnli")
CROSSLINGUAL_FILE = "crosslingual.json"
HUB = "hub dataset"  # how source_of names a hub set


def source_of(cfg, spec, split: str, lang: str) -> str:
    """Where a (task, split, language) set is read from, for error messages: the loader's route (a
    configured file, data.xtreme_dir, demo data under data.root, else the hub)."""
    import os

    from ..data import loading

    source = cfg.data.sources.get(spec.name)
    local = loading.local_file(spec, split, lang, source=source, root=cfg.data.root, xtreme_dir=cfg.data.xtreme_dir)
    if local is not None:
        return str(local)
    if spec.local_template and cfg.data.root is not None:
        return spec.local_template.format(root=os.fspath(cfg.data.root), task=spec.name, split=split, lang=lang)
    calls = loading.hub_load_args(spec, split, lang, loading.hub_revision(source))
    return " + ".join(f"{HUB} {c.dataset} (config {c.config}, split {c.split}"
                      f"{f', revision {c.revision}' if c.revision else ''})" for c in calls)


def _parallel_sets_hint(spec, split: str, origins) -> str:
    """How to get parallel sets when a hub set is not parallel: XTREME's own XNLI / PAWS-X files
    (google/xtreme's PAWS-X lost rows to quote handling; docs/TASKS.md)."""
    if spec.name not in ("xnli", "pawsx") or not any(o.startswith(HUB) for o in origins):
        return ""
    folder = "data.xtreme_dir (the folder XTREME's scripts/download_data.sh writes; docs/TASKS.md)"
    if split == "test":  # the download removes test labels
        return (f". XTREME's {spec.name} sets are parallel: set {folder} and evaluate on dev (--split dev; its "
                f"test sets have no labels), or give labeled parallel test files in data.sources.{spec.name}.path")
    return f". XTREME's {spec.name} sets are parallel: set {folder}"


def _positional(spec, split: str, lang: str, ids) -> bool:
    # ids the loader made up from row numbers (no id column): they name the language and the row
    # in the source, so only order, count and labels can show that two sets are parallel
    prefix = f"{spec.name}-{split}-{lang}-"
    return all(str(i).startswith(prefix) for i in ids)


def check_parallel(spec, split: str, sets: dict, origins: dict) -> None:
    """Raise DataError unless every language's set has the reference language's examples in the
    same order: same count, same ids (when the data has ids) and the same gold labels."""
    langs = list(sets)
    ref = "en" if "en" in sets else langs[0]
    ref_ds = sets[ref]
    ref_ids, ref_labels = list(ref_ds["id"]), list(ref_ds["label"])
    ref_positional = _positional(spec, split, ref, ref_ids)
    for lang in langs:
        if lang == ref:
            continue
        ds = sets[lang]
        where = f"task {spec.name} split {split}: {origins[lang]} ({lang})"
        against = f"{origins[ref]} ({ref})"
        hint = _parallel_sets_hint(spec, split, (origins[lang], origins[ref]))
        if len(ds) != len(ref_ds):
            raise DataError(f"{where} has {len(ds)} examples, {against} has {len(ref_ds)}; the generalized "
                            f"cross-lingual matrix needs parallel sets (translations in the same order){hint}")
        ids = list(ds["id"])
        if not (ref_positional and _positional(spec, split, lang, ids)):
            for k, (a, b) in enumerate(zip(ref_ids, ids)):
                if a != b:
                    raise DataError(f"{where}: example {k} has id {b!r} where {against} has {a!r}; expected "
                                    f"parallel sets with the same ids in the same order{hint}")
        labels = list(ds["label"])
        bad = [k for k, (a, b) in enumerate(zip(ref_labels, labels)) if a != b]
        if bad:
            k = bad[0]
            raise DataError(f"{where}: {len(bad)} of {len(ds)} gold labels differ from {against} (first at "
                            f"example {k}, id {ids[k]!r}: {spec.labels[labels[k]]} vs {spec.labels[ref_labels[k]]}); "
                            f"expected translations of the same examples in the same order{hint}")


def cross_examples(first, second):
    """text_a (premise / sentence1) of `first`, text_b (hypothesis / sentence2) of `second`;
    ids and labels of `first` (identical to `second`'s in a parallel set)."""
    return first.remove_columns("text_b").add_column("text_b", list(second["text_b"]))


@contextmanager
def _quiet_datasets():
    # one featurization per cell (225 for XNLI): the outer bar reports progress instead
    import datasets

    was = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was:
            datasets.enable_progress_bars()


def crosslingual_matrix(model, spec, sets: dict, tokenizer, *, featurize_fn, batch_size: int,
                        desc: str = "crosslingual") -> dict:
    """Accuracy for every (first-sentence language, second-sentence language) pair.

    featurize_fn(examples) -> features, with the settings of the normal evaluation (so the
    diagonal equals the per-language accuracy)."""
    langs = list(sets)
    n = len(langs)
    grid = np.full((n, n), np.nan)
    bar = tqdm(total=n * n, desc=desc, disable=not dist.is_main(), dynamic_ncols=True)
    with _quiet_datasets():
        for i, a in enumerate(langs):
            for j, b in enumerate(langs):
                bar.set_postfix(first=a, second=b)
                examples = sets[a] if a == b else cross_examples(sets[a], sets[b])
                features = featurize_fn(examples)
                preds = predict(model, spec, examples, features, tokenizer, batch_size)
                grid[i, j] = score(spec, examples, preds, a)["accuracy"]
                bar.update()
    bar.close()
    diag = float(np.mean(np.diag(grid)))
    off = float(grid[~np.eye(n, dtype=bool)].mean()) if n > 1 else None  # JSON has no NaN
    return {"languages": langs, "rows": "first sentence (premise / sentence1) language",
            "columns": "second sentence (hypothesis / sentence2) language",
            "matrix": [[float(v) for v in row] for row in grid], "diagonal": [float(v) for v in np.diag(grid)],
            "diagonal_avg": diag, "off_diagonal_avg": off, "n_examples": len(next(iter(sets.values())))}


def evaluate_crosslingual(cfg, root: Path, *, tasks=None, languages=None, split=None, max_examples=None,
                          out_dir: Path | None = None, models=None) -> dict:
    """The matrix for every cross-lingual pair task of a finished run (default: those it trained)."""
    root = Path(root)
    ev = cfg.evaluation
    split = split or ev.split
    max_examples = max_examples if max_examples is not None else ev.max_examples
    run = FinishedRun(cfg, root, models=models)
    if tasks:
        wrong = [t for t in tasks if t not in CROSSLINGUAL_TASKS]
        if wrong:
            raise ConfigError(f"--crosslingual: {', '.join(wrong)} has no generalized cross-lingual setting; "
                              f"expected some of {', '.join(CROSSLINGUAL_TASKS)}")
    else:
        tasks = [t for t in CROSSLINGUAL_TASKS if t in run.tasks]
        if not tasks:
            raise XRobustError(f"{root}/models.json: no trained task among {', '.join(CROSSLINGUAL_TASKS)}; "
                               f"the cross-lingual matrix needs one")
    out: dict = {}
    for name in tasks:
        spec = get_task(name)
        run.model_dir(name)  # trained?
        langs = run.languages(spec, split, languages)
        if len(langs) < 1:
            raise ConfigError(f"task {name}: no languages on split {split!r}")
        sets, origins = {}, {}
        for lang in langs:
            sets[lang] = run.examples(spec, split, lang)
            origins[lang] = source_of(cfg, spec, split, lang)
        check_parallel(spec, split, sets, origins)  # on the full sets, before any cut
        sets = {lang: first(ds, max_examples) for lang, ds in sets.items()}
        model, tokenizer = run.load(name)

        def featurize_fn(examples, spec=spec, tokenizer=tokenizer):  # one-off mixed sets: not cached
            return run.featurize(spec, examples, tokenizer, cache=False)

        out[official_name(name)] = crosslingual_matrix(model, spec, sets, tokenizer, featurize_fn=featurize_fn,
                                                       batch_size=ev.batch_size, desc=f"crosslingual {name}")
    result = {"tasks": out, "settings": {"split": split, "max_examples": max_examples, "models": run.models}}
    if dist.is_main():
        write_crosslingual(result, Path(out_dir) if out_dir else root / "robustness",
                           title=f"Generalized cross-lingual accuracy: {cfg.name} ({split})")
    dist.barrier()
    return result


# -- outputs ------------------------------------------------------------------------------------------

def crosslingual_markdown(result: dict, title: str = "Generalized cross-lingual accuracy") -> str:
    lines = [f"# {title}", ""]
    for task, body in result["tasks"].items():
        langs = body["languages"]
        lines += [f"## {task}", "", f"Rows: {body['rows']}; columns: {body['columns']}; "
                  f"{body['n_examples']} examples per cell.", "",
                  "| first \\ second | " + " | ".join(langs) + " |", "|---|" + "---:|" * len(langs)]
        for lang, row in zip(langs, body["matrix"]):
            lines.append(f"| **{lang}** | " + " | ".join(f"{v:.1f}" for v in row) + " |")
        off = body["off_diagonal_avg"]
        lines += ["", f"Diagonal average: {body['diagonal_avg']:.2f}; off-diagonal average: "
                  f"{'-' if off is None else f'{off:.2f}'}", "", f"![{task}](crosslingual_{task}.png)", ""]
    settings = result.get("settings") or {}
    if settings:
        lines += ["## Settings", ""] + [f"- {k}: `{json.dumps(v, ensure_ascii=False)}`" for k, v in settings.items()]
    return "\n".join(lines) + "\n"


def crosslingual_png(task: str, body: dict, path) -> None:
    from matplotlib.figure import Figure

    from .plots import save_png

    langs = body["languages"]
    grid = np.asarray(body["matrix"], dtype=float)
    size = max(4.5, 0.45 * len(langs) + 2.5)
    fig = Figure(figsize=(size + 1.0, size))
    ax = fig.add_subplot()
    im = ax.imshow(grid, cmap="viridis", vmin=float(np.nanmin(grid)), vmax=float(np.nanmax(grid)))
    ax.set_xticks(range(len(langs)), langs, rotation=90, fontsize=8)
    ax.set_yticks(range(len(langs)), langs, fontsize=8)
    ax.set_xlabel("second sentence (hypothesis / sentence2)")
    ax.set_ylabel("first sentence (premise / sentence1)")
    mid = (np.nanmin(grid) + np.nanmax(grid)) / 2
    for i in range(len(langs)):
        for j in range(len(langs)):
            ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=6,
                    color="black" if grid[i, j] > mid else "white")
    off = body["off_diagonal_avg"]
    ax.set_title(f"{task}: diagonal {body['diagonal_avg']:.1f}, off-diagonal {'-' if off is None else f'{off:.1f}'}")
    fig.colorbar(im, ax=ax, fraction=0.04)
    save_png(fig, path)


def write_crosslingual(result: dict, out_dir, title: str = "Generalized cross-lingual accuracy") -> list[Path]:
    out = Path(out_dir)
    paths = [out / CROSSLINGUAL_FILE, out / "crosslingual.md"]
    atomic_write_json(paths[0], result)
    atomic_write_text(paths[1], crosslingual_markdown(result, title))
    for task, body in result["tasks"].items():
        png = out / f"crosslingual_{task}.png"
        crosslingual_png(task, body, png)
        paths.append(png)
    return paths
