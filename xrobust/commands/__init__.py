"""CLI subcommands, one module per area (training's `train` and `pipeline` are xrobust.pipeline's);
the argument helper they share (--set is xrobust.config.add_overrides)."""

from __future__ import annotations


def add_command(subparsers, name: str, help: str, run, *shared):
    """A subcommand that calls run(args), with the arguments each of `shared` adds (f(parser))."""
    parser = subparsers.add_parser(name, help=help)
    parser.set_defaults(func=run)
    for add in shared:
        add(parser)
    return parser
