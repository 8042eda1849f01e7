"""Upstreams that drip: the upstream timeout bounds a whole page or metadata fetch, headers
included; a file download is cut off when it stalls, or when nobody reads it and it crawls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from proxy.network.pacing import Pace, Stalled, paced
from tests.support.fake_index import FakeIndex
from tests.support.proxy import ProxyServer, proxy_config
from tests.support.stack import MakeStack, Stack, single_line, wait_until, wheel
from tests.support.upstream import DrippingHeaders, Fault

NAME = "big-1.0-py3-none-any.whl"
TIMEOUT = 1.0


def _index(size: int = 64) -> FakeIndex:
    return FakeIndex.from_files({"big": [wheel(NAME, ["idna"], payload_size=size)]})


def _timed_get(stack: Stack, path: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = stack.client.get(path)
    return response, time.monotonic() - started


def test_a_dripping_page_is_cut_off_at_the_timeout(make_stack: MakeStack) -> None:
    # 10 bytes every 0.1 s: each read is quick, the whole page takes many seconds.
    stack = make_stack(_index(), config={"upstream_timeout": TIMEOUT})
    stack.upstream.inject_fault("/big/", Fault(chunk_size=10, chunk_delay_ms=100))
    response, elapsed = _timed_get(stack, stack.page("big"))
    assert response.status_code == 502 and single_line(response.text)
    assert "took longer than 1 s" in response.text
    assert elapsed < TIMEOUT * 2


def test_a_dripping_page_leaves_the_last_good_page_stale(make_stack: MakeStack) -> None:
    # No validators: the refresh is a whole page, not a 304.
    stack = make_stack(
        _index(), validators=False, config={"upstream_timeout": TIMEOUT}, route={"page_ttl": 0.0}
    )
    good = stack.client.get(stack.page("big"))
    assert good.status_code == 200
    stack.upstream.inject_fault("/big/", Fault(chunk_size=10, chunk_delay_ms=100))
    response, elapsed = _timed_get(stack, stack.page("big"))
    assert response.status_code == 200 and response.content == good.content
    assert "x-wheelmeld-stale" in response.headers
    assert elapsed < TIMEOUT * 2


def test_clients_waiting_on_one_stalled_page_share_its_answer(make_stack: MakeStack) -> None:
    stack = make_stack(_index(), config={"upstream_timeout": TIMEOUT})
    stack.upstream.inject_fault("/big/", Fault(head_delay_ms=10_000))
    url = stack.proxy.url + stack.page("big")

    async def one(client: httpx.AsyncClient) -> tuple[int, float]:
        started = time.monotonic()
        response = await client.get(url)
        return response.status_code, time.monotonic() - started

    async def run() -> list[tuple[int, float]]:
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(*(one(client) for _ in range(3)))

    answers = asyncio.run(run())
    assert [status for status, _ in answers] == [502] * 3
    assert max(elapsed for _, elapsed in answers) < TIMEOUT * 1.8, "waiters answered with the first"
    assert len(stack.upstream.requests_for("/big/")) == 1


def test_a_dripping_metadata_file_is_cut_off_at_the_timeout(make_stack: MakeStack) -> None:
    stack = make_stack(_index(), pep658=True, config={"upstream_timeout": TIMEOUT})
    assert stack.client.get(stack.page("big")).status_code == 200
    stack.upstream.inject_fault(".metadata", Fault(chunk_size=5, chunk_delay_ms=100))
    stack.upstream.inject_fault("/" + NAME, Fault(chunk_size=5, chunk_delay_ms=100))
    response, elapsed = _timed_get(stack, stack.file("big", NAME, ".metadata"))
    assert response.status_code == 502 and single_line(response.text)
    assert elapsed < TIMEOUT * 3  # the .metadata file, then the wheel's own bytes: each cut off


def test_a_dripping_wheel_read_for_its_metadata_is_cut_off_at_the_timeout(make_stack: MakeStack) -> None:
    stack = make_stack(_index(), pep658=False, ranges=True, config={"upstream_timeout": TIMEOUT})
    assert stack.client.get(stack.page("big")).status_code == 200
    stack.upstream.inject_fault("/" + NAME, Fault(chunk_size=5, chunk_delay_ms=100))
    response, elapsed = _timed_get(stack, stack.file("big", NAME, ".metadata"))
    assert response.status_code == 502 and single_line(response.text)
    assert elapsed < TIMEOUT * 2


def _partials(cache_dir: Path) -> list[Path]:
    return list((cache_dir / "tmp").glob("part-*"))


def _committed(cache_dir: Path) -> list[Path]:
    return [p for p in (cache_dir / "v1").rglob(NAME) if p.is_file()]


_CRAWL = Fault(chunk_size=1000, chunk_delay_ms=50)  # 20 kB/s, a byte well within every idle cut-off
_PACE = {"upstream_file_idle_timeout": 0.5, "upstream_file_min_rate": 1024 * 1024}


def test_a_crawling_download_nobody_reads_is_abandoned(make_stack: MakeStack) -> None:
    stack = make_stack(_index(200_000), config=_PACE)
    assert stack.client.get(stack.page("big")).status_code == 200
    stack.upstream.inject_fault("/" + NAME, _CRAWL)
    with stack.client.stream("GET", stack.file("big", NAME)) as response:
        assert response.status_code == 200  # and hangs up before the first piece (1 MiB) comes
    # The client hung up: within a cut-off or two the download lets go of upstream and its temp file.
    wait_until(lambda: not _partials(stack.cache_dir), "the abandoned download's temp file is removed")
    assert _committed(stack.cache_dir) == []


def test_a_crawling_download_a_client_reads_goes_on(make_stack: MakeStack) -> None:
    index = _index(20_000)
    stack = make_stack(index, config=_PACE)
    stack.upstream.inject_fault("/" + NAME, _CRAWL)
    response = stack.client.get(stack.file("big", NAME))
    assert response.status_code == 200 and response.content == index.file(NAME).content


def test_a_fast_download_nobody_reads_any_more_warms_the_cache(make_stack: MakeStack) -> None:
    stack = make_stack(_index(8 * 1024 * 1024), config=_PACE)
    with stack.client.stream("GET", stack.file("big", NAME)) as response:
        next(response.iter_raw())
    wait_until(lambda: _committed(stack.cache_dir), "the download went on to the cache")


def test_a_stalled_download_is_cut_off_for_its_reader(make_stack: MakeStack) -> None:
    stack = make_stack(_index(2 * 1024 * 1024), config=_PACE)
    stack.upstream.inject_fault("/" + NAME, Fault(chunk_size=256 * 1024, chunk_delay_ms=5000, times=1))
    status, _ = stack.fetch(stack.file("big", NAME))
    assert status is None, "a broken connection, not a clean end"
    wait_until(lambda: not _partials(stack.cache_dir), "the temp file is removed")


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _pieces(clock: _Clock, pieces: list[tuple[float, int]]) -> AsyncIterator[bytes]:
    for at, size in pieces:
        clock.now = at
        yield b"x" * size


async def _drain(pieces: list[tuple[float, int]], unread: bool) -> int:
    clock = _Clock()
    pace = Pace(idle=10.0, min_rate=100)
    got = 0
    async for chunk in paced(_pieces(clock, pieces), pace, lambda: unread, 4096, clock):
        got += len(chunk)
    return got


@pytest.mark.parametrize(
    ("pieces", "unread", "stalls"),
    [
        ([(1.0, 10), (12.0, 10)], True, True),  # 20 bytes in 11 s: under 100 bytes/s, nobody reads
        ([(1.0, 10), (12.0, 10)], False, False),  # the same with a reader: it goes on
        ([(1.0, 2000), (12.0, 2000)], True, False),  # 4000 bytes in 11 s: fast enough
        ([(1.0, 10), (5.0, 10)], True, False),  # not a whole window yet
    ],
)
def test_the_rate_cut_off_of_unread_downloads(
    pieces: list[tuple[float, int]], unread: bool, stalls: bool
) -> None:
    if stalls:
        with pytest.raises(Stalled, match="nobody reads it"):
            asyncio.run(_drain(pieces, unread))
    else:
        assert asyncio.run(_drain(pieces, unread)) == sum(size for _, size in pieces)


def test_a_page_whose_headers_drip_is_cut_off_at_the_timeout(tmp_path: Path) -> None:
    with DrippingHeaders() as upstream:
        config = proxy_config(tmp_path / "cache", {"/simple": upstream.url + "/simple"})
        with ProxyServer(replace(config, upstream_timeout=TIMEOUT)) as proxy:
            started = time.monotonic()
            response = httpx.get(proxy.url + "/simple/big/", timeout=30)
            elapsed = time.monotonic() - started
    assert response.status_code == 502 and single_line(response.text)
    assert elapsed < TIMEOUT * 2
