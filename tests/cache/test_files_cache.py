"""Cached files: one upstream fetch per object whatever the number of clients, nothing partial ever
committed (slow, reset, 5xx, wrong hash, truncated), and a retry after the upstream recovers succeeds.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from tests.cache.cachekit import cache_files, disagreeing_release, tmp_leftovers
from tests.support.fake_index import FakeIndex
from tests.support.stack import MakeStack, wheel
from tests.support.upstream import Fault

BIG = "big-1.0-py3-none-any.whl"


def _big_index(size: int = 2 * 1024 * 1024) -> FakeIndex:
    return FakeIndex.from_files({"big": [wheel(BIG, ["idna"], payload_size=size)]})


def _settled(cache_dir: Path) -> None:
    """A failed download's cleanup runs just after the client's answer: wait for tmp/ to empty."""
    deadline = time.monotonic() + 5
    while tmp_leftovers(cache_dir) and time.monotonic() < deadline:
        time.sleep(0.02)


_FILE_FAULTS = {
    "500": Fault(status=500, times=1),
    "slow": Fault(chunk_size=64 * 1024, chunk_delay_ms=1500, times=1),  # stalls past the timeout
    "reset": Fault(reset_after=300_000, times=1),
    "wrong-hash": Fault(wrong_bytes=True, times=1),
    "truncated": Fault(truncate_to=1000, times=1),
}


@pytest.mark.parametrize("fault", list(_FILE_FAULTS.values()), ids=list(_FILE_FAULTS))
def test_faulty_download_leaves_nothing_and_a_retry_succeeds(make_stack: MakeStack, fault: Fault) -> None:
    index = _big_index()
    stack = make_stack(index, config={"upstream_timeout": 0.5, "upstream_file_idle_timeout": 0.5})
    content = index.file(BIG).content
    assert content is not None
    assert stack.client.get("/simple/big/").status_code == 200
    stack.upstream.inject_fault("/" + BIG, fault)
    status, body = stack.fetch(f"/simple/big/{BIG}")
    assert status in (None, 200, 502)
    assert body != content, "never a whole body for a download that failed"
    if status == 502:
        assert body.count(b"\n") <= 1 and b"Traceback" not in body
    _settled(stack.cache_dir)
    assert cache_files(stack.cache_dir, BIG) == []
    assert cache_files(stack.cache_dir, BIG + ".sha256") == []
    assert tmp_leftovers(stack.cache_dir) == [], "the temp file is gone too"
    retry = stack.client.get(f"/simple/big/{BIG}")
    assert retry.status_code == 200 and retry.content == content
    assert [p.read_bytes() == content for p in cache_files(stack.cache_dir, BIG)] == [True]


async def _gather_gets(url: str, clients: int) -> list[tuple[int, bytes, str]]:
    limits = httpx.Limits(max_connections=clients + 10)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def one() -> tuple[int, bytes, str]:
            response = await client.get(url)
            return response.status_code, response.content, response.headers.get("x-wheelmeld-meld", "")

        return await asyncio.gather(*(one() for _ in range(clients)))


def test_fifty_clients_one_uncached_wheel_one_upstream_get(make_stack: MakeStack) -> None:
    index = _big_index()
    stack = make_stack(index)
    content = index.file(BIG).content
    assert stack.client.get("/simple/big/").status_code == 200
    stack.upstream.inject_fault("/" + BIG, Fault(chunk_size=64 * 1024, chunk_delay_ms=10))
    results = asyncio.run(_gather_gets(f"{stack.proxy.url}/simple/big/{BIG}", 50))
    assert {status for status, _, _ in results} == {200}
    assert all(body == content for _, body, _ in results)
    assert [r.method for r in stack.upstream.requests_for("/" + BIG)] == ["GET"]


@pytest.mark.parametrize("pep658", [True, False], ids=["pep658", "range-reads"])
def test_fifty_clients_one_uncached_meld_one_fetch_per_sibling(make_stack: MakeStack, pep658: bool) -> None:
    index, files = disagreeing_release()
    stack = make_stack(index, pep658=pep658, latency_ms=20)
    assert stack.client.get("/simple/meldy/").status_code == 200
    stack.upstream.log.reset()
    target = files[0].filename
    results = asyncio.run(_gather_gets(f"{stack.proxy.url}/simple/meldy/{target}.metadata", 50))
    assert {status for status, _, _ in results} == {200}
    assert len({body for _, body, _ in results}) == 1, "50 identical bodies"
    assert {state for _, _, state in results} == {"melded"}
    assert b"only-5" in results[0][1], "the meld carries every sibling's requirement"
    for file in files:
        fetched = stack.upstream.requests_for("/" + file.filename + (".metadata" if pep658 else ""))
        if pep658:
            assert len(fetched) == 1, (file.filename, fetched)
        else:
            # Range reads: a few ranged GETs of one wheel, once — not once per client.
            assert 1 <= len(fetched) <= 3, (file.filename, fetched)
            assert all(r.range for r in fetched), "metadata is read with ranges, never whole wheels"
