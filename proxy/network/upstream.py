"""Talking to one route's upstream: pages with validators, PEP 658 files, wheels, inside the fetch policy.

Each route owns one pooled ``httpx.AsyncClient`` (pooling is what makes a cold meld of 50 siblings
finish in a second instead of timing out: docs/meld-contract.md). The client's request hook checks every hop
against the route's ``FetchPolicy`` — redirects included, because httpx runs request hooks for each
redirected request too — so code handed the client (the remote-zip reader) cannot step outside it.
Credentials go only to the upstream's own origin (``_OriginAuth``), never to a file host it links to.
The GETs a cold lock makes by the hundred (pages, PEP 658 files, wheels' range reads) go through
``Upstream.reads``: an aiohttp client (``range_client.py``) that keeps the same policy, resolver and
credential rule, or this same httpx client. Either way the body is decoded here
(``content_coding.py``), so size caps count decoded bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Generator, Iterable, Mapping
from dataclasses import dataclass

import httpx

from proxy.config import RouteConfig
from proxy.errors import BlockedFetch, UpstreamError
from proxy.network.client_errors import HTTP_CLIENT_ERRORS
from proxy.network.content_coding import ACCEPT_ENCODING, ContentDecoder
from proxy.network.range_client import AioRangeClient, FetchClient, RangeResponse
from proxy.network.remote_zip import METADATA_SIZE_CAP
from proxy.network.ssrf import BlockedURL, FetchPolicy, check_url, origin_of, redact_url
from proxy.observe import Metrics, upstream_time

__all__ = ["PageFetch", "Upstream"]

# Ask for PEP 691 JSON first; HTML-only upstreams (the PyTorch index) ignore Accept and send HTML.
PAGE_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"
)
_USER_AGENT = "wheelmeld (caching simple-index proxy)"


class _CachingResolver:
    """Name -> addresses for the fetch policy, looked up once per name and minute.

    Many concurrent ``getaddrinfo`` calls for one name (a cold meld checks 50 sibling URLs on one
    file host at once) made some resolvers stall for 5 s per call; one shared lookup never does.
    """

    def __init__(self, ttl: float = 60.0) -> None:
        self._ttl = ttl
        self._answers: dict[str, tuple[float, list[str]]] = {}
        self._pending: dict[str, asyncio.Task[list[str]]] = {}

    def __call__(self, host: str) -> list[str] | Awaitable[list[str]]:
        """The addresses, or (on a miss) an awaitable of them: a hit costs the policy check no timer."""
        cached = self._answers.get(host)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        task = self._pending.get(host)
        if task is None:
            # A task of its own: a requester that is cancelled (its client hung up) must not cancel
            # the lookup every other requester of this host is waiting on.
            task = asyncio.get_running_loop().create_task(self._lookup(host))
            self._pending[host] = task
            task.add_done_callback(lambda _t: self._pending.pop(host, None))
        return asyncio.shield(task)

    async def _lookup(self, host: str) -> list[str]:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        answer = [str(info[4][0]) for info in infos]
        self._answers[host] = (time.monotonic() + self._ttl, answer)
        return answer


def _make_client(
    policy: FetchPolicy, auth: httpx.Auth | None, timeout: float, resolver: _CachingResolver
) -> httpx.AsyncClient:
    async def check_hop(request: httpx.Request) -> None:
        await check_url(str(request.url), policy, resolver=resolver)

    # HTTP/2 where the upstream offers it: a cold meld's fifty sibling fetches share one connection
    # instead of opening fifty (measured: 200 metadata files in 0.8 s over h2 vs 1.4 s over 16 h1.1).
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
    return httpx.AsyncClient(
        http2=True,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        limits=limits,
        # A connect that fails or times out is retried (twice) before it becomes a 502: a burst of
        # new connections to a file host sometimes loses one, and nothing was sent yet.
        transport=httpx.AsyncHTTPTransport(retries=2, limits=limits, trust_env=True, http2=True),
        follow_redirects=True,
        max_redirects=5,
        headers={"User-Agent": _USER_AGENT},
        event_hooks={"request": [check_hop]},
        auth=auth,
        trust_env=True,  # a corporate HTTPS proxy set in the environment is honoured
    )


class _OriginAuth(httpx.Auth):
    """Basic auth for the upstream's own origin only: file links to other hosts get no secret."""

    def __init__(self, origin: str, user: str, password: str) -> None:
        self._origin = origin
        self._basic = httpx.BasicAuth(user, password)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if origin_of(str(request.url)) == self._origin:
            yield from self._basic.auth_flow(request)
        else:
            yield request


@dataclass(frozen=True, slots=True)
class PageFetch:
    status: int  # 200, 304 or 404
    body: bytes = b""
    content_type: str = ""
    etag: str | None = None
    last_modified: str | None = None
    url: str = ""  # the final URL, after redirects (relative links resolve against it)


class Upstream:
    """One route's view of the network: its base URL, its policy, its credentials."""

    def __init__(
        self,
        route: RouteConfig,
        metrics: Metrics,
        timeout: float,
        metadata_concurrency: int = 16,
        *,
        max_page_bytes: int = 64 * 1024 * 1024,
        range_client: str = "aiohttp",
    ) -> None:
        self.route = route
        self._timeout = timeout  # bounds a whole page or metadata fetch, and a file's headers
        self._max_page_bytes = max_page_bytes
        self._metrics = metrics
        self.base = route.upstream
        self.policy = FetchPolicy.for_upstream(
            route.upstream, route.extra_file_hosts, allow_public_hosts=route.allow_public_hosts
        )
        self._auth: httpx.Auth | None = (
            _OriginAuth(self.policy.upstream_origin, *route.credentials) if route.credentials else None
        )
        resolver = _CachingResolver()
        self.client = _make_client(self.policy, self._auth, timeout, resolver)
        # The GETs a cold lock makes by the hundred (pages, PEP 658 files, wheels' range reads):
        # aiohttp unless asked otherwise, or unless the environment names a proxy (then httpx, whose
        # proxy rules users know: range_client.py says why).
        self.reads: FetchClient = self.client
        if range_client == "aiohttp" and not _environment_proxies():
            self.reads = AioRangeClient(
                self.policy, resolver, timeout=timeout, credentials=route.credentials, user_agent=_USER_AGENT
            )
        # Route-wide gates for metadata fetches, whatever the number of melds under way: uv asks for
        # many releases at once, and 64 new connections at once to one file host lost connects to
        # timeouts (measured with the real index's host). Siblings fetched for melds have a gate of
        # their own, so the wheel a client asked for never queues behind someone else's big meld.
        self.sibling_gate = asyncio.Semaphore(metadata_concurrency)
        self.direct_gate = asyncio.Semaphore(metadata_concurrency)

    async def aclose(self) -> None:
        await self.client.aclose()
        if isinstance(self.reads, AioRangeClient):
            await self.reads.aclose()

    def url_for(self, path_segments: tuple[str, ...], trailing_slash: bool = True) -> str:
        path = "/".join(path_segments)
        return f"{self.base}/{path}/" if trailing_slash and path else f"{self.base}/{path}"

    @contextlib.contextmanager
    def errors(self, url: str) -> Generator[None, None, None]:
        """Turn what httpx and the policy raise into our one tree, with a one-line reason."""
        try:
            yield
        except BlockedURL as exc:
            self._metrics.blocked_fetches += 1
            logging.getLogger("wheelmeld").warning("blocked: %s", exc)
            raise BlockedFetch(str(exc)) from exc
        except httpx.TimeoutException as exc:
            raise UpstreamError(f"upstream timed out: {_redact(url)}") from exc
        except httpx.TooManyRedirects as exc:
            raise UpstreamError(f"upstream redirected too often: {_redact(url)}") from exc
        except HTTP_CLIENT_ERRORS as exc:
            raise UpstreamError(f"upstream failed ({type(exc).__name__}): {_redact(url)}") from exc

    async def fetch_page(
        self, url: str, *, etag: str | None = None, last_modified: str | None = None
    ) -> PageFetch:
        headers = {"Accept": PAGE_ACCEPT, "Accept-Encoding": ACCEPT_ENCODING}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        with self.errors(url), upstream_time():
            async with self.deadline(url), self.reads.stream("GET", url, headers=headers) as response:
                # Counted once an answer came, its body bytes once read (an error's body is not read).
                self._metrics.upstream_request("page")
                if response.status_code == 304:
                    return PageFetch(304, etag=etag, last_modified=last_modified, url=str(response.url))
                if response.status_code in (404, 410):
                    return PageFetch(404, url=str(response.url))
                if response.status_code != 200:
                    raise UpstreamError(f"upstream answered {response.status_code} for {_redact(url)}")
                body = await _read_capped(response, self._max_page_bytes, "page", url)
                self._metrics.upstream_bytes += len(body)
        return PageFetch(
            200,
            body=body,
            content_type=response.headers.get("content-type", ""),
            etag=response.headers.get("etag"),
            last_modified=response.headers.get("last-modified"),
            url=str(response.url),
        )

    async def fetch_small(self, url: str, limit: int = METADATA_SIZE_CAP) -> bytes | None:
        """A small file (PEP 658 metadata): its bytes, or ``None`` when upstream has none (404)."""
        with self.errors(url), upstream_time():
            headers = {"Accept-Encoding": ACCEPT_ENCODING}
            async with self.deadline(url), self.reads.stream("GET", url, headers=headers) as response:
                if response.status_code in (404, 410):
                    return None
                if response.status_code != 200:
                    raise UpstreamError(f"upstream answered {response.status_code} for {_redact(url)}")
                return await _read_capped(response, limit, "file", url)

    @contextlib.asynccontextmanager
    async def deadline(self, url: str) -> AsyncIterator[None]:
        """The upstream timeout for everything inside, headers and body: a drip is cut off too."""
        try:
            async with asyncio.timeout(self._timeout):
                yield
        except TimeoutError as exc:
            raise UpstreamError(f"upstream took longer than {self._timeout:g} s: {_redact(url)}") from exc

    @contextlib.asynccontextmanager
    async def stream(
        self, url: str, headers: Mapping[str, str] | None = None, *, read_timeout: float | None = None
    ) -> AsyncIterator[httpx.Response]:
        """A streamed GET of a file, its headers within the upstream timeout; non-200 answers become
        ``UpstreamError``. ``read_timeout``: the longest wait for any one read of the body. The request's
        upstream time is the whole transfer, which the client reading it paces."""
        read = self._timeout if read_timeout is None else read_timeout
        timeout = httpx.Timeout(self._timeout, connect=min(self._timeout, 10.0), read=read)
        with self.errors(url), upstream_time():
            async with contextlib.AsyncExitStack() as stack:
                async with self.deadline(url):
                    response = await stack.enter_async_context(
                        self.client.stream("GET", url, headers=dict(headers or {}), timeout=timeout)
                    )
                if response.status_code != 200:
                    raise UpstreamError(f"upstream answered {response.status_code} for {_redact(url)}")
                yield response


async def _read_capped(response: RangeResponse, limit: int, what: str, url: str) -> bytes:
    """The decoded body, read as it arrives and given up past ``limit`` decoded bytes: memory stays
    bounded, a decompression bomb included (content_coding.py)."""
    too_big = UpstreamError(f"upstream {what} larger than {limit} bytes: {_redact(url)}")
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_big
    decoder = ContentDecoder(response.headers.get("content-encoding", ""))
    body = bytearray()
    async for chunk in response.aiter_raw():
        _grow(body, decoder.decode(chunk), limit, too_big)
    _grow(body, decoder.finish(), limit, too_big)
    return bytes(body)


def _grow(body: bytearray, pieces: Iterable[bytes], limit: int, too_big: UpstreamError) -> None:
    """Append decoded ``pieces`` to ``body``, raising ``too_big`` as soon as it passes ``limit``."""
    for piece in pieces:
        body += piece
        if len(body) > limit:
            raise too_big


def _environment_proxies() -> bool:
    """Whether httpx would send some request through a proxy the environment names."""
    return any(scheme in urllib.request.getproxies() for scheme in ("http", "https", "all"))


def _redact(url: str) -> str:
    """A URL fit for a log line or a response body: no userinfo, no query (tokens live there)."""
    return redact_url(url.split("?", 1)[0])
