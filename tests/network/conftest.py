"""The upstreams of the client tests: the route's on 127.0.0.1 (PEP 658 files served and
advertised, ranges answered), another host on 127.0.0.2 (a loopback address that is not its origin)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest

from proxy.config import RouteConfig
from proxy.network.range_client import AioRangeClient
from proxy.network.upstream import Upstream
from proxy.observe import Metrics
from tests.support.fake_index import FakeIndex
from tests.support.stack import wheel
from tests.support.upstream import UpstreamOptions, UpstreamServer

WHEEL = "far-1.0-py3-none-any.whl"
MIB = 1024 * 1024
T = TypeVar("T")


def _index() -> FakeIndex:
    return FakeIndex.from_files({"far": [wheel(WHEEL, ["idna"], payload_size=200_000)]})


@pytest.fixture
def route_host() -> Iterator[UpstreamServer]:
    with UpstreamServer(_index(), UpstreamOptions(prefix="/simple", pep658=True)) as server:
        yield server


@pytest.fixture
def other_host() -> Iterator[UpstreamServer]:
    with UpstreamServer(_index(), UpstreamOptions(prefix="/files"), host="127.0.0.2") as server:
        yield server


def with_upstream(
    base: str,
    client: str,
    go: Callable[[Upstream], Awaitable[T]],
    *,
    metrics: Metrics | None = None,
    timeout: float = 10,
    max_page_bytes: int = 64 * MIB,
    **route: object,
) -> T:
    """``go(upstream)`` for a route on ``base`` that reads through ``client`` ("httpx" or "aiohttp")."""

    async def run() -> T:
        config = RouteConfig(prefix="/simple", upstream=base + "/simple", **route)  # type: ignore[arg-type]
        upstream = Upstream(
            config, metrics or Metrics(), timeout=timeout, range_client=client, max_page_bytes=max_page_bytes
        )
        assert isinstance(upstream.reads, AioRangeClient) == (client == "aiohttp")
        try:
            return await go(upstream)
        finally:
            await upstream.aclose()

    return asyncio.run(run())
