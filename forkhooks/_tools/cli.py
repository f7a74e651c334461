"""The ``forkhooks`` command: one subcommand per module.

Adding a subcommand is one line in COMMANDS plus a module that provides
``HELP`` (a one-line str), ``EPILOG`` (its exit statuses), ``add_arguments(parser)``
and ``run(args) -> int`` (the exit code). Modules are imported to build the parser, so keep their
top-level imports light (stdlib only) and import heavy things inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

COMMANDS: dict[str, str] = {
    "demo": "forkhooks.demo.run",
    "check": "forkhooks._tools.budget",
    "connections": "forkhooks._tools.backends",
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand in COMMANDS."""
    parser = argparse.ArgumentParser(
        prog="forkhooks", description="Make database connections safe across fork() in pre-forking servers."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(
            name,
            help=module.HELP,
            description=module.__doc__,
            epilog=getattr(module, "EPILOG", None),  # the exit statuses
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, run the subcommand and return its exit code."""
    args = build_parser().parse_args(argv)
    return int(args.run(args))
