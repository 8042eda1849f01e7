"""The ``wheelmeld`` command line: one subcommand per module of ``proxy.commands``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from proxy import __version__
from proxy.commands import audit, auth, bundle, cache, prefetch, report_error, serve
from proxy.errors import ConfigError

__all__ = ["build_parser", "main"]

# Each module registers its own subcommand; add new ones here.
_COMMANDS = (serve, cache, audit, prefetch, bundle, auth)


def _name_commands(parser: argparse.ArgumentParser) -> None:
    """``args.command_name`` = the full name of the (innermost) command parsed: ``wheelmeld cache stats``."""
    parser.set_defaults(command_name=parser.prog)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _name_commands(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wheelmeld",
        description="Caching simple-index proxy serving every wheel the meld of its siblings' metadata.",
    )
    parser.add_argument("--version", action="version", version=f"wheelmeld {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _COMMANDS:
        module.register(commands)
    _name_commands(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except ConfigError as exc:
        return report_error(args, exc.reason)
    except KeyboardInterrupt:
        return 130
