"""Range reads of a wheel's METADATA through either client a route can use for them (httpx, the
client of everything else, and aiohttp): the same fetch policy on every redirect hop, credentials
for the route's origin only, the same errors, the same deadline. Real loopback upstreams: the
route's on 127.0.0.1, another host on 127.0.0.2 (a loopback address that is not its origin)."""

from __future__ import annotations

import asyncio

import pytest

from proxy.cache.store import PageKey
from proxy.config import RouteConfig
from proxy.errors import BlockedFetch, UpstreamError
from proxy.index.model import DistFile
from proxy.network.metadata_fetch import MetadataFetcher
from proxy.network.remote_zip import RemoteZipError, fetch_wheel_metadata
from proxy.network.ssrf import BlockedURL
from proxy.network.upstream import Upstream
from proxy.observe import Metrics
from tests.network.conftest import WHEEL, with_upstream
from tests.support.upstream import Fault, UpstreamServer

CLIENTS = ["httpx", "aiohttp"]


def _read(up: UpstreamServer, client: str, **route: object) -> bytes:
    async def go(upstream: Upstream) -> bytes:
        return (await fetch_wheel_metadata(upstream.reads, up.file_url(WHEEL), WHEEL)).metadata

    return with_upstream(up.url, client, go, **route)


@pytest.mark.parametrize("client", CLIENTS)
def test_a_redirect_to_an_allowed_host_is_followed_without_the_credentials(
    route_host: UpstreamServer, other_host: UpstreamServer, client: str
) -> None:
    target = other_host.file_url(WHEEL)
    route_host.inject_fault("/" + WHEEL, Fault(status=302, location=target))
    route = {"credentials": ("alice", "s3cr3t"), "extra_file_hosts": (other_host.url,)}
    assert _read(route_host, client, **route).startswith(b"Metadata-Version")
    first = route_host.requests_for("/" + WHEEL)
    assert first and all(r.headers.get("authorization", "").startswith("Basic ") for r in first)
    followed = other_host.log.records()
    assert followed and all(r.range for r in followed), "the Range header survives the redirect"
    assert all("authorization" not in r.headers for r in followed), "no secret to another host"


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("where", ["other loopback host", "private address"])
def test_a_redirect_outside_the_policy_is_refused_before_it_is_sent(
    route_host: UpstreamServer, other_host: UpstreamServer, client: str, where: str
) -> None:
    target = other_host.file_url(WHEEL) if where == "other loopback host" else "http://10.255.255.1/x.whl"
    route_host.inject_fault("/" + WHEEL, Fault(status=307, location=target))
    with pytest.raises(BlockedURL):
        _read(route_host, client)
    assert other_host.log.records() == (), "not one request reached the other host"


@pytest.mark.parametrize("client", CLIENTS)
def test_endless_redirects_are_a_remote_zip_error(route_host: UpstreamServer, client: str) -> None:
    route_host.inject_fault("/" + WHEEL, Fault(status=301, location=route_host.file_url(WHEEL)))
    with pytest.raises(RemoteZipError):
        _read(route_host, client)
    assert len(route_host.requests_for("/" + WHEEL)) == 6, "the first request and five redirects"


def _fetch_through_fetcher(up: UpstreamServer, client: str, timeout: float) -> bytes:
    async def go(upstream: Upstream) -> bytes:
        dist = DistFile(WHEEL, up.file_url(WHEEL), {}, None, False, False)
        fetcher = MetadataFetcher(Metrics())
        key = PageKey("simple", ("far",))
        return (await fetcher.fetch(key, dist, upstream, may_probe=False, sibling=True)).data

    return with_upstream(up.url, client, go, timeout=timeout)


@pytest.mark.parametrize("client", CLIENTS)
def test_the_upstream_timeout_bounds_a_whole_read(route_host: UpstreamServer, client: str) -> None:
    # Each chunk comes well within the timeout; the read as a whole does not.
    route_host.inject_fault("/" + WHEEL, Fault(chunk_size=1024, chunk_delay_ms=100))
    with pytest.raises(UpstreamError, match=r"longer than 0\.5 s"):
        _fetch_through_fetcher(route_host, client, timeout=0.5)


@pytest.mark.parametrize("client", CLIENTS)
def test_upstream_failures_are_one_upstream_error(route_host: UpstreamServer, client: str) -> None:
    route_host.inject_fault("/" + WHEEL, Fault(reset_after=10))
    with pytest.raises(UpstreamError, match="cannot read metadata of"):
        _fetch_through_fetcher(route_host, client, timeout=10)
    route_host.clear_faults()
    route_host.inject_fault("/" + WHEEL, Fault(status=500))
    with pytest.raises(UpstreamError, match="answered 500"):
        _fetch_through_fetcher(route_host, client, timeout=10)


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "http_proxy", "ALL_PROXY"])
def test_a_proxy_in_the_environment_keeps_pages_metadata_and_range_reads_on_httpx(
    route_host: UpstreamServer, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "http://proxy.example:3128")

    async def run() -> bool:
        config = RouteConfig(prefix="/simple", upstream=route_host.url + "/simple")
        upstream = Upstream(config, Metrics(), timeout=10, range_client="aiohttp")
        try:
            return upstream.reads is upstream.client
        finally:
            await upstream.aclose()

    assert asyncio.run(run())


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(
    ("location", "error"),
    [
        ("http://[::1/x.whl", UpstreamError),
        ("http://host:99999/x.whl", UpstreamError),
        ("http://10.255.255.1/x.whl", BlockedFetch),  # counted, answered 502 like any blocked fetch
    ],
)
def test_a_redirect_a_read_cannot_follow_is_an_upstream_error(
    route_host: UpstreamServer, client: str, location: str, error: type[UpstreamError]
) -> None:
    route_host.inject_fault("/" + WHEEL, Fault(status=302, location=location))
    with pytest.raises(error):
        _fetch_through_fetcher(route_host, client, timeout=10)
