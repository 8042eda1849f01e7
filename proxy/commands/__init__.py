"""The ``wheelmeld`` subcommands: one module each, each with ``register(subparsers)``.

A module's ``register`` adds its parser and sets ``run`` (``args -> exit code``) as its default;
``proxy.cli`` wires them together, names each parser's command in ``args.command_name`` and maps
``ConfigError`` to exit status 2. Every refusal is one line on stderr,
``wheelmeld <command>: error: <reason>``: the form argparse already uses for bad arguments.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["report_error", "report_warning"]


def report_error(args: argparse.Namespace, reason: str, status: int = 2) -> int:
    """Print ``wheelmeld <command>: error: <reason>`` and return ``status`` for the command to exit with."""
    print(f"{args.command_name}: error: {reason}", file=sys.stderr)
    return status


def report_warning(args: argparse.Namespace, reason: str) -> None:
    print(f"{args.command_name}: warning: {reason}", file=sys.stderr)
