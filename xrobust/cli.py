"""The `xrobust` command. Each area registers its subcommands from its own module."""

from __future__ import annotations

import argparse
import importlib
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
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xrobust", description=__doc__)
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except XRobustError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
