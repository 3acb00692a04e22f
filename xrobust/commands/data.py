"""`xrobust data stats`: what a run will train and evaluate on, per task, split and language.

Loads each split the way a run does (config sources, data.xtreme_dir, the hub), featurizes it with
the run's tokenizer and lengths, and prints examples, features (windows), truncated features,
skipped examples, words fed as <unk>, moved answers and feature length percentiles.
"""

from __future__ import annotations

import json

from xrobust.errors import ConfigError

from ..config import add_overrides

COLUMNS = ("task", "split", "lang", "examples", "features", "truncated", "skipped", "unk_words",
           "realigned", "unaligned", "p50", "p90", "p99", "max")


def add_parsers(sub) -> None:
    data = sub.add_parser("data", help="inspect task data before a run").add_subparsers(dest="data_command",
                                                                                        required=True)
    p = data.add_parser("stats", help="examples, features, truncated/skipped examples and lengths per "
                                      "task, split and language")
    p.add_argument("--tasks", nargs="+", required=True, help="task names (see `xrobust tasks`)")
    p.add_argument("--split", choices=("train", "dev", "test"), help="one split (default: every split)")
    p.add_argument("--languages", nargs="+", help="only these languages")
    p.add_argument("--config", help="a config or preset: its data sources, model tokenizer and lengths")
    add_overrides(p)
    p.add_argument("--tokenizer", help="tokenizer (hub id or folder); default: the config's model")
    p.add_argument("--max-length", type=int, help="feature length (default: the config's phase, else the task's)")
    p.add_argument("--json", action="store_true", help="print a JSON list of rows")
    p.set_defaults(func=run_stats)


def _phase_of(cfg, task: str):
    for phase in (cfg.phases or {}).values() if cfg else ():
        if task in phase.tasks:
            return phase
    return None


def run_stats(args) -> int:
    from transformers import AutoTokenizer

    from xrobust.config import load_config
    from xrobust.data.featurize import featurize
    from xrobust.data.loading import load_bitext, load_examples
    from xrobust.data.stats import data_report, log
    from xrobust.tasks import get_task

    if args.overrides and not args.config:
        raise ConfigError("--set needs --config")
    cfg = load_config(args.config, args.overrides) if args.config else None
    name = args.tokenizer or (cfg and (cfg.model.tokenizer or cfg.model.name_or_path))
    if not name:
        raise ConfigError("give --tokenizer (a hub id or folder) or --config (its model's tokenizer)")
    tokenizer = AutoTokenizer.from_pretrained(name)
    specs = [get_task(t) for t in args.tasks]
    data = dict(source=None, root=cfg.data.root if cfg else None, xtreme_dir=cfg.data.xtreme_dir if cfg else None)
    rows = []
    for spec in specs:
        phase = _phase_of(cfg, spec.name)
        lengths = dict(max_length=args.max_length or (phase and phase.max_length) or spec.max_length)
        if spec.task_format.windowed:
            lengths.update(doc_stride=phase.doc_stride if phase else spec.doc_stride,
                           max_query_length=phase.max_query_length if phase else spec.max_query_length)
        source = cfg.data.sources.get(spec.name) if cfg else None
        splits = [args.split] if args.split else list(spec.splits())
        if args.split and args.split not in spec.splits() and not getattr(source, "path", None):
            log(f"task {spec.name} has no {args.split} split (it has {', '.join(spec.splits())}); skipped")
            splits = []
        for split in splits:
            langs = [lang for lang in spec.split_languages(split) if not args.languages or lang in args.languages]
            for lang in langs:
                kw = {**data, "source": source}
                if not spec.task_format.has_head:
                    sides = load_bitext(spec, split, lang, **kw)
                    sides = {lang: sides.source, "en": sides.target}
                else:
                    sides = {lang: load_examples(spec, split, lang, **kw)}
                for side_lang, examples in sides.items():
                    train = split == "train"
                    feats = featurize(examples, spec, tokenizer, train=train, **lengths)
                    report = data_report(spec, split, side_lang, examples, feats, train=train)
                    label = lang if side_lang == lang else f"{lang}:en"
                    rows.append({"task": spec.name, "split": split, "lang": label,
                                 **{k: v for k, v in report.items() if k != "length"}, **report["length"]})
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    table = [COLUMNS] + [tuple(str(r.get(c, "-")) for c in COLUMNS) for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS))]
    for r in table:
        print("  ".join(cell.rjust(w) if i > 2 else cell.ljust(w) for i, (cell, w) in
                        enumerate(zip(r, widths))).rstrip())
    return 0
