"""Distribution files through the proxy: streamed from upstream while cached, verified, served with
Content-Length, ETag, HEAD and Range, and downloaded once whatever the number of clients.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from proxy.cache.store import PageKey
from proxy.service.downloads import Download as _Download
from tests.support.fake_index import FakeIndex
from tests.support.stack import MakeStack, Stack, raw_get, sha256, wheel
from tests.support.upstream import Fault

BIG = "big-1.0-py3-none-any.whl"
MIB = 1024 * 1024


def _big_index(size: int = 2 * 1024 * 1024) -> FakeIndex:
    return FakeIndex.from_files({"big": [wheel(BIG, ["idna"], payload_size=size)]})


def _cached_files(cache_dir: Path, name: str) -> list[Path]:
    return [p for p in cache_dir.rglob(name) if p.is_file()]


def _wait_cached(cache_dir: Path, name: str) -> list[Path]:
    """The commit follows the last byte sent to the client by a moment: poll briefly."""
    deadline = time.monotonic() + 5
    while not (found := _cached_files(cache_dir, name)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return found


def test_file_is_streamed_then_cached(make_stack: MakeStack) -> None:
    index = _big_index()
    stack = make_stack(index, hashes=True)
    content = index.file(BIG).content
    assert content is not None
    first = stack.client.get(stack.file("big", BIG))
    assert first.status_code == 200
    assert first.content == content
    assert int(first.headers["content-length"]) == len(content)
    assert len(stack.upstream.requests_for("/" + BIG)) == 1
    assert [p.read_bytes() == content for p in _wait_cached(stack.cache_dir, BIG)] == [True]
    second = stack.client.get(stack.file("big", BIG))
    assert second.content == content
    assert len(stack.upstream.requests_for("/" + BIG)) == 1, "the second GET came from the cache"


def test_cached_file_headers_head_and_range(seed: Stack, pytorch_index: FakeIndex) -> None:
    name = "pytorch_triton-3.2.0+git0d4682f0-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl"
    project = "pytorch-triton"
    content = pytorch_index.file(name).content
    assert content is not None and len(content) > 100
    assert seed.client.get(seed.file(project, name)).status_code == 200
    assert _wait_cached(seed.cache_dir, name)
    seed.upstream.log.reset()
    full = seed.client.get(seed.file(project, name))
    assert full.status_code == 200
    assert full.headers["content-length"] == str(len(content))
    assert full.headers["etag"].strip('"') == sha256(content), "a nightly has no upstream hash: ours"
    head = seed.client.head(seed.file(project, name))
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(content))
    assert head.headers["etag"] == full.headers["etag"]
    part = seed.client.get(seed.file(project, name), headers={"Range": "bytes=10-19"})
    assert part.status_code == 206
    assert part.content == content[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(content)}"
    tail = seed.client.get(seed.file(project, name), headers={"Range": "bytes=-22"})
    assert tail.status_code == 206
    assert tail.content == content[-22:]
    beyond = seed.client.get(seed.file(project, name), headers={"Range": f"bytes={len(content) + 5}-"})
    assert beyond.status_code == 416
    assert seed.requests() == [], "a cached file needs no upstream"


def test_file_with_upstream_hash_gets_upstream_etag(make_stack: MakeStack) -> None:
    index = _big_index(1000)
    stack = make_stack(index, hashes=True)
    assert stack.client.get(stack.file("big", BIG)).status_code == 200
    assert _wait_cached(stack.cache_dir, BIG)
    response = stack.client.get(stack.file("big", BIG))
    assert response.headers["etag"].strip('"') == sha256(index.file(BIG).content or b"")


_FAULTS = {
    "wrong-bytes": Fault(wrong_bytes=True, times=1),
    "reset": Fault(reset_after=300_000, times=1),
    "short": Fault(truncate_to=1000, times=1),
}


@pytest.mark.parametrize("fault", list(_FAULTS.values()), ids=list(_FAULTS))
def test_bad_upstream_body_is_not_cached(make_stack: MakeStack, fault: Fault) -> None:
    index = _big_index()
    stack = make_stack(index, hashes=True)
    content = index.file(BIG).content
    assert content is not None
    stack.upstream.inject_fault("/" + BIG, fault)
    stack.fetch(stack.file("big", BIG))
    time.sleep(0.2)  # give a (wrong) commit the time it would need
    assert _cached_files(stack.cache_dir, BIG) == []
    assert not [p for p in stack.cache_dir.rglob(BIG + ".sha256")]
    # Nothing was remembered: the next request goes upstream again and gets the right file.
    again = stack.client.get(stack.file("big", BIG))
    assert again.status_code == 200
    assert again.content == content
    assert len(stack.upstream.requests_for("/" + BIG)) == 2


@pytest.mark.parametrize(
    "fault",
    [
        _FAULTS["wrong-bytes"],
        _FAULTS["reset"],
        _FAULTS["short"],
    ],
    ids=list(_FAULTS),
)
def test_bad_upstream_body_reaches_the_client_as_an_error(make_stack: MakeStack, fault: Fault) -> None:
    index = _big_index()
    stack = make_stack(index, hashes=True)
    content = index.file(BIG).content
    assert content is not None
    stack.upstream.inject_fault("/" + BIG, fault)
    status, body = stack.fetch(stack.file("big", BIG))
    assert not (status == 200 and len(body) == len(content)), (
        "a client must see an error or a short body, never a whole wrong file"
    )


def test_upstream_file_error_is_502(make_stack: MakeStack) -> None:
    index = _big_index(1000)
    stack = make_stack(index, hashes=True)
    stack.upstream.inject_fault("/" + BIG, Fault(status=503))
    response = stack.client.get(stack.file("big", BIG))
    assert response.status_code == 502
    assert "Traceback" not in response.text and response.text.count("\n") <= 1


def test_fifty_concurrent_gets_make_one_upstream_get(make_stack: MakeStack) -> None:
    index = _big_index(2 * 1024 * 1024)
    stack = make_stack(index, hashes=True)
    content = index.file(BIG).content
    assert content is not None
    assert stack.client.get(stack.page("big")).status_code == 200  # the page is cached first
    # A slow body keeps the download open while the 50 requests arrive.
    stack.upstream.inject_fault("/" + BIG, Fault(chunk_size=64 * 1024, chunk_delay_ms=10))
    url = stack.proxy.url + stack.file("big", BIG)

    async def run() -> list[tuple[int, bytes]]:
        limits = httpx.Limits(max_connections=60)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:

            async def one() -> tuple[int, bytes]:
                response = await client.get(url)
                return response.status_code, response.content

            return await asyncio.gather(*(one() for _ in range(50)))

    results = asyncio.run(run())
    assert all(status == 200 for status, _ in results)
    assert all(body == content for _, body in results)
    assert [r.method for r in stack.upstream.requests_for("/" + BIG)] == ["GET"]


@pytest.mark.parametrize("spelling", ["%2B", "+", "%2b"])
def test_plus_in_a_file_name_any_spelling(seed: Stack, pytorch_index: FakeIndex, spelling: str) -> None:
    name = "pytorch_triton-3.2.0+git0d4682f0-cp312-cp312-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl"
    path = f"{seed.base}/pytorch-triton/{name.replace('+', spelling)}"
    status, body = raw_get(seed.proxy.port, path)
    assert status == 200
    assert body == pytorch_index.file(name).content


def test_readers_ahead_and_behind_the_download_get_the_same_bytes(make_stack: MakeStack) -> None:
    # Readers that keep up are served from the download's recent pieces in memory; one that stalls
    # (its client stops reading) or joins late falls behind them and reads the file instead.
    size = 48 * 1024 * 1024
    index = _big_index(size)
    stack = make_stack(index, hashes=True)
    content = index.file(BIG).content
    assert content is not None
    assert stack.client.get(stack.page("big")).status_code == 200
    stack.upstream.inject_fault("/" + BIG, Fault(chunk_size=1024 * 1024, chunk_delay_ms=20))
    url = stack.proxy.url + stack.file("big", BIG)

    async def read(pause_after: int | None, delay: float) -> bytes:
        await asyncio.sleep(delay)
        async with httpx.AsyncClient(timeout=60) as client, client.stream("GET", url) as response:
            assert response.status_code == 200
            body = bytearray()
            async for chunk in response.aiter_raw():
                body += chunk
                if pause_after is not None and len(body) >= pause_after:
                    pause_after = None
                    await asyncio.sleep(1.0)  # the download runs on, past the pieces kept in memory
            return bytes(body)

    async def run() -> list[bytes]:
        return await asyncio.gather(read(None, 0), read(1024 * 1024, 0), read(None, 0.5))

    bodies = asyncio.run(run())
    assert [len(b) for b in bodies] == [len(content)] * 3
    assert all(body == content for body in bodies)
    assert [r.method for r in stack.upstream.requests_for("/" + BIG)] == ["GET"]


@pytest.mark.parametrize(
    ("offset", "stop", "expected"),
    [
        (2 * MIB, 10**9, None),  # forgotten: past the memory budget
        (3 * MIB, 10**9, b"d" * MIB),  # the oldest piece kept, whole
        (3 * MIB + 5, 10**9, b"d" * (MIB - 5)),  # the rest of a piece
        (18 * MIB, 18 * MIB + 7, b"s" * 7),  # never past what a reader may have
        (19 * MIB, 10**9, None),  # not written yet
    ],
)
def test_recent_pieces_of_a_download(offset: int, stop: int, expected: bytes | None) -> None:
    download = _Download(key=PageKey("r", ("p",)), final=Path("/nowhere"))
    for i in range(19):
        download.keep(i * MIB, bytes([ord("a") + i]) * MIB)
    assert download.recent_bytes <= 16 * MIB
    assert download.from_memory(offset, stop) == expected
