"""The HTTP client the remote-zip reader and page fetches need, and an aiohttp one for both.

The reader (``remote_zip``) asks for little: a streamed GET with headers, its status, headers and
raw body chunks (``RangeClient``); a page or PEP 658 fetch also needs the final URL (``FetchClient``).
A route's ``httpx.AsyncClient`` is one; ``AioRangeClient`` is the other, used for the GETs a cold
lock makes by the hundred: wheels' range reads, project pages, PEP 658 files (``Upstream.reads``).
httpx costs ~1 ms more CPU per request (1.33 against 0.29 ms per 32 KiB range GET; a cold live lock
28% faster in wall time and 24% in CPU with range reads moved: benchmarks/README.md, "Issue 17"),
and its HTTP/2 stack decodes every DATA frame in Python, which for a page of megabytes is most of
the fetch's CPU. Bodies are passed on raw (``auto_decompress=False``): ``upstream`` decodes them.

It keeps what the httpx client guarantees (``upstream.py``):

* every hop, redirects included, is checked against the route's ``FetchPolicy`` before it is sent
  (redirects are followed here, at most ``max_redirects``, never by aiohttp);
* the route's credentials go only to its own origin, never to a host a redirect or a link names;
* the CA bundle is the one httpx would use (``httpx.create_ssl_context``: certifi, or
  ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``). No environment is read otherwise (aiohttp's ``trust_env``
  would also send ``~/.netrc`` credentials, per host, and cost two thread hops per request);
  ``Upstream`` uses the httpx client instead whenever a proxy is configured in the environment,
  so proxies keep httpx's exact semantics;
* a connect that fails is retried twice (nothing was sent yet), as the httpx transport does;
* every failure is an ``aiohttp.ClientError``, which ``HTTP_CLIENT_ERRORS`` lists.

Timeouts: ``sock_connect`` as httpx's connect timeout, ``sock_read`` per read; the whole read is
bounded by ``Upstream.deadline`` around it. Concurrency: the route's gates in ``MetadataFetcher``.
"""

from __future__ import annotations

import base64
import contextlib
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import Protocol

import aiohttp
import httpx
from yarl import URL

from proxy.network.ssrf import FetchPolicy, Resolver, check_url

__all__ = [
    "AioRangeClient",
    "FetchClient",
    "FetchResponse",
    "RangeClient",
    "RangeResponse",
    "TooManyRedirects",
]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CONNECT_RETRIES = 2


class RangeResponse(Protocol):
    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def aiter_raw(self) -> AsyncIterator[bytes]: ...


class RangeClient(Protocol):
    def stream(
        self, method: str, url: str, *, headers: Mapping[str, str] | None = None
    ) -> contextlib.AbstractAsyncContextManager[RangeResponse]: ...


class FetchResponse(RangeResponse, Protocol):
    """What a page or PEP 658 GET needs besides: the URL of the answer, after redirects."""

    @property
    def url(self) -> httpx.URL | URL: ...


class FetchClient(Protocol):
    """Either client, for pages and small files (``Upstream.reads``) as well as range reads."""

    def stream(
        self, method: str, url: str, *, headers: Mapping[str, str] | None = None
    ) -> contextlib.AbstractAsyncContextManager[FetchResponse]: ...


class TooManyRedirects(aiohttp.ClientError):
    """More redirects than the route allows (httpx's ``TooManyRedirects`` for this client)."""


class _Response:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status_code = response.status
        self.headers: Mapping[str, str] = response.headers
        self.url = response.url

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        async for chunk in self._response.content.iter_any():
            yield chunk


class AioRangeClient:
    """One route's aiohttp session (made on first use, inside the running loop)."""

    def __init__(
        self,
        policy: FetchPolicy,
        resolver: Resolver,
        *,
        timeout: float,
        credentials: tuple[str, str] | None = None,
        max_connections: int = 64,
        max_redirects: int = 5,
        user_agent: str = "",
    ) -> None:
        self._policy = policy
        self._resolver = resolver
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=min(timeout, 10.0), sock_read=timeout)
        self._authorization = None
        if credentials is not None:
            token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode("ascii")
            self._authorization = f"Basic {token}"
        self._max_connections = max_connections
        self._max_redirects = max_redirects
        self._user_agent = user_agent
        self._ssl: ssl.SSLContext = httpx.create_ssl_context()
        self._session: aiohttp.ClientSession | None = None

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._max_connections, ssl=self._ssl, ttl_dns_cache=60)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                auto_decompress=False,  # raw bytes, as ``aiter_raw``: Content-Range counts them
                trust_env=False,
                headers={"User-Agent": self._user_agent} if self._user_agent else None,
            )
        return self._session

    @contextlib.asynccontextmanager
    async def stream(
        self, method: str, url: str, *, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[FetchResponse]:
        """``method url``, redirects followed hop by hop inside the policy; the final answer's body
        streams while the context is open."""
        for _hop in range(self._max_redirects + 1):
            response = await self._send(method, url, headers)
            location = response.headers.get("Location")
            if response.status not in _REDIRECTS or not location:
                try:
                    yield _Response(response)
                finally:
                    response.release()
                return
            response.release()
            try:
                url = str(response.url.join(URL(location)))
            except (ValueError, UnicodeError) as exc:
                raise aiohttp.InvalidURL(location) from exc
        raise TooManyRedirects(f"more than {self._max_redirects} redirects")

    async def _send(self, method: str, url: str, headers: Mapping[str, str] | None) -> aiohttp.ClientResponse:
        origin = await check_url(url, self._policy, resolver=self._resolver)
        sent = dict(headers or {})
        if self._authorization is not None and origin == self._policy.upstream_origin:
            sent["Authorization"] = self._authorization
        try:
            target = URL(url, encoded=True)  # links arrive percent-encoded: sent as they are
        except (ValueError, UnicodeError) as exc:
            raise aiohttp.InvalidURL(url) from exc
        for attempt in range(_CONNECT_RETRIES + 1):
            try:
                return await self._session_now().request(method, target, headers=sent, allow_redirects=False)
            except aiohttp.ClientConnectorError:
                if attempt == _CONNECT_RETRIES:
                    raise
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
