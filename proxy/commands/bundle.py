"""``wheelmeld bundle export|import``: a cache as one verified tar archive, for air-gapped sites.

Exit status: 0 on success; 1 when an import is refused (nothing imported) or an export lacks files
the lock needs (the archive is still written); 2 on bad arguments or configuration.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from proxy.cache.backend import in_bucket
from proxy.cache.bucket import hydrate, publish_all
from proxy.cache.shared import SharedTier
from proxy.cache.store import CacheStore
from proxy.commands import report_error
from proxy.config import CliOverrides, Config, load_config
from proxy.tools.bundle import BundleError, export_bundle, import_bundle, lock_folders, lock_members
from proxy.tools.lockfile import LockError, read_uv_lock
from proxy.tools.options import PRECEDENCE, add_cache_options, tool_config, writable_cache_dir
from proxy.tools.platforms import UnknownPlatform, parse_targets

__all__ = ["register", "run_export", "run_import"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "bundle", help="export a cache as one archive, or import one", description=PRECEDENCE
    )
    actions = parser.add_subparsers(dest="bundle_command", required=True, metavar="ACTION")
    export = actions.add_parser("export", help="write the cache (or what a lock needs) to PATH")
    export.add_argument("path", type=Path, help="the archive to write (a tar file)")
    export.add_argument("--lock", type=Path, help="only what this uv.lock needs")
    export.add_argument(
        "--platform", action="append", default=[], help="with --lock: only these platforms' wheels"
    )
    add_cache_options(export)
    export.set_defaults(run=run_export)
    imp = actions.add_parser(
        "import", help="verify an archive against its manifest and merge it into the cache"
    )
    imp.add_argument("path", type=Path, help="the archive to read")
    add_cache_options(imp, routes=False)
    imp.set_defaults(run=run_import)


def _through_bucket(config: Config, work: Callable[[SharedTier], Awaitable[int]]) -> None:
    """On ``backend = "s3"``, ``work`` with the fleet's bucket, which the bundle is carried through."""
    count = in_bucket(config, work)
    if count is not None:
        print(
            f"bundle: {count} object(s) through s3://{config.s3_bucket}/{config.s3_prefix}", file=sys.stderr
        )


def run_export(args: argparse.Namespace) -> int:
    config = tool_config(args)
    store = CacheStore(config.cache_dir)
    members = None
    missing: list[str] = []
    try:
        packages = read_uv_lock(args.lock) if args.lock is not None else None
        # The bundle is written from the local disk: first what the bucket holds that it lacks.
        folders = [store.data_root] if packages is None else lock_folders(store, packages, config.routes)
        _through_bucket(config, lambda tier: hydrate(tier, store, folders))
        if packages is not None:
            members, missing = lock_members(store, packages, parse_targets(args.platform), config.routes)
        summary = export_bundle(config.cache_dir, args.path, members)
    except (BundleError, LockError, UnknownPlatform, OSError) as exc:
        return report_error(args, str(exc))
    print(
        f"bundle: wrote {summary.members} files, {summary.bytes / 1e6:.1f} MB to {args.path}", file=sys.stderr
    )
    if missing:
        print(f"bundle: the cache lacks {len(missing)} item(s) the lock needs (run wheelmeld prefetch "
              f"--lock first), e.g. {missing[0]}", file=sys.stderr)  # fmt: skip
        return 1
    return 0


def run_import(args: argparse.Namespace) -> int:
    # Only the cache and its backend are needed: an air-gapped machine may have no index to name
    # for default routes.
    config = load_config(
        CliOverrides(config_file=args.config, cache_dir=args.cache_dir), default_routes=False
    )
    cache_dir = config.cache_dir
    store = CacheStore(writable_cache_dir(cache_dir, "an import"))
    try:
        summary = import_bundle(args.path, store)
    except BundleError as exc:
        return report_error(args, f"REFUSED, nothing imported: {exc}", status=1)
    # Verified into the local disk; on backend s3 on into the fleet's bucket too.
    imported = [store.root / name for name in summary.names]
    _through_bucket(config, lambda tier: publish_all(tier, store, imported))
    print(f"bundle: imported {summary.members} files, {summary.bytes / 1e6:.1f} MB into {cache_dir}",
          file=sys.stderr)  # fmt: skip
    return 0
