"""URLs as the config and the fetch policy compare them: origins, hosts, credentials kept out of text.

Pure parsing, no I/O: the config checks its URLs with it, and the fetch policy
(``proxy.network.ssrf``) decides on the origins it computes.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import SplitResult, urlsplit, urlunsplit

__all__ = [
    "IPAddress",
    "InvalidUpstreamURL",
    "allowed_origin",
    "canonical_host",
    "ip_literal",
    "origin_and_host",
    "origin_of",
    "redact_url",
    "split_url",
    "validate_upstream_url",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_DEFAULT_PORTS = {"http": 80, "https": 443}
# A host made of digits, hex and dots is an IPv4 spelling to the C library, never a DNS name.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*\.?$", re.IGNORECASE)
_HOST_CHARS = re.compile(r"^[a-z0-9._-]+$")
# Anything here in an authority means two parsers may disagree about the host: refuse it.
_AMBIGUOUS = re.compile(r"[\\\s\x00-\x1f\x7f]")


class InvalidUpstreamURL(ValueError):
    """A configured URL is not an absolute http(s) URL with a host."""


def origin_of(url: str) -> str:
    """``scheme://host:port`` with the default port explicit, host lower-case IDNA, IPs canonical.

    Raises ``InvalidUpstreamURL`` for anything that is not an absolute http(s) URL with a host.
    """
    return origin_and_host(url)[0]


def origin_and_host(url: str) -> tuple[str, str]:
    """``origin_of(url)`` and the canonical host in it, from one parse of ``url``."""
    parts = split_url(url)
    host = canonical_host(parts, url)
    return _format_origin(parts.scheme.lower(), host, _port(parts, url)), host


def ip_literal(host: str) -> IPAddress | None:
    """The address ``host`` spells, in any form the C resolver accepts; ``None`` for a DNS name.

    Raises ``ValueError`` for a numeric-looking host that is no valid address (``256.1.1.1``).
    """
    if ":" in host:
        return ipaddress.IPv6Address(host.strip("[]"))  # raises ValueError itself
    if not _NUMERIC_HOST.match(host):
        return None
    return _parse_ipv4_spelling(host.removesuffix("."), host)


def validate_upstream_url(url: str) -> str:
    """A configured upstream URL, stripped of surrounding whitespace, if it is absolute http(s).

    Credentials and path are kept; raises ``InvalidUpstreamURL`` naming the problem.
    """
    text = url.strip()
    origin_of(text)  # raises for a bad scheme, host or port
    return text


def redact_url(url: str) -> str:
    """``url`` with any userinfo replaced by ``***`` so tokens never reach a log or an error."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def split_url(url: str) -> SplitResult:
    if _AMBIGUOUS.search(url):
        raise InvalidUpstreamURL(f"{redact_url(url)!r} contains whitespace, control or backslash characters")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InvalidUpstreamURL(f"{redact_url(url)!r} is not a URL: {exc}") from exc
    if parts.scheme.lower() not in _DEFAULT_PORTS:
        raise InvalidUpstreamURL(f"{redact_url(url)!r} is not an http(s) URL")
    if not parts.hostname:
        raise InvalidUpstreamURL(f"{redact_url(url)!r} has no host")
    return parts


def canonical_host(parts: SplitResult, url: str) -> str:
    host = parts.hostname or ""
    try:
        literal = ip_literal(host)
    except ValueError as exc:
        raise InvalidUpstreamURL(f"{redact_url(url)!r} has an invalid IP address host: {exc}") from exc
    if literal is not None:
        return f"[{literal.compressed}]" if literal.version == 6 else literal.compressed
    # One trailing dot names the same DNS host; the origin must not depend on it.
    name = host.removesuffix(".")
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise InvalidUpstreamURL(f"{redact_url(url)!r} has an invalid host name: {exc}") from exc
    if not _HOST_CHARS.match(ascii_name.lower()):
        raise InvalidUpstreamURL(f"{redact_url(url)!r} has an invalid host name")
    return ascii_name.lower()


def _port(parts: SplitResult, url: str) -> int:
    try:
        port = parts.port
    except ValueError as exc:
        raise InvalidUpstreamURL(f"{redact_url(url)!r} has an invalid port") from exc
    return port if port is not None else _DEFAULT_PORTS[parts.scheme.lower()]


def _format_origin(scheme: str, host: str, port: int) -> str:
    return f"{scheme}://{host}:{port}"


def allowed_origin(text: str) -> str:
    # Config may name a file host bare ("files.example"); https is the only sane default for that.
    stripped = text.strip()
    return origin_of(stripped if "://" in stripped else f"https://{stripped}")


def _parse_ipv4_spelling(text: str, host: str) -> ipaddress.IPv4Address:
    # inet_aton rules: 1-4 parts, each decimal, 0x-hex or 0-octal; the last part fills the rest.
    parts = text.split(".")
    if len(parts) > 4:
        raise ValueError(f"{host!r} has too many parts for an IPv4 address")
    numbers = [_ipv4_part(p, host) for p in parts]
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        raise ValueError(f"{host!r} is out of range for an IPv4 address")
    value = last
    for index, number in enumerate(head):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def _ipv4_part(part: str, host: str) -> int:
    lowered = part.lower()
    try:
        if lowered.startswith("0x"):
            return int(lowered[2:] or "0", 16)
        if len(lowered) > 1 and lowered.startswith("0"):
            return int(lowered, 8)
        return int(lowered, 10)
    except ValueError as exc:
        raise ValueError(f"{host!r} is not a valid IPv4 spelling") from exc
