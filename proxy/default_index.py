"""Which package index the user's Python tooling already uses, so ``/simple`` fronts it by default.

The default ``/simple`` route must front whatever index the user's uv or pip would use — a corporate
mirror is then fronted with no configuration, and wheelmeld never writes a registry's host name.
Discovery order, first hit wins:

1. ``UV_DEFAULT_INDEX``, then ``UV_INDEX_URL`` (uv's legacy name), then ``PIP_INDEX_URL``;
2. pip's configuration files, with pip's precedence: files are read global < user < site <
   ``PIP_CONFIG_FILE`` (user files skipped when that file exists; none at all when it is the null
   device), and any ``install.index-url`` beats any ``global.index-url`` — as ``pip install`` decides;
3. pip's own built-in default, read from the installed pip.

Files are listed by pip's own loader when pip is importable and would see the same environment we
were given; otherwise by a fallback that follows pip's documented locations with ``configparser``.

``is_self_reference`` tells the server an upstream points back at itself, so it can refuse to start
instead of proxying to itself forever.
"""

from __future__ import annotations

import configparser
import ipaddress
import os
import socket
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from proxy.network.ssrf import InvalidUpstreamURL, ip_literal, redact_url, validate_upstream_url

__all__ = [
    "ENV_VARIABLES",
    "DefaultIndexError",
    "DiscoveredIndex",
    "InvalidIndexURL",
    "NoDefaultIndex",
    "PipConfigFile",
    "UnreadablePipConfig",
    "discover_default_index",
    "index_url_from_pip_config",
    "is_self_reference",
    "pip_config_files",
]

# Checked in this order; the first one set to a non-blank value wins.
ENV_VARIABLES: tuple[str, ...] = ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "PIP_INDEX_URL")

# pip lets a command's own section override [global] whatever file each came from; the proxy
# fronts what ``pip install`` would use, so [install] is looked at first.
_SECTIONS: tuple[str, ...] = ("install", "global")

# The variables that decide which files pip's loader reads; if the caller's mapping disagrees with
# the process environment on any of them, pip's loader (which reads ``os.environ``) would answer
# for a different world, so the fallback is used instead.
_LOCATION_VARIABLES: tuple[str, ...] = (
    "PIP_CONFIG_FILE",
    "HOME",
    "USERPROFILE",
    "XDG_CONFIG_HOME",
    "XDG_CONFIG_DIRS",
    "APPDATA",
    "PROGRAMDATA",
)

Resolver = Callable[[str], Sequence[str]]


class DefaultIndexError(ValueError):
    """Base: no usable default index could be chosen."""


class NoDefaultIndex(DefaultIndexError):
    """Nothing names an index and pip's built-in default cannot be read."""


class InvalidIndexURL(DefaultIndexError):
    """A variable or config file names something that is not an http(s) index URL."""


class UnreadablePipConfig(DefaultIndexError):
    """A pip configuration file exists but cannot be parsed (pip itself would refuse it too)."""


@dataclass(frozen=True, slots=True)
class DiscoveredIndex:
    """An index URL (credentials kept, no trailing slash) and a phrase saying where it came from."""

    url: str
    source: str  # "env UV_DEFAULT_INDEX", "pip config /etc/pip.conf", "pip built-in default"

    def redacted(self) -> str:
        """The URL with any ``user:token@`` hidden, for logs and the start banner."""
        return redact_url(self.url)

    def __repr__(self) -> str:
        # Keep tokens out of tracebacks and debug logs that print the object.
        return f"DiscoveredIndex(url={self.redacted()!r}, source={self.source!r})"


@dataclass(frozen=True, slots=True)
class PipConfigFile:
    """One file pip may read: its kind ("global", "user", "site", "env") and its path."""

    kind: str
    path: Path


def discover_default_index(environ: Mapping[str, str] | None = None) -> DiscoveredIndex:
    """The index the user's uv/pip would use, by the order in this module's docstring."""
    env = os.environ if environ is None else environ
    for name in ENV_VARIABLES:
        value = env.get(name, "").strip()
        if value:
            return DiscoveredIndex(_normalize(value, f"env {name}"), f"env {name}")
    found = index_url_from_pip_config(pip_config_files(env))
    if found is not None:
        url, file = found
        source = f"pip config {file.path}"
        return DiscoveredIndex(_normalize(url, source), source)
    return DiscoveredIndex(_normalize(_pip_builtin_default(), "pip built-in default"), "pip built-in default")


def pip_config_files(
    environ: Mapping[str, str] | None = None, *, platform: str | None = None
) -> tuple[PipConfigFile, ...]:
    """The files pip reads, lowest priority first (later files override earlier ones).

    Asks pip's own loader when pip is importable and sees the same locations; otherwise follows
    pip's documented rules for ``platform`` (default: this one).
    """
    env = os.environ if environ is None else environ
    if platform is None and _pip_sees(env):
        listed = _files_from_pip()
        if listed is not None:
            return listed
    return _fallback_files(env, platform or sys.platform)


def index_url_from_pip_config(files: Iterable[PipConfigFile]) -> tuple[str, PipConfigFile] | None:
    """The ``index-url`` pip would use from ``files`` (lowest priority first), and the file it is in."""
    winners: dict[str, tuple[str, PipConfigFile]] = {}
    for file in files:
        values = _read_ini(file.path)
        for section in _SECTIONS:
            # Blank values are dropped, as pip drops them: they do not hide a lower file's value.
            value = values.get(section, "").strip()
            if value:
                winners[section] = (value, file)
    for section in _SECTIONS:
        if section in winners:
            return winners[section]
    return None


def is_self_reference(
    upstream_url: str, listen_host: str, listen_port: int, *, resolver: Resolver | None = None
) -> bool:
    """True when ``upstream_url`` would reach the proxy listening on ``listen_host:listen_port``.

    Conservative on purpose: a loopback upstream on the listening port counts as the proxy itself
    when the proxy listens on loopback or on every address — refusing a rare legitimate setup is
    better than a request loop. ``resolver`` (name → IP strings) replaces DNS in tests.
    """
    resolve = resolver or _resolve_sync
    parts = urlsplit(upstream_url.strip())
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    except ValueError:
        return False
    if port != listen_port or not parts.hostname:
        return False
    upstream = _addresses(parts.hostname, resolve)
    listen = _addresses(listen_host.strip("[]") or "0.0.0.0", resolve)
    wildcard = any(a.is_unspecified for a in listen)
    own = _own_addresses(resolve) if wildcard else set()
    for address in upstream:
        if address in listen:
            return True
        # Connecting to 0.0.0.0 / :: reaches this host, exactly like loopback does.
        local = address.is_loopback or address.is_unspecified
        if local and (wildcard or any(a.is_loopback for a in listen)):
            return True
        if address in own:
            return True
    return False


def _normalize(raw: str, source: str) -> str:
    try:
        url = validate_upstream_url(raw)
    except InvalidUpstreamURL as exc:
        raise InvalidIndexURL(f"{source}: {exc}") from exc
    parts = urlsplit(url)
    # Callers join paths onto the index URL, so it is returned without its trailing slash(es).
    return urlunsplit(parts._replace(path=parts.path.rstrip("/")))


def _pip_builtin_default() -> str:
    hint = "no index configured and pip's built-in default is unavailable; pass --route /simple=URL"
    try:
        # Imported here, never at module import: pip is optional and its internals are not an API.
        from pip._internal.models.index import PyPI  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise NoDefaultIndex(f"{hint} (pip is not importable: {exc})") from exc
    url = getattr(PyPI, "simple_url", None)
    if not isinstance(url, str) or not url:
        raise NoDefaultIndex(f"{hint} (pip's index model has no simple_url)")
    return url


def _pip_sees(environ: Mapping[str, str]) -> bool:
    return environ is os.environ or all(environ.get(k) == os.environ.get(k) for k in _LOCATION_VARIABLES)


def _files_from_pip() -> tuple[PipConfigFile, ...] | None:
    try:
        from pip._internal.configuration import (  # type: ignore[import-not-found,unused-ignore]
            OVERRIDE_ORDER,
            Configuration,
        )

        listed = {str(kind): paths for kind, paths in Configuration(isolated=False).iter_config_files()}
        order = [str(kind) for kind in OVERRIDE_ORDER]
    except Exception:  # pip absent, or its internals moved: the fallback knows the documented rules
        return None
    files: list[PipConfigFile] = []
    for kind in order:
        files.extend(PipConfigFile(kind, Path(p)) for p in listed.get(kind, ()))
    if any(f.kind == "env" and str(f.path) == os.devnull for f in files):
        return ()
    return tuple(files)


def _fallback_files(environ: Mapping[str, str], platform: str) -> tuple[PipConfigFile, ...]:
    env_file = environ.get("PIP_CONFIG_FILE")
    if env_file == os.devnull:
        # pip's documented switch for "read no configuration file at all".
        return ()
    windows = platform == "win32"
    basename = "pip.ini" if windows else "pip.conf"
    home = Path(environ.get("USERPROFILE" if windows else "HOME") or "~").expanduser()
    files = [PipConfigFile("global", d / basename) for d in _global_dirs(environ, platform)]
    if not (env_file and Path(env_file).exists()):
        # pip skips the user's files when PIP_CONFIG_FILE names an existing file.
        legacy = home / ("pip" if windows else ".pip") / basename
        files += [
            PipConfigFile("user", legacy),
            PipConfigFile("user", _user_dir(environ, platform, home) / basename),
        ]
    files.append(PipConfigFile("site", Path(sys.prefix) / basename))
    if env_file:
        files.append(PipConfigFile("env", Path(env_file)))
    return tuple(files)


def _global_dirs(environ: Mapping[str, str], platform: str) -> list[Path]:
    if platform == "win32":
        return [Path(environ.get("PROGRAMDATA", r"C:\ProgramData")) / "pip"]
    if platform == "darwin":
        return [Path("/Library/Application Support/pip")]
    xdg = environ.get("XDG_CONFIG_DIRS", "").strip() or "/etc/xdg"
    # pip reads every XDG config dir and then /etc as well, in that order.
    return [Path(d) / "pip" for d in xdg.split(os.pathsep) if d] + [Path("/etc")]


def _user_dir(environ: Mapping[str, str], platform: str, home: Path) -> Path:
    if platform == "win32":
        return Path(environ.get("APPDATA") or home / "AppData" / "Roaming") / "pip"
    if platform == "darwin":
        support = home / "Library" / "Application Support" / "pip"
        if support.is_dir():
            return support
        return home / ".config" / "pip"
    return Path(environ.get("XDG_CONFIG_HOME", "").strip() or home / ".config") / "pip"


def _read_ini(path: Path) -> dict[str, str]:
    """``{section: index-url}`` from one pip config file; {} when it does not exist."""
    if not path.is_file():
        return {}
    # Interpolation off and option names normalized as pip does ("index_url", "--index-url" work).
    parser = configparser.RawConfigParser()
    parser.optionxform = _pip_option_name  # type: ignore[assignment,method-assign]
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError, OSError) as exc:
        raise UnreadablePipConfig(f"pip config {str(path)!r} cannot be read: {exc}") from exc
    return {
        section: parser.get(section, "index-url")
        for section in _SECTIONS
        if parser.has_option(section, "index-url")
    }


def _pip_option_name(name: str) -> str:
    return name.lower().replace("_", "-").removeprefix("--")


def _addresses(host: str, resolve: Resolver) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    found: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    try:
        literal = ip_literal(host)
        texts: Sequence[str] = [literal.compressed] if literal is not None else resolve(host)
    except (OSError, ValueError):
        return found  # a name that does not resolve (or no valid address) cannot be us
    for text in texts:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            continue
        mapped = getattr(address, "ipv4_mapped", None)
        found.add(mapped or address)
    return found


def _own_addresses(resolve: Resolver) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    # Cheap and portable: what this machine's own name resolves to. Interface enumeration would
    # need a dependency; the loopback rule already covers the common self-reference.
    return _addresses(socket.gethostname(), resolve)


def _resolve_sync(host: str) -> list[str]:
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]
