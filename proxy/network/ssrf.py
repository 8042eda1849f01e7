"""The outbound-request boundary: which URLs the proxy may fetch (server-side request forgery guard).

A file link on an upstream page may point anywhere, including at the proxy's own network. The proxy
fetches a URL only when its scheme is http(s) and either

* its origin (scheme, host, port) is the route's upstream origin or one the config allows, or
* the route allows public hosts and the host resolves *only* to public addresses.

"Public" is decided on what the name resolves to, never on its spelling: numeric IPv4 spellings
(``2130706433``, ``0x7f.1``, ``017700000001``) are parsed as the addresses they are, IPv6 forms that
embed an IPv4 address (mapped, 6to4, NAT64) are judged by that address, and one private answer
among public ones blocks the name. Redirects are checked by calling ``check_url`` again per hop.

Known limit: the check and the later connection resolve the name separately, so a DNS answer that
changes in between (rebinding) is not caught here; the fetcher may pin the checked address.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from proxy.origins import (
    InvalidUpstreamURL,
    IPAddress,
    allowed_origin,
    ip_literal,
    origin_and_host,
    origin_of,
    redact_url,
    validate_upstream_url,
)

__all__ = [
    "BlockedURL",
    "FetchPolicy",
    "InvalidUpstreamURL",
    "Resolver",
    "check_url",
    "ip_literal",
    "is_public_address",
    "origin_of",
    "redact_url",
    "validate_upstream_url",
]

# host → IP strings; may be a coroutine function. Injected by tests so no test needs DNS.
Resolver = Callable[[str], Sequence[str] | Awaitable[Sequence[str]]]

# Seconds allowed for one name resolution: a stuck resolver must not hold a request forever.
_RESOLVE_TIMEOUT = 10.0
# Special-purpose ranges (IANA registries) that are never a public file host. Listed here rather than
# trusting ``is_global`` alone because its tables differ between Python releases; embedded IPv4
# forms (mapped, 6to4, NAT64 64:ff9b::/96) are unwrapped and judged as IPv4 before this list is used.
_NON_PUBLIC = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
        "224.0.0.0/4", "240.0.0.0/4",
        "::/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "3fff::/20", "5f00::/16",
        "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
    )
)  # fmt: skip
# Documentation ranges (TEST-NET-1/2/3, 2001:db8::/32) route to no real network, so no internal
# service lives there to be reached; but sandboxes and intercepting networks do answer public names
# with them (this project's own CI resolves the public index's file host into 203.0.113.0/24).
# Blocking them protects nothing and breaks the default route, so they count as public.
_DOCUMENTATION = tuple(
    ipaddress.ip_network(net)
    for net in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_METADATA = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})


class BlockedURL(Exception):
    """The proxy refuses to fetch this URL; ``str()`` names the URL (credentials hidden) and why."""

    def __init__(self, url: str, why: str) -> None:
        self.url = redact_url(url)
        self.why = why
        super().__init__(f"refusing to fetch {self.url!r}: {why}")


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    """Where one route may fetch from. Origins are normalized on construction (see ``origin_of``)."""

    upstream_origin: str  # "https://upstream.example:443"; any URL of that origin is accepted too
    allowed_origins: frozenset[str] = frozenset()
    allow_public_hosts: bool = True

    def __post_init__(self) -> None:
        # Normalizing here means "https://Upstream.example/simple/" and its origin compare equal.
        object.__setattr__(self, "upstream_origin", origin_of(self.upstream_origin))
        object.__setattr__(self, "allowed_origins", frozenset(map(allowed_origin, self.allowed_origins)))

    @classmethod
    def for_upstream(
        cls, upstream_url: str, extra_file_hosts: Iterable[str] = (), *, allow_public_hosts: bool = True
    ) -> FetchPolicy:
        """The policy of a route; ``extra_file_hosts`` are origins or bare host names (https)."""
        return cls(origin_of(upstream_url), frozenset(extra_file_hosts), allow_public_hosts)

    def names_origin(self, origin: str) -> bool:
        """True when ``origin`` (normalized) is the upstream's or an explicitly allowed one."""
        return origin == self.upstream_origin or origin in self.allowed_origins


async def check_url(url: str, policy: FetchPolicy, *, resolver: Resolver | None = None) -> str:
    """``url``'s origin (as ``origin_of``) if the proxy may fetch it under ``policy``; raise
    ``BlockedURL`` otherwise.

    Call it for the first request and again for every redirect target.
    """
    try:
        origin, host = origin_and_host(url)
    except InvalidUpstreamURL as exc:
        raise BlockedURL(url, str(exc)) from exc
    if policy.names_origin(origin):
        return origin
    if not policy.allow_public_hosts:
        raise BlockedURL(url, "host is neither the upstream nor an allowed file host")
    literal = ip_literal(host)
    addresses = [literal] if literal is not None else await _resolve(url, host, resolver)
    for address in addresses:
        if not is_public_address(address):
            raise BlockedURL(url, f"host resolves to non-public address {str(address)!r}")
    return origin


# Memoized: a pure function of an immutable value, and ``ipaddress``'s membership tests made it the
# largest part of the check of every request and hop (~9 us per address; a file host answers with
# the same eight addresses for every one of a cold lock's hundreds of reads).
@functools.lru_cache(maxsize=4096)
def is_public_address(address: IPAddress) -> bool:
    """True only for globally routable unicast addresses (judging embedded IPv4 by itself)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public_address(embedded)
    if address in _METADATA or any(address in net for net in _NON_PUBLIC):
        return False
    if any(address in net for net in _DOCUMENTATION):
        return True
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


async def _resolve(url: str, host: str, resolver: Resolver | None) -> list[IPAddress]:
    try:
        answer = resolver(host) if resolver is not None else _getaddrinfo(host)
        if inspect.isawaitable(answer):
            async with asyncio.timeout(_RESOLVE_TIMEOUT):
                texts = await answer
        else:
            texts = answer  # known already (a resolver's cache): nothing to wait for, nor to time
    except (OSError, TimeoutError) as exc:
        raise BlockedURL(url, f"host does not resolve: {exc}") from exc
    addresses: list[IPAddress] = []
    for text in texts:
        try:
            address = _address(text)
        except ValueError as exc:
            raise BlockedURL(url, f"resolver returned {text!r}, not an address") from exc
        addresses.append(address)
    if not addresses:
        raise BlockedURL(url, "host resolves to no address")
    return addresses


@functools.lru_cache(maxsize=4096)
def _address(text: str) -> IPAddress:
    """A resolver's answer as an address, parsed once per distinct text (memoized as above)."""
    # A scope id ("fe80::1%eth0") does not change what kind of address it is.
    return ipaddress.ip_address(text.split("%", 1)[0])


async def _getaddrinfo(host: str) -> Sequence[str]:
    # The event loop's getaddrinfo runs in its executor: resolution never blocks the loop.
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]
