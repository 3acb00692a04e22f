"""`xrobust study plan|submit|status|report|demo`: a grid of runs with confidence intervals (docs/STUDIES.md)."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from ..errors import LaunchError, XRobustError


def _common(p) -> None:
    p.add_argument("--config", required=True, help="study config: a YAML file (base: + study:) or a preset")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override of the base experiment config (dotted key), repeatable")


def add_parsers(sub) -> None:
    study = sub.add_parser("study", help="plan, run and report a grid of runs (intermediate x method x seed)")
    cmds = study.add_subparsers(dest="study_command", required=True)

    p = cmds.add_parser("plan", help="the cells, the shared work, the job graph and the cost estimate")
    _common(p)
    p.add_argument("--throughput", help="a `xrobust bench train --json` file (default: study.throughput)")
    p.set_defaults(func=cmd_plan)

    p = cmds.add_parser("submit", help="run every unit not yet done: Slurm job arrays or one after another here")
    _common(p)
    p.add_argument("--executor", choices=("auto", "slurm", "local"), default="auto",
                   help="auto: slurm where sbatch is on PATH, else local")
    p.add_argument("--retry-failed", action="store_true",
                   help="run again the units that failed, were preempted or were blocked by a failed dependency "
                        "(without it, units submitted before are not resubmitted; locally, interrupted units "
                        "continue in any case)")
    p.add_argument("--var", dest="vars", action="append", default=[], metavar="[LEVEL:]NAME=VALUE",
                   help="sbatch template variable for every level's array, or one level's (e.g. 2:TIME=4:00:00)")
    p.add_argument("--dry-run", action="store_true", help="slurm: write the scripts, submit nothing")
    p.add_argument("--ranks", type=int, default=1, help="local: processes per run (torchrun when > 1)")
    p.add_argument("--jobs", type=int, default=1, help="local: units run at the same time (each with --ranks "
                                                       "processes), as their dependencies allow")
    p.set_defaults(func=cmd_submit)

    p = cmds.add_parser("status", help="per unit: done / running / pending / blocked / failed (with its error)")
    _common(p)
    p.set_defaults(func=cmd_status)

    p = cmds.add_parser("report", help="means over seeds and differences with paired-bootstrap intervals")
    _common(p)
    p.add_argument("--out", help="output folder (default: <study dir>/report)")
    p.add_argument("--samples", type=int, help="bootstrap replicates (default: study.bootstrap.samples)")
    p.add_argument("--seed", type=int, help="bootstrap seed (default: study.bootstrap.seed)")
    p.add_argument("--confidence", type=float, help="interval level (default: study.bootstrap.confidence)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="processes that read the runs' prediction files (once per run; then cached)")
    p.add_argument("--no-wandb", action="store_true", help="do not log the report to a study-level W&B run")
    p.set_defaults(func=cmd_report)

    p = cmds.add_parser("demo", help="a small study on the embedded demo world, run here, with its report")
    p.add_argument("--out", default="runs", help="output folder (default: runs/)")
    p.add_argument("--ranks", type=int, default=1, help="processes per run (torchrun when > 1)")
    p.add_argument("--jobs", type=int, default=2, help="runs at the same time (default 2: one per core of a "
                                                       "2-core machine, each run single-threaded)")
    p.add_argument("--retry-failed", action="store_true", help="run again the units that failed")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=cmd_demo)

    p = cmds.add_parser("encoder", help="(a study's job) evaluate the base encoder, untrained, on the config's "
                                        "evaluation tasks")
    p.add_argument("--config", required=True, help="the pretrained unit's config")
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_encoder)


def _plan(args):
    from ..study.plan import build_plan
    from ..study.spec import load_study

    return build_plan(load_study(args.config, args.overrides))


def plan_text(plan, throughput_file: str | None = None) -> str:
    from ..study.cost import gpu_hours, throughput, training_runs
    from ..study.plan import is_retrieval

    study = plan.study
    retrieval = [t for t in study.targets if is_retrieval(t)]
    lines = [f"study {study.name} ({study.root})",
             f"grid: {len(study.intermediate)} intermediate x {len(study.methods)} methods x {len(study.seeds)} seeds"
             f" = {len(plan.runs)} cell runs in {len(study.cells)} cells; baseline {'/'.join(study.baseline)}",
             f"  intermediate: {', '.join(study.intermediate)}",
             f"  method: {', '.join(study.methods)} (applied to phases: {', '.join(study.method_phases)})",
             f"  seeds: {', '.join(map(str, study.seeds))}",
             f"  targets: {', '.join(study.targets)}"
             + (f" (retrieval, scored on the encoder without target training: {', '.join(retrieval)})"
                if retrieval else "")]
    runs = training_runs(plan, study.train_examples)
    lines += ["", "training runs per phase:", f"  {'phase':<24} {'runs':>5}  {'steps/run':>10}  tasks of a run"]
    by_phase: dict = {p: [] for p in study.base.phases}
    for r in runs:
        by_phase.setdefault(r.phase, []).append(r)
    for phase, rs in by_phase.items():
        if not rs:
            continue
        groups = sorted({", ".join(r.tasks) for r in rs})
        steps = sorted({r.steps for r in rs}, key=lambda s: (s is None, s))
        lines.append(f"  {phase:<24} {len(rs):>5}  {'/'.join('?' if s is None else str(s) for s in steps):>10}  "
                     + " | ".join(groups))
    evals = [u for u in plan.units.values() if u.evaluates]
    lines.append(f"  {'evaluation':<24} {len(evals):>5}  {'':>10}  "
                 + " | ".join(sorted({', '.join(u.evaluates) for u in evals})))
    kinds: dict = {}
    for u in plan.units.values():
        kinds[u.kind] = kinds.get(u.kind, 0) + 1
    lines += ["", "units (each one run directory): " + ", ".join(f"{n} {k}" for k, n in kinds.items())]
    if plan.aliases:
        lines.append(f"  shared: {len(plan.aliases)} unit(s) are the same runs as another one, e.g. "
                     + ", ".join(f"{a} = {b}" for a, b in list(plan.aliases.items())[:3]))
    lines += ["", "job graph (one Slurm array per level):"]
    for level_units in plan.levels():
        level = level_units[0].level
        needs = sorted({plan.units[d].level for u in level_units for d in u.deps})
        count: dict = {}
        for u in level_units:
            count[u.kind] = count.get(u.kind, 0) + 1
        lines.append(f"  level {level}: array of {len(level_units)} ("
                     + ", ".join(f"{n} {k}" for k, n in count.items()) + ")"
                     + (f", afterok on level {', '.join(map(str, needs))}" if needs else ""))
    rate = throughput(throughput_file or study.throughput, str(study.source))
    hours = gpu_hours(runs, rate)
    unknown = sorted({t for r in runs if r.steps is None for t in r.tasks})
    lines.append("")
    if hours is not None:
        lines.append(f"estimate: {hours:,.1f} GPU-hours of training ({rate[0]:,.0f} tokens/s on {rate[1]} GPU(s) "
                     "for plain training, padded tokens, adversarial passes counted; evaluation not included)")
    elif unknown:
        lines.append(f"estimate: unknown: no training-set size for {', '.join(unknown)} (study.train_examples)")
    else:
        tokens = sum(r.tokens * r.passes for r in runs)
        lines.append(f"estimate: {tokens:,.3g} padded training tokens (x adversarial passes); give study.throughput"
                     " or --throughput BENCH.json for GPU-hours")
    return "\n".join(lines)


def cmd_plan(args) -> int:
    print(plan_text(_plan(args), args.throughput))
    return 0


def _slurm_vars(items: list[str]) -> dict[str, dict[str, str]]:
    from ..launch.slurm import parse_vars

    out: dict[str, dict[str, str]] = {"all": {}}
    for key, value in parse_vars(items).items():
        level, _, name = key.rpartition(":")
        if level and not level.isdigit():
            raise LaunchError(f"--var {key}={value}: expected NAME=VALUE or LEVEL:NAME=VALUE with a level number")
        out.setdefault(level or "all", {})[name] = value
    return out


def cmd_submit(args) -> int:
    from ..study.execute import LocalExecutor, latest_jobs, prepare, submit_slurm
    from ..study.status import study_status

    plan = _plan(args)
    executor = args.executor
    if executor == "auto":
        executor = "slurm" if shutil.which("sbatch") else "local"
        print(f"executor: {executor} ({'sbatch found' if executor == 'slurm' else 'no sbatch on PATH'})")
    prepare(plan)
    if executor == "local":
        states = LocalExecutor(plan, ranks=args.ranks, retry_failed=args.retry_failed, jobs=args.jobs).run()
        counts: dict = {}
        for s in states.values():
            counts[s] = counts.get(s, 0) + 1
        print(f"study {plan.study.name}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
        return 0 if all(s == "done" for s in states.values()) else 1
    rows = study_status(plan)
    live = [r for r in rows if r.state in ("running", "pending")]
    if live:
        raise LaunchError(f"study {plan.study.name}: {len(live)} unit(s) still queued or running (e.g. {live[0].key}, "
                          f"job {live[0].job}); wait for them (`xrobust study status`) or scancel them first")
    earlier = latest_jobs(plan)
    todo = [r for r in rows if r.state != "done"]
    again = [r for r in todo if r.key in earlier]
    if again and not args.retry_failed:
        raise LaunchError(f"study {plan.study.name}: {len(again)} unit(s) were submitted before and did not finish "
                          f"(e.g. {again[0].key}: {again[0].state} {again[0].detail}); resubmit them with "
                          "--retry-failed")
    if not todo:
        print(f"study {plan.study.name}: every unit is done; `xrobust study report --config {args.config}`")
        return 0
    blocked = sorted({r.job.split("_")[0] for r in todo if r.state == "blocked" and r.job})
    if blocked and not args.dry_run:
        import subprocess

        subprocess.run(["scancel", *blocked], check=False)  # they wait on a dependency that can never succeed
    arrays = submit_slurm(plan, [r.key for r in todo], _slurm_vars(args.vars), dry_run=args.dry_run)
    for a in arrays:
        dep = f" --dependency={a['dependency']}" if a["dependency"] else ""
        print(f"level {a['level']}\t{a['job']}\t{len(a['units'])} unit(s)\tsbatch --parsable{dep} {a['script']}")
    return 0


def cmd_status(args) -> int:
    from ..study.status import status_table, study_status

    plan = _plan(args)
    print(status_table(study_status(plan)), end="")
    return 0


def cmd_report(args) -> int:
    from ..study.report import build_report, log_to_wandb, markdown, write_report

    plan = _plan(args)
    bs = plan.study.bootstrap
    report = build_report(plan, samples=args.samples or bs["samples"],
                          seed=bs["seed"] if args.seed is None else args.seed,
                          confidence=args.confidence or float(bs["confidence"]), workers=max(1, args.workers))
    out = Path(args.out) if args.out else plan.study.root / "report"
    write_report(report, out)
    print(markdown(report))
    if not args.no_wandb:
        run = log_to_wandb(report, plan, out)
        if run:
            print(f"W&B run {run} (group {plan.study.name}) in {out}")
    print(f"report: {out / 'report.md'}")
    return 0


def cmd_encoder(args) -> int:
    from ..config import load_config
    from ..study.encoder import evaluate_base_encoder

    root = evaluate_base_encoder(load_config(args.config))
    print(f"run directory: {root}")
    return 0


def demo_study_config(out: Path) -> Path:
    """The shipped demo_study config with the demo world filled in (built here once, as `xrobust demo`)."""
    import yaml

    from ..demo.world import prepare_world
    from ..config.loader import study_path
    from ..io import atomic_write_text

    world = prepare_world(out)
    data = yaml.safe_load(study_path("demo_study").read_text(encoding="utf-8"))
    data["output_dir"] = str(out)
    data.setdefault("model", {})["name_or_path"] = str(world["encoder"])
    data.setdefault("data", {}).update(root=str(world["data_root"]), cache_dir=str(out / "demo-world" / "cache"))
    path = out / "demo-study.yaml"
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
    return path


def cmd_demo(args) -> int:
    import time

    out = Path(args.out)
    t0 = time.time()
    config = demo_study_config(out)
    for var in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
        os.environ.setdefault(var, str(out / "demo-world" / "wandb"))
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # as `xrobust demo`: a tiny model, one thread per rank
    ns = argparse.Namespace(config=str(config), overrides=args.overrides)
    plan = _plan(ns)
    print(plan_text(plan), flush=True)
    from ..study.execute import LocalExecutor, prepare

    prepare(plan)
    states = LocalExecutor(plan, ranks=args.ranks, retry_failed=args.retry_failed, jobs=args.jobs).run()
    if not all(s == "done" for s in states.values()):
        failed = [k for k, s in states.items() if s != "done"]
        raise XRobustError(f"demo study: {len(failed)} unit(s) did not finish ({', '.join(failed[:4])}); "
                           f"see {plan.study.root / 'logs'}; run again to resume")
    code = cmd_report(argparse.Namespace(config=str(config), overrides=args.overrides, out=None, samples=None,
                                         seed=None, confidence=None, workers=os.cpu_count() or 1, no_wandb=False))
    print(f"demo study: {time.time() - t0:.0f} s wall, config {config}", file=sys.stderr)
    return code
