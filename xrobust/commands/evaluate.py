"""Evaluation commands: `xrobust score` (official XTREME scorer) and `xrobust compare` (runs).

Each subcommand registers itself through one `_add_<name>(sub)` function listed in
SUBCOMMANDS; model-dependent ones (eval, robustness) are added the same way.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from xrobust.errors import XRobustError


def _add_score(sub) -> None:
    p = sub.add_parser(
        "score",
        help="score an XTREME submission folder against gold labels (same numbers as the official evaluate.py)",
    )
    p.add_argument("--prediction-folder", required=True, help="predictions/<task>/test-<lang>.tsv|json")
    p.add_argument("--label-folder", required=True, help="gold files in the same layout")
    p.add_argument("--output-file", required=True, help="JSON output: group scores, then per-task objects")
    p.add_argument("--results-file", help="also write the scores in the results.json layout (for `compare`)")
    p.set_defaults(func=_run_score)


def _run_score(args) -> int:
    from xrobust.evaluation.report import results_from_official, write_results
    from xrobust.evaluation.scorer import score_folder
    from xrobust.io import atomic_write_json

    scores = score_folder(args.prediction_folder, args.label_folder)
    atomic_write_json(args.output_file, scores)
    if args.results_file:
        write_results(args.results_file, results_from_official(scores))
    for key, value in scores.items():
        if isinstance(value, (int, float)):
            print(f"{key}: {value:.2f}")
        else:
            print(f"{key}: {value['avg_metric']:.2f}")
    return 0


def _add_compare(sub) -> None:
    p = sub.add_parser("compare", help="side-by-side table of runs' results.json, delta plots")
    p.add_argument("runs", nargs="+", help="run directories (holding results.json) or results.json files")
    p.add_argument("--names", help="comma-separated labels for the runs (default: directory names)")
    p.add_argument("--out", help="directory for compare.md and delta_<run>.png (each run against the first)")
    p.set_defaults(func=_run_compare)


def _run_names(paths: list[str], names: str | None) -> list[str]:
    if names:
        out = [n.strip() for n in names.split(",")]
        if len(out) != len(paths):
            raise XRobustError(f"--names: {len(out)} names for {len(paths)} runs")
    else:
        out = []
        for p in paths:
            path = Path(p)
            out.append(path.parent.name if path.is_file() else path.name or str(path))
    # Duplicate labels would collapse columns: suffix them.
    seen: dict[str, int] = {}
    unique = []
    for n in out:
        seen[n] = seen.get(n, 0) + 1
        unique.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return unique


def _run_compare(args) -> int:
    from xrobust.evaluation.plots import delta_png
    from xrobust.evaluation.report import compare_markdown, load_results
    from xrobust.io import atomic_write_text

    if len(args.runs) < 2:
        raise XRobustError("compare needs at least two runs")
    names = _run_names(args.runs, args.names)
    runs = {n: load_results(p) for n, p in zip(names, args.runs)}
    table = compare_markdown(runs)
    print(table, end="")
    if args.out:
        out = Path(args.out)
        atomic_write_text(out / "compare.md", table)
        base = names[0]
        for n in names[1:]:
            safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", n)
            delta_png(runs[base], runs[n], out / f"delta_{safe}.png", base, n)
        print(json.dumps({"written": str(out)}))
    return 0


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", aliases=["evaluate"],
                       help="zero-shot evaluation of a trained run on every language of its tasks")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", help="a run directory written by `xrobust pipeline`")
    which.add_argument("--config", help="the run's config (its directory is output_dir/name)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override of the config, e.g. evaluation.tasks=[xnli]")
    p.add_argument("--tasks", nargs="+", help="tasks to evaluate (default: the config's evaluation.tasks)")
    p.add_argument("--languages", nargs="+", help="languages (default: every language of each task)")
    p.add_argument("--split", choices=("dev", "test"), help="default: the config's evaluation.split")
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=_run_eval)


def load_run_config(args):
    """(config, run directory) from --run RUN_DIR or --config FILE."""
    from xrobust.config import load_config
    from xrobust.pipeline import run_root

    if args.config:
        cfg = load_config(args.config, args.overrides)
        return cfg, run_root(cfg)
    path = Path(args.run) / "config.yaml"
    if not path.is_file():
        raise XRobustError(f"{path}: missing; expected a run directory written by `xrobust pipeline`")
    return load_config(str(path), args.overrides), Path(args.run)


def _run_eval(args) -> int:
    from xrobust.evaluation.report import xtreme_markdown
    from xrobust.evaluation.run import evaluate_run
    from xrobust.training import distributed as dist

    cfg, run = load_run_config(args)
    dist.init_distributed()
    results = evaluate_run(cfg, run, tasks=args.tasks, languages=args.languages, split=args.split)
    if dist.is_main():
        print(xtreme_markdown(results, title=f"Zero-shot results: {run}"))
        print(f"results: {run / 'results.json'}")
    return 0


SUBCOMMANDS = [_add_score, _add_compare, _add_eval]


def add_parsers(sub) -> None:
    for add in SUBCOMMANDS:
        add(sub)
