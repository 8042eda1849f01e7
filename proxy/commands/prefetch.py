"""``wheelmeld prefetch``: fill the cache for a lock or for requirements, for several platforms.

Resolving requirement strings runs the real ``uv pip compile``; uv comes with the
``wheelmeld[prefetch]`` extra, not with wheelmeld itself: the proxy (``serve``, the container image)
never runs it, ``prefetch --lock`` does not need it, and it is a platform binary of tens of megabytes.
Without it the command says how to get it in one line.

Exit status: 0 when everything was fetched (or already cached), 1 when some item failed, 2 on bad
arguments or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
from pathlib import Path

import httpx

from proxy.cache.store import CacheStore
from proxy.commands import report_error
from proxy.config import Config, RouteConfig
from proxy.errors import ConfigError
from proxy.tools.local_proxy import running_proxy
from proxy.tools.lockfile import LockError, read_uv_lock
from proxy.tools.options import PRECEDENCE, add_cache_options, tool_config, writable_cache_dir
from proxy.tools.platforms import UnknownPlatform, parse_python_versions, parse_targets
from proxy.tools.prefetch import FetchItem, PlanError, Progress, plan_lock, plan_requirements, run_plan

__all__ = ["register", "run"]

_TIMEOUT = httpx.Timeout(300.0, connect=10.0)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "prefetch",
        help="fill the cache with what a uv.lock or some requirements need",
        description="Fill the cache through the proxy (pages, melded .metadata, verified files). "
        f"Exit 0: all fetched or cached; 1: some items failed; 2: bad arguments. {PRECEDENCE}",
    )
    parser.add_argument(
        "requirement", nargs="*", help="requirement strings to resolve with uv (e.g. 'torch>=2')"
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--lock", type=Path, help="a uv.lock: fetch every file it references")
    source.add_argument("--requirements", "-r", type=Path, help="a requirements file to resolve with uv")
    parser.add_argument(
        "--platform", action="append", default=[],
        help="only these platforms (comma-separated, repeatable): linux_x86_64, linux_aarch64, win_amd64, "
        "macosx_arm64, manylinux_2_17_x86_64, or uv names like x86_64-manylinux_2_28",
    )  # fmt: skip
    parser.add_argument(
        "--python", action="append", default=[], help="Python versions, e.g. 3.11,3.12 (default: this one)"
    )
    parser.add_argument("--proxy", help="a running wheelmeld to fill (default: start one in process)")
    parser.add_argument(
        "--index", help="proxy path of the index to resolve against, e.g. /whl/cu126 (default /simple)"
    )
    parser.add_argument(
        "--uv", help="the uv binary for resolving requirements (default: the one the wheelmeld[prefetch] "
        "extra installs, else uv on PATH)",
    )  # fmt: skip
    add_cache_options(parser)
    parser.set_defaults(run=run)


def _find_uv(explicit: str | None) -> str:
    if explicit:
        return explicit
    try:
        from uv import find_uv_bin  # the uv wheel ships a locator beside its binary

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found is None:
            raise ConfigError(
                "resolving requirements needs uv, which a plain install of wheelmeld does not bring: "
                "pip install 'wheelmeld[prefetch]' (or pass --uv PATH)"
            ) from None
        return found


def _index_route(config: Config, index: str | None) -> tuple[RouteConfig, str]:
    path = "/" + (index or "/simple").strip("/")
    route = config.route_for(path)
    if route is None and index is None and len(config.routes) == 1:
        route, path = config.routes[0], config.routes[0].prefix
    if route is None:
        raise ConfigError(f"no route serves {path!r}; routes: {', '.join(r.prefix for r in config.routes)}")
    return route, path


def _requirements(args: argparse.Namespace) -> list[str]:
    lines = list(args.requirement)
    if args.requirements is not None:
        try:
            text = args.requirements.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read {str(args.requirements)!r}: {exc}") from exc
        lines += [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    return [ln for ln in lines if ln]


async def _prefetch(
    args: argparse.Namespace, config: Config, proxy_url: str, store: CacheStore | None, uv: str | None
) -> int:
    targets = parse_targets(args.platform)
    async with httpx.AsyncClient(base_url=proxy_url, timeout=_TIMEOUT, trust_env=False) as client:
        items: list[FetchItem]
        if args.lock is not None:
            items = plan_lock(read_uv_lock(args.lock), targets, config.routes)
        else:
            requirements = _requirements(args)
            if not requirements:
                raise ConfigError("nothing to prefetch: give --lock, --requirements or requirement strings")
            if not targets:
                raise ConfigError("resolving requirements needs --platform (e.g. linux_x86_64,linux_aarch64)")
            pythons = parse_python_versions(args.python) or (sys.version_info[:2],)
            route, path = _index_route(config, args.index)
            uv = uv or _find_uv(args.uv)
            items = await plan_requirements(client, uv, requirements, targets, pythons, route, path)
        progress = Progress(len(dict.fromkeys(items)))
        summary = await run_plan(client, items, store=store, progress=progress)
    print(summary.line(), file=sys.stderr)
    for failure in summary.failures:
        print(f"prefetch: failed: {failure}", file=sys.stderr)
    return 1 if summary.failures else 0


def run(args: argparse.Namespace) -> int:
    config = tool_config(args)
    # Before any proxy starts or any cache is made: a missing uv is the first thing to tell.
    uv = _find_uv(args.uv) if args.lock is None and (args.requirement or args.requirements) else None
    try:
        if args.proxy:
            return asyncio.run(_prefetch(args, config, args.proxy.rstrip("/"), None, uv))
        writable_cache_dir(config.cache_dir, "prefetch")
        print(f"prefetch: cache in {config.cache_dir}", file=sys.stderr)
        with running_proxy(config) as url:
            return asyncio.run(_prefetch(args, config, url, CacheStore(config.cache_dir), uv))
    except (PlanError, LockError, UnknownPlatform) as exc:
        return report_error(args, str(exc))
