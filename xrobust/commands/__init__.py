"""CLI subcommands, one module per area; the argument helpers they share."""

from __future__ import annotations


def add_overrides(parser, example: str = "phases.target.lr=2e-5") -> None:
    """--set KEY=VALUE, repeatable: a dotted override of the config, for every command that reads one."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"dotted override of the config, e.g. {example} (repeatable)")


def add_command(subparsers, name: str, help: str, run, *shared):
    """A subcommand that calls run(args), with the arguments each of `shared` adds (f(parser))."""
    parser = subparsers.add_parser(name, help=help)
    parser.set_defaults(func=run)
    for add in shared:
        add(parser)
    return parser
