"""Pages are read with a size cap: a bigger one is refused (the last good page stays in service)
without ever being held whole in memory.
"""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import AsyncIterator

import httpx
import pytest

from proxy.config import RouteConfig
from proxy.errors import UpstreamError
from proxy.network.upstream import Upstream
from proxy.observe import Metrics
from tests.support.fake_index import FakeIndex
from tests.support.stack import MakeStack, single_line, wheel

MIB = 1024 * 1024


def _index() -> FakeIndex:
    return FakeIndex.from_files({"big": [wheel("big-1.0-py3-none-any.whl", ["idna"])]})


def test_a_page_over_the_cap_is_a_502(make_stack: MakeStack) -> None:
    stack = make_stack(_index(), config={"upstream_max_page_bytes": 200})  # the page has ~390 bytes
    response = stack.client.get(stack.page("big"))
    assert response.status_code == 502 and single_line(response.text)
    assert "larger than 200 bytes" in response.text


def test_a_page_grown_over_the_cap_leaves_the_last_good_one_stale(make_stack: MakeStack) -> None:
    stack = make_stack(_index(), config={"upstream_max_page_bytes": 1000}, route={"page_ttl": 0.0})
    good = stack.client.get(stack.page("big"))
    assert good.status_code == 200
    files = [wheel(f"big-1.{n}-py3-none-any.whl") for n in range(20)]
    stack.upstream.set_index(FakeIndex.from_files({"big": files}))
    response = stack.client.get(stack.page("big"))
    assert response.status_code == 200 and response.content == good.content
    assert "larger than 1000 bytes" in response.headers["x-wheelmeld-stale"]


async def _endless_page(total: int) -> AsyncIterator[bytes]:
    piece = b"<a href='x'>x</a>\n" * 3600  # ~64 KiB
    for _ in range(total // len(piece)):
        yield piece


def test_reading_a_page_over_the_cap_keeps_memory_bounded() -> None:
    # A unit test of the page read: 20 MiB streamed at a 1 MiB cap never holds more than the cap.
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/html"}, stream=_Stream(20 * MIB))

    async def run() -> int:
        upstream = Upstream(
            RouteConfig(prefix="/simple", upstream="http://upstream.example/simple"),
            Metrics(),
            5.0,
            max_page_bytes=MIB,
            range_client="httpx",
        )
        await upstream.aclose()
        upstream.client = upstream.reads = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        tracemalloc.start()
        try:
            with pytest.raises(UpstreamError, match="larger than"):
                await upstream.fetch_page("http://upstream.example/simple/big/")
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            await upstream.aclose()

    peak = asyncio.run(run())
    assert peak < 4 * MIB, f"peak {peak} bytes while reading a 20 MiB page"


class _Stream(httpx.AsyncByteStream):
    def __init__(self, total: int) -> None:
        self._total = total

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for piece in _endless_page(self._total):
            yield piece
