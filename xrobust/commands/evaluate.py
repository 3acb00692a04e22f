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

from ..config import add_overrides


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
    from xrobust.evaluation.results import results_from_official, write_results
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
    from xrobust.evaluation.report import compare_markdown
    from xrobust.evaluation.results import load_results
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


def _add_run_selection(p, tasks_help: str) -> None:
    """Which run, tasks, languages and split: shared by eval and robustness."""
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", "--run-dir", dest="run", help="a run directory written by `xrobust pipeline` "
                       "(spell it --run-dir under torchrun, whose parser takes --run for its own --run-path)")
    which.add_argument("--config", help="the run's config (its directory is output_dir/name)")
    add_overrides(p, "evaluation.batch_size=16")
    p.add_argument("--tasks", nargs="+", help=tasks_help)
    p.add_argument("--languages", nargs="+", help="languages (default: every language of each task)")
    p.add_argument("--split", choices=("dev", "test"), help="default: the config's evaluation.split")


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", aliases=["evaluate"],
                       help="zero-shot evaluation of a trained run on every language of its tasks")
    _add_run_selection(p, tasks_help="tasks to evaluate (default: the config's evaluation.tasks)")
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
    from xrobust.training.signals import FLAG

    FLAG.install()  # a signal from here on stops the evaluation cleanly (before its next batch)
    from xrobust.evaluation.report import xtreme_markdown
    from xrobust.evaluation.run import evaluate_run
    from xrobust import distributed as dist
    from xrobust.training.rundir import locked_run

    cfg, run = load_run_config(args)
    dist.init_distributed()
    with locked_run(run):
        tracker = None
        if cfg.tracking.mode != "disabled":  # results go to the W&B run the training logged to
            from xrobust.config import to_dict
            from xrobust.tracking.wandb_run import Tracker

            tracker = Tracker(to_dict(cfg), run, dist.rank(), resume_step=0)
        try:
            results = evaluate_run(cfg, run, tasks=args.tasks, languages=args.languages, split=args.split,
                                   tracker=tracker)
        finally:
            if tracker:
                tracker.finish()
    if dist.is_main():
        print(xtreme_markdown(results, title=f"Zero-shot results: {run}"))
        from xrobust.evaluation.results import results_dir

        print(f"results: {results_dir(run, args.split or cfg.evaluation.split) / 'results.json'}")
    return 0


def _add_robustness(sub) -> None:
    from ..adversarial.strategies import NOISES
    from ..evaluation.robustness import ATTACKS
    from ..kernels.api import BACKENDS, NORMS

    DEFAULT_EPS = (0.0, 0.01, 0.05, 0.1, 0.3, 1.0)
    p = sub.add_parser("robustness", help="metric vs eps under embedding noise and embedding-space PGD per "
                                          "language; --crosslingual: the premise x hypothesis language matrix")
    _add_run_selection(p, tasks_help="tasks (default: the config's evaluation.tasks with a head)")
    p.add_argument("--max-examples", type=int, help="per language (default: evaluation.max_examples)")
    p.add_argument("--eps", type=float, nargs="+", default=list(DEFAULT_EPS),
                   help=f"perturbation sizes (default: {' '.join(f'{e:g}' for e in DEFAULT_EPS)})")
    p.add_argument("--attack", nargs="+", choices=ATTACKS, default=list(ATTACKS), help="default: noise pgd")
    p.add_argument("--norm", choices=NORMS, default="l2", help="l2: per-example norm over tokens x hidden; linf")
    p.add_argument("--noise", choices=NOISES, default="uniform",
                   help="uniform: FreeLB's init scaling; normal: Gaussian with E||delta||^2 = eps^2 (l2)")
    p.add_argument("--pgd-steps", type=int, default=3, help="PGD ascent steps K (default 3)")
    p.add_argument("--pgd-step-size", type=float, help="PGD step (default 2.5 * eps / K)")
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    p.add_argument("--kernel-backend", default="auto", choices=BACKENDS,
                   help="perturbation_step / perturbation_init backend")
    p.add_argument("--crosslingual", action="store_true",
                   help="also the generalized cross-lingual matrix (xnli, pawsx, demo_xnli)")
    p.add_argument("--crosslingual-only", action="store_true", help="only the cross-lingual matrix")
    p.add_argument("--out", help="output directory (default: RUN/robustness)")
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=_run_robustness)


def _run_robustness(args) -> int:
    from xrobust import distributed as dist
    from xrobust.training.rundir import locked_run

    cfg, run = load_run_config(args)
    out = Path(args.out) if args.out else run / "robustness"
    dist.init_distributed()
    with locked_run(run):
        _robustness(args, cfg, run, out)
    if dist.is_main():
        print(f"written: {out}")
    return 0


def _robustness(args, cfg, run: Path, out: Path) -> None:
    from xrobust.evaluation.crosslingual import CROSSLINGUAL_TASKS, crosslingual_markdown, evaluate_crosslingual
    from xrobust.evaluation.robustness import Attack, evaluate_robustness, robustness_markdown
    from xrobust import distributed as dist

    if not args.crosslingual_only:
        attacks = [Attack(kind, norm=args.norm, noise=args.noise, steps=args.pgd_steps, step_size=args.pgd_step_size,
                          seed=args.seed, backend=args.kernel_backend) for kind in dict.fromkeys(args.attack)]
        result = evaluate_robustness(cfg, run, tasks=args.tasks, languages=args.languages, split=args.split,
                                     eps=args.eps, attacks=attacks, max_examples=args.max_examples, out_dir=out)
        if dist.is_main():
            print(robustness_markdown(result, title=f"Robustness: {run}"))
    if args.crosslingual or args.crosslingual_only:
        tasks = [t for t in args.tasks if t in CROSSLINGUAL_TASKS] if args.tasks else None
        if args.tasks and not tasks:
            raise XRobustError(f"--crosslingual: none of --tasks {' '.join(args.tasks)} has a generalized "
                               f"cross-lingual setting (expected some of {', '.join(CROSSLINGUAL_TASKS)})")
        result = evaluate_crosslingual(cfg, run, tasks=tasks, languages=args.languages, split=args.split,
                                       max_examples=args.max_examples, out_dir=out)
        if dist.is_main():
            print(crosslingual_markdown(result, title=f"Generalized cross-lingual accuracy: {run}"))


SUBCOMMANDS = [_add_score, _add_compare, _add_eval, _add_robustness]


def add_parsers(sub) -> None:
    for add in SUBCOMMANDS:
        add(sub)
