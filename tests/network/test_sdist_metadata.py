"""An sdist's PKG-INFO read from a real loopback upstream: streamed and stopped early (tar.gz), or
read with ranges (zip); never extracted, never built; every failure a one-line ``RemoteZipError``."""

from __future__ import annotations

import asyncio
import gzip
import io
import tarfile
from pathlib import Path

import httpx
import pytest

from proxy.network.remote_zip import RemoteZipError
from proxy.network.sdist_metadata import FetchedSdistMetadata, fetch_sdist_metadata, read_local_pkg_info
from tests.support.sdists import build_sdist, pkg_info
from tests.support.upstream import FakeFile, FakeIndex, UpstreamOptions, UpstreamServer

INFO = pkg_info("demo-pkg", "1.0", ("six", 'numpy; python_version >= "3.12"'))
_OPTIONS = UpstreamOptions(format="html", pep658=False, ranges=True, hashes=True, prefix="/simple")


def _fetch(content: bytes, filename: str, **kwargs: int) -> tuple[FetchedSdistMetadata, UpstreamServer]:
    index = FakeIndex.from_files({"demo-pkg": [FakeFile(filename, content=content)]})

    async def go(up: UpstreamServer) -> FetchedSdistMetadata:
        async with httpx.AsyncClient(timeout=10) as client:
            return await fetch_sdist_metadata(client, up.file_url(filename), filename, **kwargs)

    with UpstreamServer(index, _OPTIONS) as up:
        return asyncio.run(go(up)), up


def test_tar_gz_stops_reading_once_pkg_info_is_read() -> None:
    size = 8 * 1024 * 1024
    fetched, _up = _fetch(build_sdist("demo_pkg-1.0.tar.gz", INFO, payload_size=size), "demo_pkg-1.0.tar.gz")
    assert fetched.metadata == INFO
    assert fetched.requests == 1
    assert fetched.bytes_received < 1024 * 1024, fetched.bytes_received


@pytest.mark.parametrize("filename", ["demo_pkg-1.0.tar.gz", "demo-pkg-1.0.zip", "Demo.Pkg-1.0.zip"])
def test_pkg_info_at_the_end_is_found(filename: str) -> None:
    content = build_sdist(filename, INFO, payload_size=300_000, pkg_info_last=True)
    fetched, _up = _fetch(content, filename)
    assert fetched.metadata == INFO


def test_zip_is_read_with_ranges() -> None:
    content = build_sdist("demo_pkg-1.0.zip", INFO, payload_size=4 * 1024 * 1024)
    fetched, up = _fetch(content, "demo_pkg-1.0.zip")
    assert fetched.metadata == INFO
    assert fetched.bytes_received < 256 * 1024
    assert all(r.headers.get("range") for r in up.requests_for(".zip"))


def _tar_without_pkg_info() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        entry = tarfile.TarInfo("demo_pkg-1.0/setup.py")
        entry.size = 3
        tf.addfile(entry, io.BytesIO(b"x=1"))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (_tar_without_pkg_info(), "no demo-pkg-1.0/PKG-INFO"),
        (b"not gzip at all" * 100, "corrupt gzip"),
        (gzip.compress(b"not a tar archive" * 100), "unreadable tar"),
        (build_sdist("other-2.0.tar.gz", INFO), "no demo-pkg-1.0/PKG-INFO"),
    ],
)
def test_unusable_archives_say_why(content: bytes, why: str) -> None:
    with pytest.raises(RemoteZipError, match=why):
        _fetch(content, "demo_pkg-1.0.tar.gz")


def test_reading_stops_at_the_cap() -> None:
    content = build_sdist("demo_pkg-1.0.tar.gz", INFO, payload_size=2 * 1024 * 1024, pkg_info_last=True)
    with pytest.raises(RemoteZipError, match="no PKG-INFO in the first 1048576 bytes"):
        _fetch(content, "demo_pkg-1.0.tar.gz", cap=1024 * 1024)


def test_not_an_sdist_name() -> None:
    async def go() -> None:
        async with httpx.AsyncClient() as client:
            await fetch_sdist_metadata(client, "http://127.0.0.1:9/x", "x.tar.bz2")

    with pytest.raises(RemoteZipError, match="not an sdist file name"):
        asyncio.run(go())


@pytest.mark.parametrize("filename", ["demo_pkg-1.0.tar.gz", "demo_pkg-1.0.zip"])
def test_a_cached_sdist_is_read_locally(tmp_path: Path, filename: str) -> None:
    path = tmp_path / filename
    path.write_bytes(build_sdist(filename, INFO, pkg_info_last=True))
    assert read_local_pkg_info(path, filename) == INFO
    path.write_bytes(b"truncated")
    assert read_local_pkg_info(path, filename) is None
    assert read_local_pkg_info(tmp_path / "missing.tar.gz", "demo_pkg-1.0.tar.gz") is None
