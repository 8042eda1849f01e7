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
    "AuthConfig",
    "CliOverrides",
    "Config",
    "Credential",
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
_MAX_PORT = 65535


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
class Credential:
    """One ``[[auth.users]]`` or ``[[auth.tokens]]`` entry; ``secret_hash`` is ``scrypt$n$r$p$salt$hash``."""

    kind: str  # "user" (HTTP Basic with this name) or "token" (Bearer, or Basic with any name)
    name: str  # the user name; for a token, a label for the operator
    secret_hash: str = field(repr=False)
    routes: tuple[str, ...] = ("*",)  # route prefixes it may read; "*" = every route


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Access control (``proxy.server.auth``); no credentials means the proxy is open to anyone."""

    credentials: tuple[Credential, ...] = ()
    cache_ttl: float = 60.0  # seconds a verified credential is remembered (scrypt is slow on purpose)

    @property
    def enabled(self) -> bool:
        return bool(self.credentials)


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
    upstream_concurrency: int = 32  # metadata fetches under way at once per route (and as many for melds)
    upstream_max_page_bytes: int = 64 * 1024 * 1024  # a bigger page is refused (the last good one stays)
    upstream_file_idle_timeout: float = 30.0  # seconds without a byte before a file download is cut off
    upstream_file_min_rate: int = 65536  # bytes/s a download nobody reads any more must keep up
    routes: tuple[RouteConfig, ...] = ()
    auth: AuthConfig = field(default_factory=AuthConfig)
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


# What each route key must be in TOML; a value of another type is refused, never coerced
# (``bool("off")`` is True: coercing would turn ``meld = "off"`` into melding on).
_ROUTE_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "prefix": ((str,), "a string"),
    "upstream": ((str,), "a string"),
    "page_ttl": ((int, float), "a number"),
    "meld": ((bool,), "true or false"),
    "extra_file_hosts": ((list,), "an array of strings"),
    "allow_public_hosts": ((bool,), "true or false"),
    "keep_pruned": ((bool,), "true or false"),
    "credentials_env": ((str,), "a string"),
}


def _check_route_types(table: Mapping[str, Any], where: str) -> None:
    for key, value in table.items():
        types, wanted = _ROUTE_KEYS[key]
        # bool is an int in Python, but ``page_ttl = true`` is a mistake, not one second.
        wrong_bool = isinstance(value, bool) and bool not in types
        items_ok = key != "extra_file_hosts" or (
            isinstance(value, list) and all(isinstance(h, str) for h in value)
        )
        if not isinstance(value, types) or wrong_bool or not items_ok:
            raise ConfigError(f"{where}: route key {key!r} must be {wanted}, got {value!r}")


def _route_from_table(table: Mapping[str, Any], where: str, environ: Mapping[str, str]) -> RouteConfig:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: a route must be a table, got {table!r}")
    unknown = set(table) - set(_ROUTE_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown route key(s) {sorted(unknown)!r}")
    if "prefix" not in table or "upstream" not in table:
        raise ConfigError(f"{where}: a route needs both 'prefix' and 'upstream'")
    _check_route_types(table, where)
    values = dict(table)
    values["prefix"] = _check_prefix(values["prefix"], where)
    values["extra_file_hosts"] = tuple(_check_file_host(h, where) for h in values.get("extra_file_hosts", ()))
    if "page_ttl" in values:
        values["page_ttl"] = float(values["page_ttl"])
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


def _int(value: Any, name: str, minimum: int = 0, maximum: int | None = None) -> int:
    if isinstance(value, bool | float):
        raise ConfigError(f"{name} must be a whole number, got {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from exc
    if number < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise ConfigError(f"{name} must be <= {maximum}, got {number}")
    return number


def _positive_float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {value!r}") from exc
    if not number > 0 or number == float("inf"):
        raise ConfigError(f"{name} must be a number > 0, got {value!r}")
    return number


def _table_bool(value: Any, name: str) -> bool:
    # TOML has real booleans; a string here ("false") would be truthy if coerced.
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    return value


def _unique_prefixes(routes: Sequence[RouteConfig], where: str) -> tuple[RouteConfig, ...]:
    """Refuse two routes with one prefix in one source (across sources, a later one replaces)."""
    seen: set[str] = set()
    for route in routes:
        if route.prefix in seen:
            raise ConfigError(f"{where}: two routes share the prefix {route.prefix!r}")
        seen.add(route.prefix)
    return tuple(routes)


def _credential(table: Any, kind: str, where: str) -> Credential:
    from proxy.server.auth import SecretHash, SecretHashError

    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: must be a table with name, secret and routes")
    unknown = set(table) - {"name", "secret", "routes"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)!r}")
    name, secret, routes = table.get("name"), table.get("secret"), table.get("routes", ["*"])
    if not isinstance(name, str) or not name or ":" in name:
        raise ConfigError(f"{where}: 'name' must be a non-empty string without ':'")
    if not isinstance(secret, str):
        raise ConfigError(f"{where} ({name}): 'secret' must be a scrypt$... string")
    try:
        SecretHash.parse(secret)
    except SecretHashError as exc:
        raise ConfigError(f"{where} ({name}): {exc}") from exc
    if not isinstance(routes, list) or not routes or not all(isinstance(r, str) for r in routes):
        raise ConfigError(f"{where} ({name}): 'routes' must be a non-empty array of prefixes or \"*\"")
    prefixes = tuple(r if r == "*" else "/" + r.strip().strip("/") for r in routes)
    return Credential(kind=kind, name=name, secret_hash=secret, routes=prefixes)


def _auth_from_table(data: Any, where: str) -> AuthConfig:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: [auth] must be a table")
    unknown = set(data) - {"users", "tokens", "cache_ttl"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) auth.{sorted(unknown)!r}")
    credentials: list[Credential] = []
    for section, kind in (("users", "user"), ("tokens", "token")):
        entries = data.get(section, [])
        if not isinstance(entries, list):
            raise ConfigError(f"{where}: 'auth.{section}' must be an array of tables ([[auth.{section}]])")
        credentials += [_credential(t, kind, f"{where} auth.{section}[{i}]") for i, t in enumerate(entries)]
    users = [c.name for c in credentials if c.kind == "user"]
    if len(set(users)) != len(users):
        raise ConfigError(f"{where}: two [[auth.users]] share a name")
    ttl = _positive_float(data["cache_ttl"], "auth.cache_ttl") if "cache_ttl" in data else 60.0
    return AuthConfig(credentials=tuple(credentials), cache_ttl=ttl)


def _check_auth_routes(auth: AuthConfig, routes: Sequence[RouteConfig]) -> None:
    # A prefix that names no route is a typo that would lock its user out (or, worse, seem to work).
    known = {r.prefix for r in routes}
    for credential in auth.credentials:
        for prefix in credential.routes:
            if prefix != "*" and prefix not in known:
                raise ConfigError(
                    f"auth {credential.kind} {credential.name!r} lists {prefix!r}, which is no route "
                    f"(routes: {sorted(known)!r})"
                )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {str(path)!r}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from exc


def _apply_file(config: Config, data: Mapping[str, Any], environ: Mapping[str, str], where: str) -> Config:
    allowed = {"server", "cache", "upstream", "routes", "auth"}
    unknown = set(data) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {sorted(unknown)!r}")
    server, cache, upstream = data.get("server", {}), data.get("cache", {}), data.get("upstream", {})
    changes: dict[str, Any] = {}
    for key, value in server.items():
        if key in ("host", "log_format"):
            changes[key] = str(value)
        elif key == "port":
            changes["port"] = _int(value, "server.port", 0, _MAX_PORT)
        elif key == "workers":
            changes["workers"] = _int(value, "server.workers", 1)
        elif key == "offline":
            changes["offline"] = _table_bool(value, "server.offline")
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
            changes["upstream_timeout"] = _positive_float(value, "upstream.timeout")
        elif key == "concurrency":
            changes["upstream_concurrency"] = _int(value, "upstream.concurrency", 1)
        elif key in ("max_page_bytes", "file_min_rate"):
            changes[f"upstream_{key}"] = parse_size(value)
        elif key == "file_idle_timeout":
            changes["upstream_file_idle_timeout"] = _positive_float(value, "upstream.file_idle_timeout")
        else:
            raise ConfigError(f"{where}: unknown key upstream.{key}")
    if "routes" in data:
        routes = data["routes"]
        if not isinstance(routes, list):
            raise ConfigError(f"{where}: 'routes' must be an array of tables ([[routes]])")
        changes["routes"] = _unique_prefixes(
            [_route_from_table(t, f"{where} routes[{i}]", environ) for i, t in enumerate(routes)], where
        )
    if "auth" in data:
        changes["auth"] = _auth_from_table(data["auth"], where)
    return replace(config, **changes)


def _apply_env(config: Config, environ: Mapping[str, str]) -> tuple[Config, tuple[RouteConfig, ...]]:
    changes: dict[str, Any] = {}
    if "WHEELMELD_HOST" in environ:
        changes["host"] = environ["WHEELMELD_HOST"]
    if "WHEELMELD_PORT" in environ:
        changes["port"] = _int(environ["WHEELMELD_PORT"], "WHEELMELD_PORT", 0, _MAX_PORT)
    if "WHEELMELD_WORKERS" in environ:
        changes["workers"] = _int(environ["WHEELMELD_WORKERS"], "WHEELMELD_WORKERS", 1)
    if "WHEELMELD_CACHE_DIR" in environ:
        changes["cache_dir"] = Path(environ["WHEELMELD_CACHE_DIR"]).expanduser()
    if "WHEELMELD_CACHE_MAX_SIZE" in environ:
        changes["cache_max_size"] = parse_size(environ["WHEELMELD_CACHE_MAX_SIZE"])
    for name in ("max_page_bytes", "file_min_rate"):
        if f"WHEELMELD_UPSTREAM_{name.upper()}" in environ:
            changes[f"upstream_{name}"] = parse_size(environ[f"WHEELMELD_UPSTREAM_{name.upper()}"])
    if "WHEELMELD_UPSTREAM_FILE_IDLE_TIMEOUT" in environ:
        changes["upstream_file_idle_timeout"] = _positive_float(
            environ["WHEELMELD_UPSTREAM_FILE_IDLE_TIMEOUT"], "WHEELMELD_UPSTREAM_FILE_IDLE_TIMEOUT"
        )
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
    _check_auth_routes(config.auth, routes)
    if config.log_format not in ("text", "json"):
        raise ConfigError(f"log_format must be 'text' or 'json', got {config.log_format!r}")
    if config.workers < 1:
        raise ConfigError("workers must be >= 1")
    if config.upstream_max_page_bytes < 1:
        raise ConfigError("upstream.max_page_bytes must be > 0")
    return replace(config, routes=routes, notes=notes)
