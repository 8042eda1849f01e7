"""The route and access-control tables of the configuration: ``[[routes]]``, ``/PREFIX=URL`` specs
(``--route``, ``WHEELMELD_ROUTES``) and ``[auth]``, read into frozen dataclasses.

``proxy.config`` layers them (file < environment < flags); this module reads one table or spec,
naming where it came from in every refusal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from proxy.config_values import POSITIVE_NUMBER, refuse_unknown
from proxy.errors import ConfigError
from proxy.origins import InvalidUpstreamURL, allowed_origin, validate_upstream_url
from proxy.secret_hash import SecretHash, SecretHashError

__all__ = [
    "AuthConfig",
    "Credential",
    "RouteConfig",
    "auth_from_table",
    "check_auth_routes",
    "finish_route",
    "merge_routes",
    "route_from_spec",
    "routes_from_tables",
]

_PREFIX_RE = re.compile(r"^(/[A-Za-z0-9][A-Za-z0-9._-]*)+$")
# Paths the proxy answers itself; a route there would hide them (or they the route).
_RESERVED = {
    "/healthz": "the health check",
    "/metrics": "the metrics",
    "/-": "wheelmeld's own pages (/-/status, /-/release/…)",
}


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
    run_ahead: bool = True  # meld what clients will likely ask for next (``meld.run_ahead_depth``)
    credentials_env: str | None = None  # name of an environment variable holding "user:password"
    # Resolved at load time from ``credentials_env`` or from userinfo in the upstream URL; never logged.
    credentials: tuple[str, str] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """A file-system-safe identity for the cache: the prefix without slashes."""
        return self.prefix.strip("/").replace("/", "_")

    def segments(self, path: str) -> tuple[str, ...]:
        """The non-empty segments of ``path`` below this route's prefix (``path`` starts with it)."""
        return tuple(s for s in path[len(self.prefix) :].split("/") if s)


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
    # The rule every fetch applies later (scheme, host, port), so a bad upstream is refused here in
    # one line rather than in every worker as it starts.
    try:
        validate_upstream_url(url)
    except InvalidUpstreamURL as exc:
        raise ConfigError(f"{where}: upstream must be an http(s) URL with a host: {exc}") from exc
    parts = urlsplit(url.strip())
    if parts.query or parts.fragment:
        raise ConfigError(f"{where}: upstream must not carry a query or fragment: {url!r}")
    return url.strip().rstrip("/")


def _check_file_host(host: str, where: str) -> str:
    """An origin (``https://files.example``) or a bare host name (meaning https)."""
    try:
        allowed_origin(host)
    except InvalidUpstreamURL as exc:
        raise ConfigError(f"{where}: extra_file_hosts entry {host!r} is not a host or origin: {exc}") from exc
    return host.rstrip("/")


def _check_prefix(prefix: str, where: str) -> str:
    prefix = "/" + prefix.strip().strip("/")
    for reserved, what in _RESERVED.items():
        if prefix == reserved or prefix.startswith(reserved + "/"):
            raise ConfigError(f"{where}: route prefix {prefix!r} is reserved for {what}")
    if not _PREFIX_RE.match(prefix):
        raise ConfigError(f"{where}: route prefix must look like /simple or /a/b, got {prefix!r}")
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
    "run_ahead": ((bool,), "true or false"),
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
    refuse_unknown(table, _ROUTE_KEYS, "route key", where)
    if "prefix" not in table or "upstream" not in table:
        raise ConfigError(f"{where}: a route needs both 'prefix' and 'upstream'")
    _check_route_types(table, where)
    values = dict(table)
    values["prefix"] = _check_prefix(values["prefix"], where)
    values["extra_file_hosts"] = tuple(_check_file_host(h, where) for h in values.get("extra_file_hosts", ()))
    if "page_ttl" in values:
        values["page_ttl"] = float(values["page_ttl"])
    route = RouteConfig(**values)
    return finish_route(route, where, environ)


def routes_from_tables(tables: Any, where: str, environ: Mapping[str, str]) -> tuple[RouteConfig, ...]:
    """A file's ``[[routes]]``; two with one prefix are refused (across layers, a later one replaces)."""
    if not isinstance(tables, list):
        raise ConfigError(f"{where}: 'routes' must be an array of tables ([[routes]])")
    routes = [_route_from_table(t, f"{where} routes[{i}]", environ) for i, t in enumerate(tables)]
    seen: set[str] = set()
    for route in routes:
        if route.prefix in seen:
            raise ConfigError(f"{where}: two routes share the prefix {route.prefix!r}")
        seen.add(route.prefix)
    return tuple(routes)


def finish_route(route: RouteConfig, where: str, environ: Mapping[str, str]) -> RouteConfig:
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


def route_from_spec(spec: str, where: str, environ: Mapping[str, str]) -> RouteConfig:
    """``/PREFIX=UPSTREAM_URL`` from ``where`` (``--route`` or ``WHEELMELD_ROUTES``)."""
    prefix, sep, url = spec.partition("=")
    if not sep:
        raise ConfigError(f"{where} wants /PREFIX=UPSTREAM_URL, got {spec!r}")
    route = RouteConfig(prefix=_check_prefix(prefix, where), upstream=url)
    return finish_route(route, f"{where} {prefix}", environ)


def merge_routes(base: Sequence[RouteConfig], extra: Sequence[RouteConfig]) -> tuple[RouteConfig, ...]:
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


def _credential(table: Any, kind: str, where: str) -> Credential:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: must be a table with name, secret and routes")
    refuse_unknown(table, ("name", "secret", "routes"), "key", where)
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


def auth_from_table(data: Any, where: str) -> AuthConfig:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: [auth] must be a table")
    refuse_unknown((f"auth.{k}" for k in data), ("auth.users", "auth.tokens", "auth.cache_ttl"), "key", where)
    credentials: list[Credential] = []
    for section, kind in (("users", "user"), ("tokens", "token")):
        entries = data.get(section, [])
        if not isinstance(entries, list):
            raise ConfigError(f"{where}: 'auth.{section}' must be an array of tables ([[auth.{section}]])")
        credentials += [_credential(t, kind, f"{where} auth.{section}[{i}]") for i, t in enumerate(entries)]
    users = [c.name for c in credentials if c.kind == "user"]
    if len(set(users)) != len(users):
        raise ConfigError(f"{where}: two [[auth.users]] share a name")
    ttl = (
        POSITIVE_NUMBER.typed(data["cache_ttl"], f"auth.cache_ttl in {where}")
        if "cache_ttl" in data
        else 60.0
    )
    return AuthConfig(credentials=tuple(credentials), cache_ttl=ttl)


def check_auth_routes(auth: AuthConfig, routes: Sequence[RouteConfig]) -> None:
    # A prefix that names no route is a typo that would lock its user out (or, worse, seem to work).
    known = {r.prefix for r in routes}
    for credential in auth.credentials:
        for prefix in credential.routes:
            if prefix != "*" and prefix not in known:
                raise ConfigError(
                    f"auth {credential.kind} {credential.name!r} lists {prefix!r}, which is no route "
                    f"(routes: {sorted(known)!r})"
                )
