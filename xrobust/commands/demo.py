"""`xrobust demo`: the whole pipeline on the embedded default world, on 2 CPU ranks under ZeRO-3.

Nothing is downloaded: the world (synthetic languages, tokenizer, tiny XLM-R) is generated, a short
multilingual masked-LM phase gives the encoder cross-lingual structure, then the `demo` preset runs
intermediate multi-task training, target training and zero-shot evaluation through the launcher.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from ..errors import XRobustError


def add_parsers(sub) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline on the embedded default (no downloads)")
    p.add_argument("--out", default="runs", help="output folder (default: runs/)")
    p.add_argument("--adversarial", default="none", metavar="METHOD",
                   help="adversarial method for both phases: none, fgm, pgd, freelb, smart, r3f, rs-rp, rs-da")
    p.add_argument("--ranks", type=int, default=2, help="DeepSpeed ranks (CPU processes), default 2")
    p.add_argument("--launcher", choices=("torchrun", "deepspeed"), default="torchrun")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true")
    mode.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=demo)


def demo_overrides(world: dict, out: Path, name: str, method: str) -> list[str]:
    sets = [f"name={name}", f"output_dir={out}", f"model.name_or_path={world['encoder']}",
            f"data.root={world['data_root']}", f"data.cache_dir={Path(out) / 'demo-world' / 'cache'}"]
    if method != "none":
        sets += [f"phases.intermediate.adversarial.method={method}", f"phases.target.adversarial.method={method}"]
        if method == "rs-da":
            from ..demo.neighbours import write_demo_neighbours

            path = Path(world["root"]) / "neighbours.tsv"
            write_demo_neighbours(path)
            sets += [f"phases.intermediate.adversarial.neighbours={path}",
                     f"phases.target.adversarial.neighbours={path}"]
    return sets


def launch_command(launcher: str, ranks: int, cli_args: list[str]) -> list[str]:
    if launcher == "deepspeed":
        return ["deepspeed", "--num_gpus", str(ranks), "--module", "xrobust.cli", *cli_args]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks),
            "--standalone", "-m", "xrobust.cli", *cli_args]  # --standalone: torchrun picks a free port


def run_launcher(command: list[str], env: dict) -> tuple[int, bool]:
    """Run the launcher in its own session and pass it one Ctrl-C or SIGTERM: it stops its ranks (they
    checkpoint, as on preemption) and the demo waits for that, instead of killing the launcher and
    leaving its ranks behind. Returns (exit code, whether a signal came)."""
    proc = subprocess.Popen(command, env=env, start_new_session=True)  # the terminal's Ctrl-C reaches only us
    received = []

    def forward(signum, _frame):
        received.append(signum)
        proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return proc.wait(), bool(received)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def demo(args) -> int:
    from ..config import load_config
    from ..config.schema import CHOICES
    from ..demo.world import prepare_world
    from ..evaluation.report import chance_levels, summary_markdown
    from ..evaluation.results import load_results

    methods = CHOICES["adversarial.method"]
    if args.adversarial not in methods:  # before the world is built (tens of seconds)
        raise XRobustError(f"--adversarial: unknown method {args.adversarial!r}; expected one of {', '.join(methods)}")
    load_config("demo", list(args.overrides))  # a bad --set, too
    out = Path(args.out)
    name = "demo" if args.adversarial == "none" else f"demo-{args.adversarial}"
    # the demo runs on CPU: say so before anything imports DeepSpeed, which otherwise probes for
    # an accelerator and logs a warning about not finding one
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    world = prepare_world(out)
    sets = demo_overrides(world, out, name, args.adversarial) + list(args.overrides)
    cfg = load_config("demo", sets)  # fail here, before any process starts, on a bad override
    cli_args = ["pipeline", "--config", "demo"] + [a for s in sets for a in ("--set", s)]
    if args.resume:
        cli_args.append("--resume")
    if args.overwrite:
        cli_args.append("--overwrite")
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    run_dir = Path(cfg.output_dir) / cfg.name  # a --set name=... or output_dir=... of the user's wins
    env.setdefault("WANDB_DIR", str(run_dir))
    for var in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
        env.setdefault(var, str(out / "demo-world" / "wandb"))
    returncode, interrupted = run_launcher(launch_command(args.launcher, args.ranks, cli_args), env)
    if interrupted:
        raise XRobustError(f"demo interrupted (exit code {returncode}); continue it with `xrobust demo --resume` "
                           f"(run directory: {run_dir})")
    if returncode != 0:
        raise XRobustError(f"demo pipeline failed with exit code {returncode} (run directory: {run_dir})")
    results, chance = load_results(run_dir / "results.json"), chance_levels(run_dir / "labels")
    print(summary_markdown(results, title=f"Zero-shot results: {name}", chance=chance))
    print(f"per-task tables, settings and heatmap: {run_dir / 'report.md'}")
    print(f"run directory: {run_dir}")
    return 0
