"""``wheelmeld serve``: run the proxy.

It builds a frozen ``Config`` (defaults < ``--config`` file < ``WHEELMELD_*`` < flags), refuses
routes that point back at the proxy itself, prints each setting not a built-in default with where it
came from, and runs uvicorn.

A cache directory that exists but cannot be written is served read-only, with a warning: an
air-gapped mirror may well be a read-only volume filled by ``bundle import`` elsewhere. One below a
regular file, or one that cannot be created, is refused: nothing could ever be served from it.

With ``--workers N`` uvicorn starts N processes; each rebuilds the app from the resolved configuration
the parent wrote to a private file, so every worker serves exactly what the parent resolved, and
they share a page journal (``proxy.cache.page_journal``) to load the pages their siblings fetch.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import pickle
import socket
import sys
import tempfile
from pathlib import Path

from proxy.commands import report_warning
from proxy.config import KEYS, CliOverrides, Config, load_config
from proxy.default_index import is_self_reference
from proxy.errors import ConfigError
from proxy.tools.options import PRECEDENCE, CacheAccess, cache_dir_access

__all__ = ["app_from_environment", "register", "run"]

_RESOLVED_ENV = "WHEELMELD_RESOLVED_CONFIG"
_JOURNAL_ENV = "WHEELMELD_PAGE_JOURNAL"
# Both uvicorn calls below pass access_log=False, proxy_headers=False: uvicorn's access log is replaced
# by ours (proxy.server.observability), and nothing reads the client's address or scheme (redirects are
# relative), so rewriting them from X-Forwarded-* on every request would be pure cost.


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser("serve", help="run the proxy", description=f"Run the proxy. {PRECEDENCE}")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on, 1 to 65535 (default 8000)")
    serve.add_argument("--cache-dir", type=Path, help="cache directory (default: the user cache dir)")
    serve.add_argument("--config", type=Path, help="TOML configuration file (see config.example.toml)")
    serve.add_argument(
        "--route",
        action="append",
        default=[],
        metavar="/PREFIX=UPSTREAM_URL",
        help="serve UPSTREAM_URL under /PREFIX (repeatable; replaces the built-in routes)",
    )
    serve.add_argument("--offline", action="store_true", default=None, help="never contact an upstream")
    serve.add_argument("--workers", type=int, help="worker processes sharing the cache (default 1)")
    serve.add_argument("--log-format", choices=("text", "json"), help="access log format (default text)")
    serve.add_argument(
        "--redis-url",
        metavar="URL",
        help="Redis or Valkey for fleet-wide leases (a password is better given as WHEELMELD_REDIS_URL)",
    )
    serve.add_argument(
        "--cache-backend", choices=("local", "s3"), help="where immutable objects live (default local)"
    )
    serve.add_argument("--s3-endpoint-url", help="S3-compatible endpoint (default: AWS itself)")
    serve.add_argument("--s3-bucket", help="the fleet's shared bucket (backend s3)")
    serve.add_argument("--s3-prefix", help="key prefix inside the bucket (default none)")
    serve.add_argument("--s3-region", help="the bucket's region")
    serve.set_defaults(run=run)


def _write_resolved(config: Config) -> Path:
    """The resolved config for worker processes, in a file only this user can read.

    A pickle of our own frozen dataclasses round-trips every field (auth, credentials, routes)
    without a second, drifting serializer; a file rather than the environment keeps secrets out of
    ``/proc/<pid>/environ``.
    """
    fd, name = tempfile.mkstemp(prefix="wheelmeld-config-", suffix=".pickle")
    with os.fdopen(fd, "wb") as fh:
        pickle.dump(config, fh)
    return Path(name)


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # Our lines never show a thread or process: not looking them up for each record is a tenth of a
    # warm request's CPU (benchmarks/README.md).
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging.getLogger("httpx").setLevel(logging.WARNING)  # our access log already says what happened


# The cyclic collector's generation thresholds for a serving process. A served page is thousands of
# long-lived objects (a 15,000-file page: ~45,000 files, hash maps and strings) that refcounting alone
# frees; at CPython's defaults (700, 10, 10) the collector rescanned them hundreds of times per cold
# lock, 12-25 % of the CPU a cold page costs (benchmarks/README.md, "the cyclic collector"). Cycles
# (exceptions with their frames, mostly) are still collected, every 50,000 allocations or so.
_COLLECTOR_THRESHOLDS = (50_000, 20, 10)


def _tune_collector() -> None:
    gc.set_threshold(*_COLLECTOR_THRESHOLDS)


def app_from_environment():  # type: ignore[no-untyped-def]
    """uvicorn's factory for worker processes: the app for the configuration the parent resolved."""
    from proxy.server.app import create_app

    # Workers are spawned, not forked: the parent's logging setup (and so the access log) is not
    # theirs until they make it, nor its collector's thresholds.
    _configure_logging()
    _tune_collector()
    with Path(os.environ[_RESOLVED_ENV]).open("rb") as fh:
        config = pickle.load(fh)  # written by our own parent process (_write_resolved), mode 0600
    if not isinstance(config, Config):
        raise ConfigError("the resolved configuration handed to this worker is not a Config")
    journal = os.environ.get(_JOURNAL_ENV)
    return create_app(config, page_journal=Path(journal) if journal else None)


def _make_journal() -> Path:
    """The workers' page journal (``proxy.cache.page_journal``): made here, private and empty, so no
    other user can have put a file of that name in the shared temp directory first."""
    fd, name = tempfile.mkstemp(prefix="wheelmeld-pages-", suffix=".journal")
    os.close(fd)
    return Path(name)


def _run_workers(config: Config) -> None:
    """uvicorn's own ``--workers`` path, with TCP_NODELAY on the shared listening socket.

    uvicorn binds that socket as a plain ``socket.socket(family)``; asyncio then leaves Nagle on for
    accepted connections, and every keep-alive response waited ~44 ms for the client's delayed ACK
    (363 requests/s instead of ~15,000: benchmarks/README.md). Linux copies the option from the
    listener to each accepted socket.
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    uv_config = uvicorn.Config(
        "proxy.commands.serve:app_from_environment",
        factory=True,
        host=config.host,
        port=config.port,
        workers=config.workers,
        access_log=False,
        proxy_headers=False,
    )
    sock = uv_config.bind_socket()
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    Multiprocess(uv_config, sockets=[sock]).run()


def _check_routes(config: Config) -> None:
    for route in config.routes:
        if is_self_reference(route.upstream, config.host, config.port):
            raise ConfigError(
                f"route {route.prefix} points at this proxy itself ({route.upstream}); a request would loop. "
                "If UV_DEFAULT_INDEX / PIP_INDEX_URL already name wheelmeld, unset them here or pass "
                "--route /simple=<the real index>"
            )


def _check_backend(config: Config) -> None:
    """The bucket's client opened once before the workers start, so a missing ``[s3]`` extra or
    missing credentials are one line here (``ConfigError``), not a failed start in every worker."""
    if config.cache_backend == "s3":
        from proxy.cache.backend import opened_shared

        async def opened() -> None:
            async with opened_shared(config):
                pass

        asyncio.run(opened())


def _startup_lines(config: Config) -> list[str]:
    """What the proxy serves, and every setting not a built-in default with where it came from."""

    def source(name: str) -> str:
        origin = config.origin(name)
        return f" (from {origin})" if origin else ""

    lines = []
    if config.offline:
        served = ", ".join(f"{route.prefix}/" for route in config.routes)
        offline = f"offline{source('server.offline')}"
        lines.append(f"{offline}: serving {served} from the cache only; no upstream is contacted")
    else:
        for route in config.routes:
            lines.append(f"{route.prefix}/ -> {route.upstream}/{source(route.prefix) or ' (built-in)'}")
        lines += config.notes
    lines.append(f"cache in {config.cache_dir}{source('cache.dir')}")
    for key in KEYS:
        if key.toml not in ("server.offline", "cache.dir") and config.origin(key.toml):
            lines.append(f"{key.toml} = {key.kind.shown(getattr(config, key.field))}{source(key.toml)}")
    return lines


def run(args: argparse.Namespace) -> int:
    import uvicorn

    config = load_config(
        CliOverrides(
            config_file=args.config,
            host=args.host,
            port=args.port,
            cache_dir=args.cache_dir,
            routes=args.route,
            offline=args.offline,
            workers=args.workers,
            log_format=args.log_format,
            redis_url=args.redis_url,
            cache_backend=args.cache_backend,
            s3_endpoint_url=args.s3_endpoint_url,
            s3_bucket=args.s3_bucket,
            s3_prefix=args.s3_prefix,
            s3_region=args.s3_region,
        )
    )
    _check_routes(config)
    _check_backend(config)
    if cache_dir_access(config.cache_dir, create=True) is CacheAccess.READ_ONLY:
        reason = f"cache directory {config.cache_dir} is read-only: serving what it holds, storing nothing"
        report_warning(args, reason)
    for line in _startup_lines(config):
        print(f"wheelmeld: {line}", file=sys.stderr)
    _configure_logging()
    if config.workers > 1:
        resolved, journal = _write_resolved(config), _make_journal()
        os.environ[_RESOLVED_ENV], os.environ[_JOURNAL_ENV] = str(resolved), str(journal)
        try:
            _run_workers(config)
        finally:
            resolved.unlink(missing_ok=True)
            journal.unlink(missing_ok=True)
    else:
        from proxy.server.app import create_app

        _tune_collector()
        uvicorn.run(
            create_app(config), host=config.host, port=config.port, access_log=False, proxy_headers=False
        )
    return 0
