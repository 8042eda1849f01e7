"""Command-line options every tool shares: where the cache is and which routes exist.

The tools read the same configuration ``wheelmeld serve`` reads (``--config`` file, ``WHEELMELD_*``,
``--route``), so a lock URL maps to the routes the server will later serve it under, and the cache
the tools fill or read is the one the server uses.
"""

from __future__ import annotations

import argparse
import enum
import os
from pathlib import Path

from proxy.config import CliOverrides, Config, load_config
from proxy.errors import ConfigError

__all__ = [
    "PRECEDENCE",
    "CacheAccess",
    "add_cache_options",
    "cache_dir_access",
    "tool_config",
    "writable_cache_dir",
]

PRECEDENCE = (
    "Settings come from built-in defaults < config file < WHEELMELD_* environment < command-line flags "
    "(the file is --config or WHEELMELD_CONFIG; see config.example.toml)."
)


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


class CacheAccess(enum.Enum):
    WRITABLE = "writable"
    READ_ONLY = "read-only"
    MISSING = "missing"  # only when not asked to create it


def cache_dir_access(path: Path, *, create: bool) -> CacheAccess:
    """Whether the cache directory can be written, read only, or is not there yet (made if ``create``).

    A path below a regular file, or one that cannot be made, is a ``ConfigError``: one line naming
    the directory, where a raw ``NotADirectoryError`` or ``OSError`` traceback would otherwise be.
    """
    for folder in (*reversed(path.parents), path):
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"cannot use cache directory {path}: {folder} is a file, not a directory")
    if not path.exists():
        if not create:
            return CacheAccess.MISSING
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = f"cannot create it ({exc.strerror})"
            raise ConfigError(f"cannot use cache directory {path}: {reason}") from exc
    # access(2) answers for the caller's rights and for a read-only mount alike (EROFS).
    return CacheAccess.WRITABLE if os.access(path, os.W_OK | os.X_OK) else CacheAccess.READ_ONLY


def writable_cache_dir(path: Path, needed_for: str) -> Path:
    """``path``, made if missing, or a ``ConfigError`` if ``needed_for`` cannot write it."""
    if cache_dir_access(path, create=True) is CacheAccess.READ_ONLY:
        reason = f"it is not writable, and {needed_for} writes it"
        raise ConfigError(f"cannot use cache directory {path}: {reason}")
    return path
