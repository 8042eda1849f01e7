"""The ``wheelmeld`` command line: one subcommand per module of ``proxy.commands``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from proxy import __version__
from proxy.commands import audit, bundle, cache, prefetch, serve
from proxy.errors import ConfigError

__all__ = ["build_parser", "main"]

# Each module registers its own subcommand; add new ones here.
_COMMANDS = (serve, cache, audit, prefetch, bundle)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wheelmeld",
        description="Caching simple-index proxy serving every wheel the meld of its siblings' metadata.",
    )
    parser.add_argument("--version", action="version", version=f"wheelmeld {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _COMMANDS:
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except ConfigError as exc:
        print(f"wheelmeld: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
