"""The outbound-request boundary (``proxy.network.ssrf``): which URLs the proxy may fetch.

Every lookup goes through a fake resolver, so no test needs DNS or any network at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Mapping, Sequence

import pytest

from proxy.network.ssrf import (
    BlockedURL,
    FetchPolicy,
    InvalidUpstreamURL,
    check_url,
    ip_literal,
    is_public_address,
    origin_of,
    redact_url,
    validate_upstream_url,
)

UPSTREAM = "https://upstream.example/simple/"
PUBLIC_V4 = "93.184.215.14"
PUBLIC_V6 = "2606:2800:21f:cb07:6820:80da:af6b:8b2c"

# name → what the fake DNS answers; a name missing here fails the test if it is ever looked up.
DNS: Mapping[str, Sequence[str]] = {
    "files.example": [PUBLIC_V4],
    "v6files.example": [PUBLIC_V6],
    "both.example": [PUBLIC_V4, PUBLIC_V6],
    "split.example": [PUBLIC_V4, "10.0.0.7"],
    "split6.example": [PUBLIC_V6, "fd12::1"],
    "inside.example": ["192.168.1.20"],
    "metadata.example": ["169.254.169.254"],
    "rebind.example": ["127.0.0.1"],
    "scoped.example": ["fe80::1%eth0"],
    "empty.example": [],
    "garbage.example": ["not-an-ip"],
    "localhost": ["127.0.0.1", "::1"],
}


class FakeResolver:
    """Answers from ``DNS`` and records every name asked, so tests can assert none was needed."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, host: str) -> Sequence[str]:
        self.asked.append(host)
        if host == "nxdomain.example":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return DNS[host]


def run_check(url: str, policy: FetchPolicy | None = None, resolver: FakeResolver | None = None) -> None:
    policy = policy or FetchPolicy.for_upstream(UPSTREAM)
    asyncio.run(check_url(url, policy, resolver=resolver or FakeResolver()))


# --- origin_of -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://upstream.example/simple/", "https://upstream.example:443"),
        ("https://UPSTREAM.Example/simple/", "https://upstream.example:443"),
        ("HTTPS://upstream.example", "https://upstream.example:443"),
        ("https://upstream.example./x", "https://upstream.example:443"),
        ("https://upstream.example:443/x", "https://upstream.example:443"),
        ("http://upstream.example:80/x", "http://upstream.example:80"),
        ("http://upstream.example/x", "http://upstream.example:80"),
        ("https://upstream.example:8443/x", "https://upstream.example:8443"),
        ("https://user:tok@upstream.example/x", "https://upstream.example:443"),
        ("http://upstream.example@127.0.0.1/", "http://127.0.0.1:80"),
        ("https://bücher.example/", "https://xn--bcher-kva.example:443"),
        ("http://127.0.0.1:8080/simple", "http://127.0.0.1:8080"),
        ("http://2130706433/", "http://127.0.0.1:80"),
        ("http://0x7f.1/", "http://127.0.0.1:80"),
        ("http://0x7f000001/", "http://127.0.0.1:80"),
        ("http://017700000001/", "http://127.0.0.1:80"),
        ("http://127.1/", "http://127.0.0.1:80"),
        ("http://127.0.0.1./", "http://127.0.0.1:80"),
        ("http://[::1]:9000/", "http://[::1]:9000"),
        ("http://[0:0:0:0:0:0:0:1]/", "http://[::1]:80"),
        ("http://[::FFFF:7F00:1]/", "http://[::ffff:7f00:1]:80"),
    ],
)
def test_origin_of(url: str, expected: str) -> None:
    assert origin_of(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "ftp://upstream.example/simple",
        "file:///etc/passwd",
        "upstream.example/simple",
        "/simple/torch/",
        "https:///simple",
        "https://upstream.example:99999/",
        "https://upstream.example:port/",
        "http://256.0.0.1/",
        "http://1.2.3.4.5/",
        "http://[::1/",
        "http://up stream.example/",
        "http://127.0.0.1\\@upstream.example/",
        "http://upstream.example\t/",
        "http://a..b.example/",
        "http://%31%32%37.0.0.1/",
    ],
)
def test_origin_of_rejects(url: str) -> None:
    with pytest.raises(InvalidUpstreamURL):
        origin_of(url)


# --- addresses -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "0.0.0.0",
        "0.1.2.3",
        "10.1.2.3",
        "100.64.0.1",
        "100.127.255.254",
        "127.0.0.1",
        "127.255.255.254",
        "169.254.169.254",
        "169.254.1.1",
        "172.16.0.1",
        "172.31.255.255",
        "192.0.0.8",
        "192.168.0.1",
        "198.18.0.1",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "::127.0.0.1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::7f00:1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::1",
        "2002:7f00:1::1",
        "2002:c0a8:1::1",
        "2001::1",
        "fc00::1",
        "fd00:ec2::254",
        "fe80::1",
        "fec0::1",
        "ff02::1",
        "ff0e::1",
        "100::1",
    ],
)
def test_non_public_addresses(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address",
    [
        PUBLIC_V4,
        "8.8.8.8",
        "1.1.1.1",
        PUBLIC_V6,
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
        # documentation ranges: routed nowhere, used by intercepting networks (see ssrf._DOCUMENTATION)
        "192.0.2.1",
        "198.51.100.1",
        "203.0.113.80",
        "2001:db8::1",
    ],
)
def test_public_addresses(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("upstream.example", None),
        ("1e100.example", None),
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0X7F.0.0.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("10.1.258", "10.1.1.2"),
        ("0", "0.0.0.0"),
        ("[::1]", "::1"),
        ("::ffff:127.0.0.1", "::ffff:7f00:1"),
    ],
)
def test_ip_literal(host: str, expected: str | None) -> None:
    found = ip_literal(host)
    assert (found.compressed if found is not None else None) == expected


@pytest.mark.parametrize("host", ["256.1.1.1", "1.2.3.4.5", "1.2.65536", "4294967296", "08.1.1.1", "::zz"])
def test_ip_literal_rejects(host: str) -> None:
    with pytest.raises(ValueError):
        ip_literal(host)


# --- check_url -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://upstream.example/simple/torch/torch-2.5.1-cp311-none-any.whl",
        "https://UPSTREAM.EXAMPLE./files/x.whl",
        "https://upstream.example:443/files/x.whl",
        "https://files.example/packages/x.whl",
        "http://files.example/packages/x.whl",
        "https://v6files.example/x.whl",
        "https://both.example/x.whl",
        f"https://{PUBLIC_V4}/x.whl",
        f"https://[{PUBLIC_V6}]/x.whl",
        "https://[::ffff:8.8.8.8]/x.whl",
    ],
)
def test_allowed(url: str) -> None:
    run_check(url)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://files.example/x.whl", "not an http(s) URL"),
        ("file:///etc/passwd", "not an http(s) URL"),
        ("https://inside.example/x.whl", "non-public address '192.168.1.20'"),
        ("https://metadata.example/latest/", "non-public address '169.254.169.254'"),
        ("https://rebind.example/x.whl", "non-public address '127.0.0.1'"),
        ("https://split.example/x.whl", "non-public address '10.0.0.7'"),
        ("https://split6.example/x.whl", "non-public address 'fd12::1'"),
        ("https://scoped.example/x.whl", "non-public address 'fe80::1'"),
        ("https://empty.example/x.whl", "resolves to no address"),
        ("https://garbage.example/x.whl", "not an address"),
        ("https://nxdomain.example/x.whl", "does not resolve"),
        ("http://127.0.0.1/x.whl", "non-public"),
        ("http://localhost.:8000/x.whl", "non-public address '127.0.0.1'"),
        ("http://2130706433/x.whl", "non-public address '127.0.0.1'"),
        ("http://0x7f.1/x.whl", "non-public address '127.0.0.1'"),
        ("http://017700000001/x.whl", "non-public address '127.0.0.1'"),
        ("http://0/x.whl", "non-public address '0.0.0.0'"),
        ("http://169.254.169.254/latest/meta-data/", "non-public"),
        ("http://[::1]/x.whl", "non-public"),
        ("http://[::ffff:127.0.0.1]/x.whl", "non-public"),
        ("http://[::ffff:7f00:1]/x.whl", "non-public"),
        ("http://[64:ff9b::a9fe:a9fe]/x.whl", "non-public"),
        ("http://[fd00:ec2::254]/x.whl", "non-public"),
        ("http://[fe80::1%25eth0]/x.whl", "non-public"),
        ("http://upstream.example@127.0.0.1/x.whl", "non-public"),
        ("http://user:secret@10.0.0.1/x.whl", "non-public"),
        ("http://127.0.0.1\\@upstream.example/x.whl", "backslash"),
        ("http://256.256.256.256/x.whl", "invalid IP address"),
    ],
)
def test_blocked(url: str, why: str) -> None:
    resolver = FakeResolver()
    with pytest.raises(BlockedURL) as caught:
        run_check(url, resolver=resolver)
    assert why in str(caught.value)
    assert "\n" not in str(caught.value)


def test_literal_hosts_never_reach_the_resolver() -> None:
    resolver = FakeResolver()
    for url in ("http://2130706433/", "http://0x7f.1/", f"https://{PUBLIC_V4}/", "http://[::1]/"):
        with contextlib.suppress(BlockedURL):
            run_check(url, resolver=resolver)
    assert resolver.asked == []


def test_blocked_message_hides_credentials() -> None:
    with pytest.raises(BlockedURL) as caught:
        run_check("http://user:s3cret-token@10.0.0.1/x.whl")
    assert "s3cret-token" not in str(caught.value)
    assert "user" not in str(caught.value)
    assert caught.value.url == "http://***@10.0.0.1/x.whl"


def test_loopback_upstream_is_allowed_by_origin() -> None:
    # Tests run their upstream on 127.0.0.1: the route's own origin is trusted without resolution.
    policy = FetchPolicy.for_upstream("http://127.0.0.1:8765/simple/")
    resolver = FakeResolver()
    run_check("http://127.0.0.1:8765/files/x.whl", policy, resolver)
    assert resolver.asked == []
    # ... but only that origin: another port or scheme on loopback is not the upstream.
    for other in ("http://127.0.0.1:8766/x.whl", "https://127.0.0.1:8765/x.whl", "http://localhost:8765/x"):
        with pytest.raises(BlockedURL):
            run_check(other, policy)


def test_allowed_origins_are_normalized_and_exact() -> None:
    policy = FetchPolicy(
        "https://upstream.example/",
        frozenset({"http://10.0.0.5:8080/", "mirror-files.example", "HTTPS://Other.Example:443"}),
        allow_public_hosts=False,
    )
    assert policy.upstream_origin == "https://upstream.example:443"
    assert policy.allowed_origins == frozenset(
        {"http://10.0.0.5:8080", "https://mirror-files.example:443", "https://other.example:443"}
    )
    for ok in (
        "http://10.0.0.5:8080/x.whl",
        "https://mirror-files.example/x.whl",
        "https://other.example./x.whl",
        "https://upstream.example:443/x.whl",
    ):
        run_check(ok, policy)
    for bad in ("http://10.0.0.5/x.whl", "http://mirror-files.example/x.whl", "https://files.example/x.whl"):
        with pytest.raises(BlockedURL, match="neither the upstream nor an allowed file host"):
            run_check(bad, policy)


def test_public_hosts_off_needs_no_resolution() -> None:
    policy = FetchPolicy.for_upstream(UPSTREAM, allow_public_hosts=False)
    resolver = FakeResolver()
    with pytest.raises(BlockedURL):
        run_check("https://files.example/x.whl", policy, resolver)
    assert resolver.asked == []


def test_async_resolver_is_awaited() -> None:
    async def resolver(host: str) -> list[str]:
        await asyncio.sleep(0)
        return list(DNS[host])

    policy = FetchPolicy.for_upstream(UPSTREAM)
    asyncio.run(check_url("https://files.example/x.whl", policy, resolver=resolver))
    with pytest.raises(BlockedURL):
        asyncio.run(check_url("https://inside.example/x.whl", policy, resolver=resolver))


def test_default_resolver() -> None:
    # "localhost" is answered by the host itself (hosts file), never by DNS on the network.
    async def main() -> None:
        with pytest.raises(BlockedURL, match="non-public address"):
            await check_url("http://localhost:1/x", FetchPolicy.for_upstream(UPSTREAM))

    asyncio.run(main())


def test_redirect_chain_checked_per_hop() -> None:
    # The caller checks each Location it is about to follow; one bad hop stops the chain.
    policy = FetchPolicy.for_upstream(UPSTREAM)
    hops = ["https://upstream.example/x.whl", "https://files.example/x.whl", "http://2130706433/x.whl"]
    results = []
    for hop in hops:
        try:
            run_check(hop, policy)
            results.append("ok")
        except BlockedURL:
            results.append("blocked")
    assert results == ["ok", "ok", "blocked"]


# --- validate_upstream_url / redact_url -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("  https://upstream.example/simple/ \n", "https://upstream.example/simple/"),
        ("http://user:tok@127.0.0.1:9000/simple", "http://user:tok@127.0.0.1:9000/simple"),
    ],
)
def test_validate_upstream_url(url: str, expected: str) -> None:
    assert validate_upstream_url(url) == expected


@pytest.mark.parametrize(
    "url", ["", "upstream.example", "ftp://upstream.example/", "https://", "http://:80/"]
)
def test_validate_upstream_url_rejects(url: str) -> None:
    with pytest.raises(InvalidUpstreamURL):
        validate_upstream_url(url)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://upstream.example/simple", "https://upstream.example/simple"),
        ("https://tok@upstream.example/simple", "https://***@upstream.example/simple"),
        ("https://u:p@ss@upstream.example:8443/s", "https://***@upstream.example:8443/s"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected
