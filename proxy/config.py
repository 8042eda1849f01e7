"""Frozen configuration, built from layers: built-in defaults < TOML file < ``WHEELMELD_*`` variables <
command-line flags (the convention twelve-factor apps and most servers follow: what is typed last, for
this one run, wins; a container image's environment never silently overrides a flag).

Each setting is declared once in ``KEYS`` (its ``Config`` field, TOML name, variable and flag); each
layer reads what it holds into a partial mapping of those fields, and ``load_config`` merges the layers
in one place, remembering where every value it took came from (``Config.origins``, shown at start).
Routes layer the same way: the file's tables first, then ``WHEELMELD_ROUTES``, then ``--route``.

Nothing here reads the environment at import time: ``load_config`` takes the CLI values and the
environment as arguments, so tests and the CLI build configurations the same way.
``config.example.toml`` documents every key below with its default; keep the two in step.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proxy.config_tables import (
    AuthConfig,
    Credential,
    RouteConfig,
    auth_from_table,
    check_auth_routes,
    finish_route,
    merge_routes,
    route_from_spec,
    routes_from_tables,
)
from proxy.config_values import (
    BOOL,
    HTTP_URL,
    NUMBER_OR_ZERO,
    PATH,
    PORT,
    POSITIVE_NUMBER,
    POSITIVE_SIZE,
    REDIS_URL,
    SIZE,
    TEXT,
    Kind,
    at_least,
    choice,
    parse_size,
    refuse_unknown,
    whole,
)
from proxy.errors import ConfigError

__all__ = [
    "KEYS",
    "PYTORCH_INDEX_URL",
    "AuthConfig",
    "CliOverrides",
    "Config",
    "Credential",
    "Key",
    "RouteConfig",
    "default_cache_dir",
    "load_config",
    "parse_size",
]

# The PyTorch index is the second of the two upstreams wheelmeld exists for (docs/meld-contract.md); it has no
# "user's tooling" to read it from, so its root is the one upstream written down, here and only here.
PYTORCH_INDEX_URL = "https://download.pytorch.org/whl"


@dataclass(frozen=True, slots=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    cache_dir: Path = field(default_factory=lambda: default_cache_dir())
    cache_max_size: int = 0  # bytes of cached files; 0 = no limit
    # [cache] backend: "local" (the disk only) or "s3" (the bucket below is the fleet's shared home of
    # immutable objects, the disk a working cache in front of it: proxy/cache/shared.py).
    cache_backend: str = "local"
    s3_endpoint_url: str | None = None  # None: AWS itself
    s3_bucket: str | None = None
    s3_prefix: str = ""
    s3_region: str | None = None
    s3_redirect_files: bool = False  # answer file downloads with a 307 to a presigned bucket URL
    s3_presign_expiry: float = 300.0  # seconds a presigned URL is valid
    offline: bool = False
    log_format: str = "text"  # "text" or "json"
    upstream_timeout: float = 30.0
    upstream_concurrency: int = 32  # metadata fetches under way at once per route (and as many for melds)
    upstream_max_page_bytes: int = 64 * 1024 * 1024  # a bigger page is refused (the last good one stays)
    upstream_file_idle_timeout: float = 30.0  # seconds without a byte before a file download is cut off
    upstream_file_min_rate: int = 65536  # bytes/s a download nobody reads any more must keep up
    upstream_range_client: str = "aiohttp"  # "aiohttp" or "httpx": pages, PEP 658 files, range reads
    # [meld]: a sibling over a limit takes no part in its release's meld (proxy.meld.MeldLimits).
    meld_max_requirements: int = 5000  # Requires-Dist lines per wheel
    meld_max_metadata_size: int = 16 * 1024 * 1024  # bytes of METADATA per wheel
    meld_incomplete_retry: float = 60.0  # seconds an incomplete meld is reused (in memory) before a retry
    # [coordination]: fleet-wide leases on Redis/Valkey (proxy.cache.leases); None = this machine only.
    redis_url: str | None = field(default=None, repr=False)  # may carry a password: never shown whole
    lease_ttl: float = 30.0  # seconds a lease outlives a holder that stopped renewing it
    # Running ahead of the resolver (proxy.service.ahead); a route's ``run_ahead = false`` turns it off there.
    # On by default: it pays on both benchmark workloads (benchmarks/README.md, issue 17).
    meld_run_ahead_depth: int = 2  # levels of requirements below a release a client asked for; 0: off
    meld_run_ahead_releases: int = 48  # releases warmed per release a client asked for
    meld_run_ahead_concurrency: int = 16  # jobs, and upstream requests, run ahead at once per worker
    meld_run_ahead_window: float = 30.0  # seconds running ahead goes on with no client asking any of it
    routes: tuple[RouteConfig, ...] = ()
    auth: AuthConfig = field(default_factory=AuthConfig)
    # Where the /simple default came from, shown at start ("env UV_DEFAULT_INDEX", ...).
    notes: tuple[str, ...] = ()
    # (TOML key or route prefix, where its value came from) for every value not a built-in default:
    # ("server.port", "--port"), ("/simple", "WHEELMELD_ROUTES"), ("cache.dir", "/etc/wheelmeld.toml").
    origins: tuple[tuple[str, str], ...] = ()

    def origin(self, name: str) -> str | None:
        """Where ``name`` (``"server.port"``, a route prefix) was set; ``None``: a built-in default."""
        return dict(self.origins).get(name)

    def route_for(self, path: str) -> RouteConfig | None:
        """The route whose prefix is the longest one ``path`` starts with, segment-wise."""
        best: RouteConfig | None = None
        for route in self.routes:
            if (path == route.prefix or path.startswith(route.prefix + "/")) and (
                best is None or len(route.prefix) > len(best.prefix)
            ):
                best = route
        return best


@dataclass(frozen=True, slots=True)
class Key:
    """One setting: the ``Config`` field it fills, its ``section.name`` in TOML, its variable and flag."""

    field: str
    toml: str
    kind: Kind
    env: str
    flag: str | None = None  # the ``serve`` flag; its value arrives as ``CliOverrides.<field>``


# Every scalar setting, once. A new one is a ``Config`` field, a line here and its line in
# config.example.toml; a new ``[section]`` needs nothing more.
KEYS: tuple[Key, ...] = (
    Key("host", "server.host", TEXT, "WHEELMELD_HOST", "--host"),
    Key("port", "server.port", PORT, "WHEELMELD_PORT", "--port"),
    Key("workers", "server.workers", whole(1), "WHEELMELD_WORKERS", "--workers"),
    Key("offline", "server.offline", BOOL, "WHEELMELD_OFFLINE", "--offline"),
    Key("log_format", "server.log_format", choice("text", "json"), "WHEELMELD_LOG_FORMAT", "--log-format"),
    Key("cache_dir", "cache.dir", PATH, "WHEELMELD_CACHE_DIR", "--cache-dir"),
    Key("cache_max_size", "cache.max_size", SIZE, "WHEELMELD_CACHE_MAX_SIZE"),
    Key(
        "cache_backend", "cache.backend", choice("local", "s3"), "WHEELMELD_CACHE_BACKEND", "--cache-backend"
    ),
    Key(
        "s3_endpoint_url", "cache.s3.endpoint_url", HTTP_URL, "WHEELMELD_S3_ENDPOINT_URL", "--s3-endpoint-url"
    ),
    Key("s3_bucket", "cache.s3.bucket", TEXT, "WHEELMELD_S3_BUCKET", "--s3-bucket"),
    Key("s3_prefix", "cache.s3.prefix", TEXT, "WHEELMELD_S3_PREFIX", "--s3-prefix"),
    Key("s3_region", "cache.s3.region", TEXT, "WHEELMELD_S3_REGION", "--s3-region"),
    Key("s3_redirect_files", "cache.s3.redirect_files", BOOL, "WHEELMELD_S3_REDIRECT_FILES"),
    Key("s3_presign_expiry", "cache.s3.presign_expiry", POSITIVE_NUMBER, "WHEELMELD_S3_PRESIGN_EXPIRY"),
    Key("upstream_timeout", "upstream.timeout", POSITIVE_NUMBER, "WHEELMELD_UPSTREAM_TIMEOUT"),
    Key("upstream_concurrency", "upstream.concurrency", whole(1), "WHEELMELD_UPSTREAM_CONCURRENCY"),
    Key(
        "upstream_max_page_bytes",
        "upstream.max_page_bytes",
        POSITIVE_SIZE,
        "WHEELMELD_UPSTREAM_MAX_PAGE_BYTES",
    ),
    Key(
        "upstream_file_idle_timeout",
        "upstream.file_idle_timeout",
        POSITIVE_NUMBER,
        "WHEELMELD_UPSTREAM_FILE_IDLE_TIMEOUT",
    ),
    Key("upstream_file_min_rate", "upstream.file_min_rate", SIZE, "WHEELMELD_UPSTREAM_FILE_MIN_RATE"),
    Key(
        "upstream_range_client",
        "upstream.range_client",
        choice("aiohttp", "httpx"),
        "WHEELMELD_UPSTREAM_RANGE_CLIENT",
    ),
    Key("meld_max_requirements", "meld.max_requirements", whole(1), "WHEELMELD_MELD_MAX_REQUIREMENTS"),
    Key(
        "meld_max_metadata_size", "meld.max_metadata_size", POSITIVE_SIZE, "WHEELMELD_MELD_MAX_METADATA_SIZE"
    ),
    Key("meld_incomplete_retry", "meld.incomplete_retry", NUMBER_OR_ZERO, "WHEELMELD_MELD_INCOMPLETE_RETRY"),
    Key("redis_url", "coordination.redis_url", REDIS_URL, "WHEELMELD_REDIS_URL", "--redis-url"),
    Key("lease_ttl", "coordination.lease_ttl", at_least(1.0), "WHEELMELD_LEASE_TTL"),
    Key("meld_run_ahead_depth", "meld.run_ahead_depth", whole(0), "WHEELMELD_MELD_RUN_AHEAD_DEPTH"),
    Key("meld_run_ahead_releases", "meld.run_ahead_releases", whole(1), "WHEELMELD_MELD_RUN_AHEAD_RELEASES"),
    Key(
        "meld_run_ahead_concurrency",
        "meld.run_ahead_concurrency",
        whole(1),
        "WHEELMELD_MELD_RUN_AHEAD_CONCURRENCY",
    ),
    Key("meld_run_ahead_window", "meld.run_ahead_window", POSITIVE_NUMBER, "WHEELMELD_MELD_RUN_AHEAD_WINDOW"),
)
_SECTIONS = ("routes", "auth", *dict.fromkeys(k.toml.partition(".")[0] for k in KEYS))


@dataclass(frozen=True, slots=True)
class CliOverrides:
    """What the command line said; ``None`` means "not given"."""

    config_file: Path | None = None
    host: str | None = None
    port: int | None = None
    cache_dir: Path | None = None
    routes: Sequence[str] = ()  # "/PREFIX=URL"
    offline: bool | None = None
    workers: int | None = None
    log_format: str | None = None
    redis_url: str | None = field(default=None, repr=False)
    cache_backend: str | None = None
    s3_endpoint_url: str | None = None
    s3_bucket: str | None = None
    s3_prefix: str | None = None
    s3_region: str | None = None


@dataclass(frozen=True, slots=True)
class _Layer:
    """What one source sets: typed ``Config`` field values, routes to lay over the lower layers' (by
    prefix), and for each field or prefix it sets, the name of where it came from."""

    values: Mapping[str, Any] = field(default_factory=dict)
    routes: tuple[RouteConfig, ...] = ()
    origins: Mapping[str, str] = field(default_factory=dict)


def default_cache_dir() -> Path:
    """The platform's user cache directory for wheelmeld (what platformdirs would say, without it)."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "wheelmeld" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "wheelmeld"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "wheelmeld"


def _file_layer(path: Path, environ: Mapping[str, str]) -> tuple[_Layer, AuthConfig | None]:
    data = _read_toml(path)
    where = str(path)
    refuse_unknown(data, _SECTIONS, "section", where)
    found: dict[str, Any] = {}
    for section, table in data.items():
        if section in ("routes", "auth"):
            continue
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where}: [{section}] must be a table, got {table!r}")
        found.update(_flattened(section, table))
    keys = {key.toml: key for key in KEYS}
    refuse_unknown(found, keys, "key", where)
    values = {keys[name].field: keys[name].kind.typed(v, f"{name} in {where}") for name, v in found.items()}
    routes = routes_from_tables(data["routes"], where, environ) if "routes" in data else ()
    origins = {name: where for name in found} | {route.prefix: where for route in routes}
    auth = auth_from_table(data["auth"], where) if "auth" in data else None
    return _Layer(values, routes, origins), auth


def _flattened(section: str, table: Mapping[str, Any]) -> dict[str, Any]:
    """``[cache.s3] bucket = …`` as ``{"cache.s3.bucket": …}``: a sub-table is part of its keys' names."""
    found: dict[str, Any] = {}
    for name, value in table.items():
        if isinstance(value, Mapping):
            found.update(_flattened(f"{section}.{name}", value))
        else:
            found[f"{section}.{name}"] = value
    return found


def _env_layer(environ: Mapping[str, str]) -> _Layer:
    present = [key for key in KEYS if key.env in environ]
    values = {key.field: key.kind.text(environ[key.env], key.env) for key in present}
    specs = [spec for spec in environ.get("WHEELMELD_ROUTES", "").split(",") if spec.strip()]
    routes = tuple(route_from_spec(spec, "WHEELMELD_ROUTES", environ) for spec in specs)
    origins = {key.toml: key.env for key in present} | {r.prefix: "WHEELMELD_ROUTES" for r in routes}
    return _Layer(values, routes, origins)


def _flag_layer(cli: CliOverrides, environ: Mapping[str, str]) -> _Layer:
    given = {key.flag: key for key in KEYS if key.flag is not None and getattr(cli, key.field) is not None}
    values = {key.field: key.kind.typed(getattr(cli, key.field), flag) for flag, key in given.items()}
    routes = tuple(route_from_spec(spec, "--route", environ) for spec in cli.routes)
    origins = {key.toml: flag for flag, key in given.items()} | {r.prefix: "--route" for r in routes}
    return _Layer(values, routes, origins)


def _default_routes(environ: Mapping[str, str]) -> tuple[tuple[RouteConfig, ...], tuple[str, ...]]:
    # Imported here: discovery reads pip's configuration, which only the default needs.
    from proxy.default_index import discover_default_index

    try:
        found = discover_default_index(environ)
    except Exception as exc:  # NoDefaultIndex and anything pip's internals raise
        raise ConfigError(f"cannot choose an upstream for /simple: {exc}; pass --route /simple=URL") from exc
    simple = finish_route(RouteConfig(prefix="/simple", upstream=found.url), "default /simple", environ)
    whl = RouteConfig(prefix="/whl", upstream=PYTORCH_INDEX_URL, keep_pruned=True)
    return (simple, whl), (f"/simple upstream from {found.source}",)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {str(path)!r}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from exc


def load_config(
    cli: CliOverrides | None = None, environ: Mapping[str, str] | None = None, *, default_routes: bool = True
) -> Config:
    """Defaults < ``--config`` / ``WHEELMELD_CONFIG`` file < ``WHEELMELD_*`` variables < CLI flags.

    ``default_routes=False``: no routes unless some are named (a command that only needs the cache
    and its backend, on a machine that may have no index to discover)."""
    cli = cli or CliOverrides()
    environ = os.environ if environ is None else environ
    layers: list[_Layer] = []
    auth = AuthConfig()
    config_file = cli.config_file or (
        Path(environ["WHEELMELD_CONFIG"]) if environ.get("WHEELMELD_CONFIG") else None
    )
    if config_file is not None:
        from_file, file_auth = _file_layer(config_file, environ)
        layers.append(from_file)
        auth = file_auth or auth
    layers += [_env_layer(environ), _flag_layer(cli, environ)]

    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    routes: tuple[RouteConfig, ...] = ()
    for layer in layers:
        values.update(layer.values)
        origins.update(layer.origins)
        routes = merge_routes(routes, layer.routes)
    notes: tuple[str, ...] = ()
    if not routes and default_routes:
        # Built-in defaults only when nobody named a route: a user who names routes gets just those.
        routes, notes = _default_routes(environ)
    check_auth_routes(auth, routes)
    if values.get("redis_url") and importlib.util.find_spec("redis") is None:
        raise ConfigError(
            f"coordination.redis_url (from {origins['coordination.redis_url']}) needs the redis package: "
            "pip install 'wheelmeld[coordination]'"
        )
    if values.get("cache_backend") == "s3" and not values.get("s3_bucket"):
        raise ConfigError('cache.backend = "s3" needs cache.s3.bucket (WHEELMELD_S3_BUCKET, --s3-bucket)')
    return Config(**values, routes=routes, auth=auth, notes=notes, origins=tuple(origins.items()))
