"""Command-line options every tool shares: where the cache is and which routes exist.

The tools read the same configuration ``wheelmeld serve`` reads (``--config`` file, ``--route``,
``WHEELMELD_*``), so a lock URL maps to the routes the server will later serve it under, and the
cache the tools fill or read is the one the server uses.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from proxy.config import CliOverrides, Config, load_config

__all__ = ["add_cache_options", "tool_config"]


def add_cache_options(parser: argparse.ArgumentParser, *, routes: bool = True) -> None:
    parser.add_argument("--cache-dir", type=Path, help="cache directory (default: as wheelmeld serve)")
    parser.add_argument("--config", type=Path, help="TOML configuration file (as for wheelmeld serve)")
    if routes:
        parser.add_argument(
            "--route",
            action="append",
            default=[],
            metavar="/PREFIX=UPSTREAM_URL",
            help="serve UPSTREAM_URL under /PREFIX (repeatable; replaces the built-in routes)",
        )


def tool_config(args: argparse.Namespace, *, offline: bool | None = None) -> Config:
    """The configuration ``wheelmeld serve`` would build from the same options."""
    return load_config(
        CliOverrides(
            config_file=getattr(args, "config", None),
            cache_dir=getattr(args, "cache_dir", None),
            routes=getattr(args, "route", ()),
            offline=offline,
        )
    )
