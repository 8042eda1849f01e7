"""Pages and small files (PEP 658 metadata) through either client a route can use for them (httpx,
and aiohttp where range reads use it): the fetch policy on every hop, credentials for the route's
origin only, conditional requests, decoding with the caps on decoded bytes, one-line errors for
whatever a hostile upstream sends. Real loopback upstreams: the route's on 127.0.0.1, another host
on 127.0.0.2; faults below HTTP from a raw socket server."""

from __future__ import annotations

import gzip
import random
import tracemalloc
import zlib
from collections.abc import Callable

import pytest

from proxy.errors import BlockedFetch, UpstreamError
from proxy.network.upstream import PageFetch, Upstream
from proxy.observe import Metrics
from tests.network.conftest import MIB, WHEEL, with_upstream
from tests.support.raw_http import RawAnswers
from tests.support.stack import single_line
from tests.support.upstream import Fault, UpstreamServer

CLIENTS = ["httpx", "aiohttp"]


def _page(base: str, client: str, url: str = "", **kwargs: object) -> PageFetch:
    etag, modified = kwargs.pop("etag", None), kwargs.pop("last_modified", None)

    async def go(upstream: Upstream) -> PageFetch:
        return await upstream.fetch_page(url or base + "/simple/far/", etag=etag, last_modified=modified)  # type: ignore[arg-type]

    return with_upstream(base, client, go, **kwargs)


def _small(base: str, client: str, url: str, limit: int = 16 * MIB, **kwargs: object) -> bytes | None:
    async def go(upstream: Upstream) -> bytes | None:
        return await upstream.fetch_small(url, limit)

    return with_upstream(base, client, go, **kwargs)


@pytest.mark.parametrize("client", CLIENTS)
def test_a_page_redirected_to_an_allowed_host_reports_where_it_came_from_without_credentials(
    route_host: UpstreamServer, other_host: UpstreamServer, client: str
) -> None:
    target = other_host.url + "/files/far/"
    route_host.inject_fault("/simple/far/", Fault(status=302, location=target))
    route = {"credentials": ("alice", "s3cr3t"), "extra_file_hosts": (other_host.url,)}
    fetched = _page(route_host.url, client, **route)
    assert fetched.status == 200 and fetched.url == target, "relative links resolve against the last hop"
    assert b"far-1.0" in fetched.body and fetched.content_type.startswith("text/html")
    assert fetched.etag and fetched.last_modified
    first = route_host.requests_for("/simple/far/")
    assert first and all(r.headers.get("authorization", "").startswith("Basic ") for r in first)
    followed = other_host.log.records()
    assert followed and all("authorization" not in r.headers for r in followed), "no secret to another host"


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("what", ["page", "small"])
def test_a_redirect_outside_the_policy_is_refused_before_it_is_sent(
    route_host: UpstreamServer, other_host: UpstreamServer, client: str, what: str
) -> None:
    route_host.inject_fault("/far/", Fault(status=307, location=other_host.url + "/files/far/"))
    with pytest.raises(BlockedFetch):
        if what == "page":
            _page(route_host.url, client)
        else:
            _small(route_host.url, client, route_host.url + "/simple/far/")
    assert other_host.log.records() == (), "not one request reached the other host"


@pytest.mark.parametrize("client", CLIENTS)
def test_endless_redirects_are_one_upstream_error(route_host: UpstreamServer, client: str) -> None:
    route_host.inject_fault("/simple/far/", Fault(status=301, location=route_host.url + "/simple/far/"))
    with pytest.raises(UpstreamError) as raised:
        _page(route_host.url, client)
    assert single_line(raised.value.reason) and "/simple/far/" in raised.value.reason
    assert len(route_host.requests_for("/simple/far/")) == 6, "the first request and five redirects"


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("validator", ["etag", "last_modified"])
def test_a_conditional_request_that_upstream_answers_304(
    route_host: UpstreamServer, client: str, validator: str
) -> None:
    first = _page(route_host.url, client)
    value = first.etag if validator == "etag" else first.last_modified
    again = _page(route_host.url, client, **{validator: value})
    assert again.status == 304 and again.body == b"" and getattr(again, validator) == value
    sent = route_host.requests_for("/simple/far/")[-1].headers
    header = "if-none-match" if validator == "etag" else "if-modified-since"
    assert sent.get(header) == value


def _deflate(data: bytes, wbits: int) -> bytes:
    compressor = zlib.compressobj(wbits=wbits)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        ("gzip", gzip.compress),
        ("deflate", lambda data: _deflate(data, zlib.MAX_WBITS)),
        ("deflate", lambda data: _deflate(data, -zlib.MAX_WBITS)),  # raw deflate, as some servers send
        ("identity", lambda data: data),
    ],
)
def test_a_compressed_page_and_file_are_decoded_and_counted_decoded(
    route_host: UpstreamServer, client: str, coding: str, encode: Callable[[bytes], bytes]
) -> None:
    body = b"<a href='far-1.0-py3-none-any.whl'>x</a>\n" * 5000
    route_host.inject_fault("/far/", Fault(body=encode(body), content_encoding=coding))
    metrics = Metrics()
    assert _page(route_host.url, client, metrics=metrics).body == body
    assert metrics.upstream_bytes == len(body)
    assert _small(route_host.url, client, route_host.url + "/simple/far/") == body
    for record in route_host.requests_for("/far/"):
        assert record.headers.get("accept-encoding") == "gzip, deflate", "what is asked for is decoded"


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("what", ["page", "small"])
def test_a_decompression_bomb_is_cut_off_at_the_cap_in_bounded_memory(
    route_host: UpstreamServer, client: str, what: str
) -> None:
    bomb = gzip.compress(b"\0" * (200 * MIB), compresslevel=9)  # ~200 KiB on the wire
    route_host.inject_fault("/far/", Fault(body=bomb, content_encoding="gzip"))
    tracemalloc.start()
    try:
        with pytest.raises(UpstreamError, match="larger than 1048576 bytes") as raised:
            if what == "page":
                _page(route_host.url, client, max_page_bytes=MIB)
            else:
                _small(route_host.url, client, route_host.url + "/simple/far/", limit=MIB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert single_line(raised.value.reason)
    assert peak < 8 * MIB, f"peak {peak} bytes while inflating a bomb at a 1 MiB cap"


_TEXT = b"Metadata-Version: 2.1\nName: far\n" + random.Random(0).randbytes(20_000).hex().encode()


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(
    ("body", "coding"),
    [
        (gzip.compress(_TEXT)[:-200], "gzip"),  # honestly truncated: its Content-Length matches
        (gzip.compress(_TEXT) + b"trailing junk", "gzip"),
        (b"not gzip at all", "gzip"),
        (_TEXT, "br"),  # a coding that was not asked for: never taken for the plain text
    ],
)
def test_a_body_that_does_not_decode_is_one_upstream_error(
    route_host: UpstreamServer, client: str, body: bytes, coding: str
) -> None:
    route_host.inject_fault("/far/", Fault(body=body, content_encoding=coding))
    with pytest.raises(UpstreamError) as raised:
        _small(route_host.url, client, route_host.url + "/simple/far/")
    assert single_line(raised.value.reason) and "upstream failed" in raised.value.reason


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("status", [404, 410])
def test_a_missing_small_file_is_none(route_host: UpstreamServer, client: str, status: int) -> None:
    route_host.inject_fault(".metadata", Fault(status=status))
    assert _small(route_host.url, client, route_host.file_url(WHEEL) + ".metadata") is None
    route_host.clear_faults()
    assert _small(route_host.url, client, route_host.file_url(WHEEL) + ".metadata"), "then found"


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("what", ["page", "small"])
def test_another_status_is_an_upstream_error_naming_the_url_without_secrets(
    route_host: UpstreamServer, client: str, what: str
) -> None:
    route_host.inject_fault("/far/", Fault(status=503))
    url = route_host.url.replace("http://", "http://alice:s3cr3t@") + "/simple/far/?token=s3cr3t"
    with pytest.raises(UpstreamError, match="answered 503") as raised:
        if what == "page":
            _page(route_host.url, client, url=url)
        else:
            _small(route_host.url, client, url)
    assert "s3cr3t" not in raised.value.reason and "/simple/far/" in raised.value.reason


@pytest.mark.parametrize("client", CLIENTS)
def test_the_upstream_timeout_bounds_a_whole_page(route_host: UpstreamServer, client: str) -> None:
    # Each chunk comes well within the timeout; the page as a whole does not.
    route_host.inject_fault("/far/", Fault(chunk_size=64, chunk_delay_ms=100))
    with pytest.raises(UpstreamError, match=r"longer than 0\.5 s"):
        _page(route_host.url, client, timeout=0.5)


@pytest.mark.parametrize("client", CLIENTS)
def test_a_reset_mid_body_is_one_upstream_error(route_host: UpstreamServer, client: str) -> None:
    route_host.inject_fault("/far/", Fault(reset_after=100))
    with pytest.raises(UpstreamError, match="upstream failed") as raised:
        _page(route_host.url, client)
    assert single_line(raised.value.reason)


_HOSTILE = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\nshort",  # the body never reaches its length
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nbroken",  # a chunk breaks off
    b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\nbody",
    b"HTTP/1.1 200 OK\r\nno colon in this header\r\n\r\n",
    b"\x00\xffgarbage, not HTTP\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 20\r\n\r\n" + gzip.compress(_TEXT)[:20],
]


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("answer", _HOSTILE, ids=range(len(_HOSTILE)))
@pytest.mark.parametrize("what", ["page", "small"])
def test_a_hostile_answer_is_one_upstream_error(client: str, answer: bytes, what: str) -> None:
    with RawAnswers(answer) as raw, pytest.raises(UpstreamError) as raised:
        if what == "page":
            _page(raw.url, client)
        else:
            _small(raw.url, client, raw.url + "/simple/far/x.metadata")
    assert single_line(raised.value.reason)
