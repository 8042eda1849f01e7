"""Frozen configuration, built from built-in defaults < TOML file < CLI flags < ``WHEELMELD_*`` variables.

Nothing here reads the environment at import time: ``load_config`` takes the CLI values and the
environment as arguments, so tests and the CLI build configurations the same way.
``config.example.toml`` documents every key below with its default; keep the two in step.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from proxy.errors import ConfigError

__all__ = [
    "PYTORCH_INDEX_URL",
    "CliOverrides",
    "Config",
    "RouteConfig",
    "default_cache_dir",
    "load_config",
    "parse_size",
]

# The PyTorch index is the second of the two upstreams wheelmeld exists for (MISSION.md); it has no
# "user's tooling" to read it from, so its root is the one upstream written down, here and only here.
PYTORCH_INDEX_URL = "https://download.pytorch.org/whl"

_PREFIX_RE = re.compile(r"^(/[A-Za-z0-9][A-Za-z0-9._-]*)+$")
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4}


@dataclass(frozen=True, slots=True)
class RouteConfig:
    """One mounted upstream: requests under ``prefix`` mirror the same paths under ``upstream``."""

    prefix: str  # "/simple"; no trailing slash
    upstream: str  # "https://host/path"; no trailing slash, no credentials (see ``credentials``)
    page_ttl: float = 600.0  # seconds a cached page is fresh before it is revalidated
    meld: bool = True
    extra_file_hosts: tuple[str, ...] = ()  # origins file links may point at besides the upstream's
    allow_public_hosts: bool = True  # follow file links to any host that resolves only to public IPs
    keep_pruned: bool = False  # keep listing cached files that upstream no longer lists
    credentials_env: str | None = None  # name of an environment variable holding "user:password"
    # Resolved at load time from ``credentials_env`` or from userinfo in the upstream URL; never logged.
    credentials: tuple[str, str] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """A file-system-safe identity for the cache: the prefix without slashes."""
        return self.prefix.strip("/").replace("/", "_")


@dataclass(frozen=True, slots=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    cache_dir: Path = field(default_factory=lambda: default_cache_dir())
    cache_max_size: int = 0  # bytes of cached files; 0 = no limit
    offline: bool = False
    log_format: str = "text"  # "text" or "json"
    upstream_timeout: float = 30.0
    upstream_concurrency: int = 16  # sibling metadata fetched at once for one meld
    routes: tuple[RouteConfig, ...] = ()
    # Where the /simple default came from, shown at start ("env UV_DEFAULT_INDEX", ...).
    notes: tuple[str, ...] = ()

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


def default_cache_dir() -> Path:
    """The platform's user cache directory for wheelmeld (what platformdirs would say, without it)."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "wheelmeld" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "wheelmeld"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "wheelmeld"


def parse_size(value: str | int) -> int:
    """``"20GB"``, ``"512MiB"``, ``"1.5T"`` or a number of bytes → bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ConfigError(f"size must not be negative: {value!r}")
        return value
    match = _SIZE_RE.match(str(value))
    if not match:
        raise ConfigError(f"not a size: {value!r} (examples: 0, 500MB, 20GiB)")
    number, unit = float(match.group(1)), (match.group(2) or "").upper()
    binary = "I" in unit
    letter = unit[:1] if unit[:1] in "KMGT" else ""
    scale = 1024 ** "KMGT".index(letter) * 1024 if (binary and letter) else _SIZE_UNITS[letter]
    return int(number * scale)


def _split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """Move ``user:password@`` out of a URL, so the URL can be logged and the secret cannot."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    netloc = parts.hostname or ""
    if ":" in netloc:  # IPv6 literal
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return clean, (unquote(parts.username), unquote(parts.password or ""))


def _check_upstream(url: str, where: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}: upstream must be an http(s) URL with a host, got {url!r}")
    if parts.query or parts.fragment:
        raise ConfigError(f"{where}: upstream must not carry a query or fragment: {url!r}")
    return url.strip().rstrip("/")


def _check_file_host(host: str, where: str) -> str:
    """An origin (``https://files.example``) or a bare host name (meaning https)."""
    from proxy.network.ssrf import FetchPolicy, InvalidUpstreamURL

    try:
        FetchPolicy("http://placeholder.invalid", frozenset({host}))
    except InvalidUpstreamURL as exc:
        raise ConfigError(f"{where}: extra_file_hosts entry {host!r} is not a host or origin: {exc}") from exc
    return host.rstrip("/")


def _check_prefix(prefix: str, where: str) -> str:
    prefix = "/" + prefix.strip().strip("/")
    if not _PREFIX_RE.match(prefix):
        raise ConfigError(f"{where}: route prefix must look like /simple or /a/b, got {prefix!r}")
    if prefix in ("/healthz", "/metrics", "/-"):
        raise ConfigError(f"{where}: route prefix {prefix!r} is reserved by wheelmeld itself")
    return prefix


def _route_from_table(table: Mapping[str, Any], where: str, environ: Mapping[str, str]) -> RouteConfig:
    known = {f for f in RouteConfig.__dataclass_fields__ if f != "credentials"}
    unknown = set(table) - known
    if unknown:
        raise ConfigError(f"{where}: unknown route key(s) {sorted(unknown)!r}")
    if "prefix" not in table or "upstream" not in table:
        raise ConfigError(f"{where}: a route needs both 'prefix' and 'upstream'")
    values = dict(table)
    values["prefix"] = _check_prefix(str(values["prefix"]), where)
    values["extra_file_hosts"] = tuple(
        _check_file_host(str(h), where) for h in values.get("extra_file_hosts", ())
    )
    route = RouteConfig(**values)
    return _finish_route(route, where, environ)


def _finish_route(route: RouteConfig, where: str, environ: Mapping[str, str]) -> RouteConfig:
    upstream, inline = _split_credentials(_check_upstream(route.upstream, where))
    credentials = inline
    if route.credentials_env:
        secret = environ.get(route.credentials_env)
        if secret is None:
            raise ConfigError(f"{where}: credentials_env {route.credentials_env!r} is not set")
        user, _, password = secret.partition(":")
        credentials = (user, password)
    if route.page_ttl < 0:
        raise ConfigError(f"{where}: page_ttl must be >= 0")
    return replace(route, upstream=upstream, credentials=credentials)


def _default_routes(environ: Mapping[str, str]) -> tuple[tuple[RouteConfig, ...], tuple[str, ...]]:
    # Imported here: discovery reads pip's configuration, which only the default needs.
    from proxy.default_index import discover_default_index

    try:
        found = discover_default_index(environ)
    except Exception as exc:  # NoDefaultIndex and anything pip's internals raise
        raise ConfigError(f"cannot choose an upstream for /simple: {exc}; pass --route /simple=URL") from exc
    simple = _finish_route(RouteConfig(prefix="/simple", upstream=found.url), "default /simple", environ)
    whl = RouteConfig(prefix="/whl", upstream=PYTORCH_INDEX_URL, keep_pruned=True)
    return (simple, whl), (f"/simple upstream from {found.source}",)


def _parse_cli_route(spec: str, environ: Mapping[str, str]) -> RouteConfig:
    prefix, sep, url = spec.partition("=")
    if not sep:
        raise ConfigError(f"--route wants /PREFIX=UPSTREAM_URL, got {spec!r}")
    route = RouteConfig(prefix=_check_prefix(prefix, "--route"), upstream=url)
    return _finish_route(route, f"--route {prefix}", environ)


def _merge_routes(base: Sequence[RouteConfig], extra: Sequence[RouteConfig]) -> tuple[RouteConfig, ...]:
    """``extra`` routes replace the upstream of a same-prefix ``base`` route, or are added."""
    merged = {r.prefix: r for r in base}
    for route in extra:
        old = merged.get(route.prefix)
        merged[route.prefix] = (
            replace(old, upstream=route.upstream, credentials=route.credentials or old.credentials)
            if old
            else route
        )
    return tuple(merged.values())


def _bool(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def _int(value: Any, name: str, minimum: int = 0) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from exc
    if number < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {number}")
    return number


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {str(path)!r}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from exc


def _apply_file(config: Config, data: Mapping[str, Any], environ: Mapping[str, str], where: str) -> Config:
    allowed = {"server", "cache", "upstream", "routes"}
    unknown = set(data) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {sorted(unknown)!r}")
    server, cache, upstream = data.get("server", {}), data.get("cache", {}), data.get("upstream", {})
    changes: dict[str, Any] = {}
    for key, value in server.items():
        if key in ("host", "log_format"):
            changes[key] = str(value)
        elif key in ("port", "workers"):
            changes[key] = _int(value, f"server.{key}", 1 if key == "workers" else 0)
        elif key == "offline":
            changes["offline"] = bool(value)
        else:
            raise ConfigError(f"{where}: unknown key server.{key}")
    for key, value in cache.items():
        if key == "dir":
            changes["cache_dir"] = Path(str(value)).expanduser()
        elif key == "max_size":
            changes["cache_max_size"] = parse_size(value)
        else:
            raise ConfigError(f"{where}: unknown key cache.{key}")
    for key, value in upstream.items():
        if key == "timeout":
            changes["upstream_timeout"] = float(value)
        elif key == "concurrency":
            changes["upstream_concurrency"] = _int(value, "upstream.concurrency", 1)
        else:
            raise ConfigError(f"{where}: unknown key upstream.{key}")
    if "routes" in data:
        routes = data["routes"]
        if not isinstance(routes, list):
            raise ConfigError(f"{where}: 'routes' must be an array of tables ([[routes]])")
        changes["routes"] = tuple(
            _route_from_table(t, f"{where} routes[{i}]", environ) for i, t in enumerate(routes)
        )
    return replace(config, **changes)


def _apply_env(config: Config, environ: Mapping[str, str]) -> tuple[Config, tuple[RouteConfig, ...]]:
    changes: dict[str, Any] = {}
    if "WHEELMELD_HOST" in environ:
        changes["host"] = environ["WHEELMELD_HOST"]
    if "WHEELMELD_PORT" in environ:
        changes["port"] = _int(environ["WHEELMELD_PORT"], "WHEELMELD_PORT")
    if "WHEELMELD_WORKERS" in environ:
        changes["workers"] = _int(environ["WHEELMELD_WORKERS"], "WHEELMELD_WORKERS", 1)
    if "WHEELMELD_CACHE_DIR" in environ:
        changes["cache_dir"] = Path(environ["WHEELMELD_CACHE_DIR"]).expanduser()
    if "WHEELMELD_CACHE_MAX_SIZE" in environ:
        changes["cache_max_size"] = parse_size(environ["WHEELMELD_CACHE_MAX_SIZE"])
    if "WHEELMELD_OFFLINE" in environ:
        changes["offline"] = _bool(environ["WHEELMELD_OFFLINE"], "WHEELMELD_OFFLINE")
    if "WHEELMELD_LOG_FORMAT" in environ:
        changes["log_format"] = environ["WHEELMELD_LOG_FORMAT"]
    routes = tuple(
        _parse_cli_route(spec, environ)
        for spec in environ.get("WHEELMELD_ROUTES", "").split(",")
        if spec.strip()
    )
    return replace(config, **changes), routes


def load_config(cli: CliOverrides | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Defaults < ``--config`` / ``WHEELMELD_CONFIG`` file < CLI flags < ``WHEELMELD_*`` variables."""
    cli = cli or CliOverrides()
    environ = os.environ if environ is None else environ
    config = Config()
    config_file = cli.config_file or (
        Path(environ["WHEELMELD_CONFIG"]) if environ.get("WHEELMELD_CONFIG") else None
    )
    if config_file is not None:
        config = _apply_file(config, _read_toml(config_file), environ, str(config_file))

    cli_changes: dict[str, Any] = {
        key: value
        for key, value in {
            "host": cli.host,
            "port": cli.port,
            "cache_dir": cli.cache_dir,
            "offline": cli.offline,
            "workers": cli.workers,
            "log_format": cli.log_format,
        }.items()
        if value is not None
    }
    config = replace(config, **cli_changes)
    cli_routes = tuple(_parse_cli_route(spec, environ) for spec in cli.routes)
    config, env_routes = _apply_env(config, environ)

    routes = _merge_routes(_merge_routes(config.routes, cli_routes), env_routes)
    notes: tuple[str, ...] = ()
    if not routes:
        # Built-in defaults only when nobody named a route: a user who names routes gets just those.
        routes, notes = _default_routes(environ)
    prefixes = [r.prefix for r in routes]
    if len(set(prefixes)) != len(prefixes):
        raise ConfigError(f"two routes share a prefix: {prefixes!r}")
    if config.log_format not in ("text", "json"):
        raise ConfigError(f"log_format must be 'text' or 'json', got {config.log_format!r}")
    if config.workers < 1:
        raise ConfigError("workers must be >= 1")
    return replace(config, routes=routes, notes=notes)
