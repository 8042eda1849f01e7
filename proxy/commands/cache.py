"""``wheelmeld cache stats|prune|verify``: look after the cache directory a ``serve`` uses, and on
``backend = "s3"`` the fleet's bucket too (``proxy.cache.bucket``).

``--cache-dir`` and ``--config`` mean what they mean for ``serve`` (defaults < file < ``WHEELMELD_*``
< flags), so the commands find the same directory the proxy uses.
They are safe to run beside a live proxy: eviction takes the same cross-process lock the server's
does, a file is only ever removed whole, and a worker that loses a file fetches it again.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from datetime import timedelta
from pathlib import Path

from proxy.cache import bucket
from proxy.cache.backend import in_bucket
from proxy.cache.evict import evict
from proxy.cache.inventory import KINDS, Summary, scan, summarize
from proxy.cache.store import CacheStore
from proxy.cache.verify import VerifyReport, verify
from proxy.config import CliOverrides, Config, load_config, parse_size
from proxy.tools.options import PRECEDENCE, cache_dir_access, writable_cache_dir

__all__ = ["register", "run_prune", "run_stats", "run_verify"]


# A progress line at most this often (seconds), and at least every this many files.
_PROGRESS_SECONDS = 2.0
_PROGRESS_FILES = 500
_CELL = 18  # one kind's column: a count, a space, a size
_AUDIT_ROUTE = "audit-"  # proxy.tools.audit.adhoc_prefix


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cache = commands.add_parser(
        "cache", help="inspect, shrink or check the cache directory", description=PRECEDENCE
    )
    actions = cache.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    stats = actions.add_parser("stats", help="entries and bytes by kind, per route")
    stats.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    stats.set_defaults(run=run_stats)
    prune = actions.add_parser("prune", help="evict least-recently-used files down to a size")
    prune.add_argument("--max-size", help="target size of cached files, e.g. 20GB (default: cache.max_size)")
    prune.add_argument(
        "--max-age",
        type=float,
        metavar="DAYS",
        help="backend s3: remove files uploaded longer ago from the bucket",
    )
    prune.add_argument(
        "--stale-uploads",
        type=float,
        default=24.0,
        metavar="HOURS",
        help="backend s3: abort multipart uploads started longer ago (a replica died mid-upload; default 24)",
    )
    prune.set_defaults(run=run_prune)
    check = actions.add_parser("verify", help="re-hash every cached file; report and drop bad ones")
    check.add_argument("--keep", action="store_true", help="report bad files but do not remove them")
    check.set_defaults(run=run_verify)
    for sub in (stats, prune, check):
        sub.add_argument("--cache-dir", type=Path, help="cache directory (default: the user cache dir)")
        sub.add_argument("--config", type=Path, help="TOML configuration file (see config.example.toml)")


def _config(args: argparse.Namespace) -> Config:
    return load_config(CliOverrides(config_file=args.config, cache_dir=args.cache_dir))


def _summary_doc(summary: Summary) -> dict[str, object]:
    return {
        "routes": {
            route: {kind: {"entries": t.count, "bytes": t.size} for kind, t in kinds.items()}
            for route, kinds in sorted(summary.routes.items())
        },
        "total": {"entries": summary.total().count, "bytes": summary.total().size},
    }


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def _stats_table(summary: Summary) -> str:
    width = max((len(route) for route in summary.routes), default=0)
    width = max(width, len("route"))
    # Each kind's name stands right-aligned over its column of "count size" cells.
    lines = [f"{'route':<{width}} " + " ".join(f"{k:>{_CELL}}" for k in KINDS)]
    for route, kinds in sorted(summary.routes.items()):
        cells = " ".join(f"{kinds[k].count:>6} {_human(kinds[k].size):>{_CELL - 7}}" for k in KINDS)
        lines.append(f"{route:<{width}} {cells}")
    total = summary.total()
    lines.append(f"total: {total.count} entries, {_human(total.size)}")
    if any(route.startswith(_AUDIT_ROUTE) for route in summary.routes):
        lines.append(f"({_AUDIT_ROUTE}…: what `wheelmeld audit --index` read from an index no route serves)")
    return "\n".join(lines)


def run_stats(args: argparse.Namespace) -> int:
    config = _config(args)
    cache_dir_access(config.cache_dir, create=False)
    store = CacheStore(config.cache_dir)
    summary = summarize(scan(store.data_root))
    found = in_bucket(config, bucket.entries)
    bucket_summary = None if found is None else summarize(found)
    where = f"s3://{config.s3_bucket}/{config.s3_prefix}"
    if args.json:
        doc = {"cache_dir": str(config.cache_dir), "max_size": config.cache_max_size, **_summary_doc(summary)}
        if bucket_summary is not None:
            doc["bucket"] = {"url": where, **_summary_doc(bucket_summary)}
        print(json.dumps(doc, indent=2))
        return 0
    print(f"cache: {config.cache_dir}")
    limit = _human(config.cache_max_size) if config.cache_max_size else "none"
    print(f"files: {_human(summary.total('file').size)} (limit: {limit})")
    print(_stats_table(summary))
    if bucket_summary is not None:
        print(f"bucket: {where}")
        print(_stats_table(bucket_summary))
    return 0


def run_prune(args: argparse.Namespace) -> int:
    config = _config(args)
    max_size = parse_size(args.max_size, "--max-size") if args.max_size is not None else config.cache_max_size
    store = CacheStore(writable_cache_dir(config.cache_dir, "pruning"))
    dropped = store.prepare()
    if dropped:
        print(f"removed {dropped} abandoned partial download(s)", file=sys.stderr)
    if config.cache_backend == "s3":
        _prune_bucket(config, args)
    if not max_size and args.max_size is None:
        print("no size limit (cache.max_size is 0 and no --max-size given): nothing evicted")
        return 0
    result = evict(store, max_size)
    if result.skipped:
        print("another process is evicting right now; try again in a moment", file=sys.stderr)
        return 1
    print(f"evicted {len(result.removed)} file(s), {_human(result.freed)}; {_human(result.remaining)} remain")
    return 0


def _prune_bucket(config: Config, args: argparse.Namespace) -> None:
    """The bucket's part of ``prune``: ``--max-size`` (not cache.max_size, a replica's disk limit)
    and ``--max-age``, oldest uploads first; stale multipart uploads aborted in any case."""
    max_size = parse_size(args.max_size, "--max-size") if args.max_size is not None else None
    max_age = timedelta(days=args.max_age) if args.max_age is not None else None
    work = functools.partial(
        bucket.prune, max_size=max_size, max_age=max_age, stale_uploads=timedelta(hours=args.stale_uploads)
    )
    report = in_bucket(config, work)
    assert report is not None
    print(
        f"bucket: removed {len(report.removed)} file(s), {_human(report.freed)}; {_human(report.remaining)} "
        f"remain; aborted {report.aborted_uploads} stale upload(s)"
    )


class _ProgressLine:
    """A line on stderr every few seconds or every few hundred files, and one at the end."""

    def __init__(self) -> None:
        self._last = time.monotonic()

    def __call__(self, done: int, total: int, done_bytes: int, total_bytes: int) -> None:
        now = time.monotonic()
        if done == total or done % _PROGRESS_FILES == 0 or now - self._last >= _PROGRESS_SECONDS:
            self._last = now
            print(
                f"verify: {done}/{total} files, {_human(done_bytes)} of {_human(total_bytes)}",
                file=sys.stderr,
                flush=True,
            )


def run_verify(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.keep:
        cache_dir_access(config.cache_dir, create=False)
    else:
        writable_cache_dir(config.cache_dir, "dropping bad files (without --keep)")
    report = verify(CacheStore(config.cache_dir), drop=not args.keep, progress=_ProgressLine())
    action = "kept (--keep)" if args.keep else "removed"
    _print_verified(report, action, "")
    checked = in_bucket(
        config, functools.partial(bucket.verify, drop=not args.keep, progress=_ProgressLine())
    )
    if checked is None:
        return 1 if report.bad else 0
    bucket_report, uncommitted = checked
    _print_verified(bucket_report, action, "bucket: ")
    if uncommitted:
        print(f"bucket: {uncommitted} object(s) without their sha256 (uncommitted: never served)")
    return 1 if report.bad or bucket_report.bad else 0


def _print_verified(report: VerifyReport, action: str, where: str) -> None:
    for bad in report.bad:
        print(f"BAD {where}{bad.path}: {bad.reason}")
    print(f"{where}checked {report.checked} file(s), {_human(report.size)}; {len(report.bad)} bad, {action}")
    if report.orphan_hashes:
        print(f"{where}{report.orphan_hashes} hash file(s) without their file {action}")
