"""`xrobust train` (one phase) and `xrobust pipeline` (every phase, then zero-shot evaluation)."""

from __future__ import annotations

import argparse


def _common(p) -> None:
    p.add_argument("--config", required=True, help="a YAML file or the name of a shipped preset")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override, e.g. phases.target.lr=2e-5 (repeatable)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue an existing run from its last checkpoint")
    mode.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--accept-config-change", action="store_true",
                   help="with --resume: continue although the config differs from the run's recorded one in keys "
                        "that change training (the change is recorded in config_changes.jsonl)")
    p.add_argument("--fresh-if-nothing-to-resume", action="store_true",
                   help="with --resume: start the run (or a phase that has no checkpoint) from step 0 instead of "
                        "stopping with an error")
    # the deepspeed launcher appends --local_rank; the rank is read from the environment instead
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)


def add_parsers(sub) -> None:
    p = sub.add_parser("train", help="run one training phase of a config")
    _common(p)
    p.add_argument("--phase", help="which phase to run (default: the config's only phase)")
    p.set_defaults(func=train)
    p = sub.add_parser("pipeline", help="run every phase in order, then zero-shot evaluation")
    _common(p)
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation at the end")
    p.set_defaults(func=pipeline)


def _run(cfg, args, phases, evaluate: bool) -> int:
    from ..errors import ConfigError
    from ..pipeline import run

    for flag in ("accept_config_change", "fresh_if_nothing_to_resume"):
        if getattr(args, flag) and not args.resume:
            raise ConfigError(f"--{flag.replace('_', '-')} only applies with --resume")
    root = run(cfg, phases=phases, evaluate=evaluate, resume=args.resume, overwrite=args.overwrite,
               accept_config_change=args.accept_config_change,
               fresh_if_nothing_to_resume=args.fresh_if_nothing_to_resume)
    from .. import distributed as dist

    if dist.is_main():
        print(f"run directory: {root}", flush=True)
    return 0


def train(args) -> int:
    from ..training.signals import FLAG

    FLAG.install()
    from ..config import load_config
    from ..errors import ConfigError

    cfg = load_config(args.config, args.overrides)
    phase = args.phase
    if phase is None:
        if len(cfg.phases) != 1:
            raise ConfigError(f"{args.config}: has phases {', '.join(cfg.phases)}; choose one with --phase "
                              "(or run them all with `xrobust pipeline`)")
        phase = next(iter(cfg.phases))
    return _run(cfg, args, [phase], evaluate=False)


def pipeline(args) -> int:
    from ..training.signals import FLAG

    FLAG.install()
    from ..config import load_config

    return _run(load_config(args.config, args.overrides), args, None, evaluate=not args.no_eval)
