"""The `xrobust` command. Each area registers its subcommands from its own module."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .errors import XRobustError

# module path -> each exposes add_parsers(subparsers); a handler is set with set_defaults(func=...)
COMMAND_MODULES = [
    "xrobust.commands.tasks",
    "xrobust.commands.train",
    "xrobust.commands.demo",
    "xrobust.commands.evaluate",
    "xrobust.commands.bench",
    "xrobust.commands.slurm",
    "xrobust.commands.wandb",
    "xrobust.commands.study",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xrobust", description=__doc__)
    # `deepspeed --module xrobust.cli` puts --local_rank before the subcommand; ranks come from the env
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.add_parsers(sub)
    return parser


def _quiet_libraries() -> None:
    """Our own progress bars show the work; the libraries' per-file bars and advisories are noise."""
    for var in ("HF_DATASETS_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: list[str] | None = None) -> int:
    _quiet_libraries()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except XRobustError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
