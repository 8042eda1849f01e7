"""A cache on a full or read-only disk: everything is still served, uncached where it must be,
with a metric and a log line saying why, and nothing partial left behind.

The cache lives on a small tmpfs of its own (``mount`` needs root: the tests skip without it).
Read-only is a real ``mount -o remount,ro``: root ignores permission bits, so chmod proves nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.fake_index import FakeIndex
from tests.support.stack import JSON, MakeStack, Stack, wait_until, wheel

MIB = 1024 * 1024


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs mounted for this test; unmounted after it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs for the cache needs root")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    try:
        _mount("-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point))
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        yield mount_point
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            _mount("-o", "remount,rw", str(mount_point))
        subprocess.run(["umount", "-l", str(mount_point)], check=False, capture_output=True)


def _fill(mount_point: Path, leave: int = 0) -> None:
    """Fill the file system but ``leave`` bytes (roughly: tmpfs counts whole pages)."""
    stat = os.statvfs(mount_point)
    todo = max(0, stat.f_bavail * stat.f_frsize - leave)
    fd = os.open(mount_point / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while todo > 0:
            try:
                todo -= os.write(fd, b"\0" * min(todo, MIB))
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    finally:
        os.close(fd)


def _index() -> FakeIndex:
    return FakeIndex.from_files(
        {
            "small": [wheel("small-1.0-py3-none-any.whl", ["idna"])],
            "big": [wheel("big-1.0-py3-none-any.whl", ["idna"], payload_size=3 * MIB)],
            "other": [wheel("other-1.0-py3-none-any.whl", ["idna"], payload_size=1 * MIB)],
        }
    )


def _partials(cache_dir: Path) -> list[Path]:
    return list((cache_dir / "tmp").glob("part-*"))


def _committed(cache_dir: Path, name: str) -> list[Path]:
    return [p for p in (cache_dir / "v1").rglob(name) if p.is_file()]


def _not_cached(stack: Stack, kind: str, reason: str) -> int:
    prefix = f'wheelmeld_not_cached_total{{kind="{kind}",reason="{reason}"}} '
    for line in stack.client.get("/metrics").text.splitlines():
        if line.startswith(prefix):
            return int(line.removeprefix(prefix))
    return 0


def _everything(stack: Stack, index: FakeIndex, project: str) -> None:
    """Page (both formats), metadata and file of ``project``: all answered whole."""
    name = index.projects[project][0].filename
    assert stack.client.get(stack.page(project)).status_code == 200
    assert stack.client.get(stack.page(project), headers={"Accept": JSON}).status_code == 200
    metadata = stack.client.get(stack.file(project, name, ".metadata"))
    assert metadata.status_code == 200 and metadata.content == index.file(name).metadata
    response = stack.client.get(stack.file(project, name))
    assert response.status_code == 200 and response.content == index.file(name).content


def test_a_full_disk_serves_everything_uncached(
    make_stack: MakeStack, disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    index = _index()
    cache_dir = disk / "cache"
    stack = make_stack(index, cache_dir=cache_dir, pep658=True)
    _fill(disk)
    with caplog.at_level(logging.WARNING, logger="wheelmeld"):
        _everything(stack, index, "small")
        _everything(stack, index, "big")
    assert _not_cached(stack, "page", "full") >= 2
    assert _not_cached(stack, "metadata", "full") >= 1
    assert _not_cached(stack, "file", "full") >= 1
    assert "uncached: cache full" in caplog.text
    wait_until(lambda: not _partials(cache_dir), "nothing partial stays")
    assert _committed(cache_dir, "big-1.0-py3-none-any.whl") == []


def test_a_disk_that_fills_during_a_download_still_serves_the_file_whole(
    make_stack: MakeStack, disk: Path
) -> None:
    index = _index()
    cache_dir = disk / "cache"
    stack = make_stack(index, cache_dir=cache_dir, pep658=True)
    assert stack.client.get(stack.page("big")).status_code == 200
    _fill(disk, leave=1 * MIB)  # the 3 MiB file's first piece fits, the rest does not
    name = "big-1.0-py3-none-any.whl"
    response = stack.client.get(stack.file("big", name))
    assert response.status_code == 200 and response.content == index.file(name).content
    assert _not_cached(stack, "file", "full") == 1
    wait_until(lambda: not _partials(cache_dir), "nothing partial stays")
    assert _committed(cache_dir, name) == []


def test_a_read_only_cache_serves_warm_entries_and_streams_cold_ones(
    make_stack: MakeStack, disk: Path
) -> None:
    index = _index()
    cache_dir = disk / "cache"
    # page_ttl 0: every page request revalidates, so the page's own write meets the read-only disk.
    stack = make_stack(index, cache_dir=cache_dir, pep658=True, route={"page_ttl": 0.0})
    _everything(stack, index, "small")
    wait_until(lambda: _committed(cache_dir, "small-1.0-py3-none-any.whl"), "the file is committed")
    _mount("-o", "remount,ro", str(disk))
    stack.upstream.log.reset()
    _everything(stack, index, "small")  # warm: the file and metadata from the cache
    assert stack.upstream.requests_for(".whl") == (), "the warm file was served from the cache"
    _everything(stack, index, "other")  # cold: streamed through, nothing kept
    assert _not_cached(stack, "file", "read-only") == 1
    assert _committed(cache_dir, "other-1.0-py3-none-any.whl") == []
    assert stack.client.get(stack.file("other", "other-1.0-py3-none-any.whl")).status_code == 200


def test_a_proxy_started_on_a_read_only_cache_serves_it(make_stack: MakeStack, disk: Path) -> None:
    index = _index()
    cache_dir = disk / "cache"
    first = make_stack(index, cache_dir=cache_dir, pep658=True)
    _everything(first, index, "small")
    wait_until(lambda: _committed(cache_dir, "small-1.0-py3-none-any.whl"), "the file is committed")
    first.proxy.stop()
    _mount("-o", "remount,ro", str(disk))
    again = make_stack(index, cache_dir=cache_dir, pep658=True)
    _everything(again, index, "small")
    assert again.upstream.requests_for(".whl") == (), "all of it from the read-only cache"
    _everything(again, index, "other")


def test_a_download_kept_in_memory_only_serves_slow_and_late_readers_whole(
    make_stack: MakeStack, disk: Path
) -> None:
    # 40 MiB through a full disk: the download waits for its slowest reader (memory stays at its
    # 16 MiB window); a reader joining once that window moved past byte 0 gets a download of its own.
    name = "huge-1.0-py3-none-any.whl"
    index = FakeIndex.from_files({"huge": [wheel(name, payload_size=40 * MIB)]})
    content = index.file(name).content
    stack = make_stack(index, cache_dir=disk / "cache")
    assert stack.client.get(stack.page("huge")).status_code == 200
    _fill(disk)
    url = stack.proxy.url + stack.file("huge", name)
    paused = asyncio.Event()

    async def read(client: httpx.AsyncClient, pause_at: int | None) -> bytes:
        body = bytearray()
        async with client.stream("GET", url) as response:
            async for chunk in response.aiter_raw():
                body += chunk
                if pause_at is not None and len(body) >= pause_at and not paused.is_set():
                    paused.set()
                    await asyncio.sleep(0.5)  # a slow reader: the download must wait for it
        return bytes(body)

    async def late(client: httpx.AsyncClient) -> bytes:
        await paused.wait()
        return await read(client, None)

    async def run() -> list[bytes]:
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(read(client, 20 * MIB), late(client))

    bodies = asyncio.run(run())
    assert [len(b) for b in bodies] == [len(content)] * 2 and all(b == content for b in bodies)
    assert len(stack.upstream.requests_for("/" + name)) == 2, "the late reader had its own download"
    wait_until(lambda: not _partials(disk / "cache"), "nothing partial stays")
