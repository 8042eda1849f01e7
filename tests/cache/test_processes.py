"""Real ``wheelmeld serve`` processes: ``--workers 2`` sharing one cache still fetch each object once,
and ``kill -9`` in the middle of a large download leaves nothing that is ever served.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cache.cachekit import backend_flags, cache_files, disagreeing_release, serve_process, tmp_leftovers
from tests.support.fake_index import FakeFile, FakeIndex
from tests.support.stack import wait_until
from tests.support.upstream import Fault, UpstreamOptions, UpstreamServer
from tests.support.wheels import build_wheel, metadata_from_fields, write_wheel

BIG = "big-1.0-py3-none-any.whl"


async def _gather(url: str, clients: int) -> list[tuple[int, bytes]]:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=clients + 10)) as client:

        async def one() -> tuple[int, bytes]:
            response = await client.get(url)
            return response.status_code, response.content

        return await asyncio.gather(*(one() for _ in range(clients)))


def test_two_workers_sharing_a_cache_fetch_each_object_once(tmp_path: Path) -> None:
    meld_index, siblings = disagreeing_release()
    metadata = metadata_from_fields("big", "1.0", ["idna"])
    big = FakeFile(BIG, content=build_wheel(BIG, metadata, payload_size=2 * 1024 * 1024), metadata=metadata)
    index = FakeIndex.from_files({**meld_index.projects, "big": [big]})
    options = UpstreamOptions(prefix="/simple", hashes=True, pep658=True, latency_ms=20)
    with (
        UpstreamServer(index, options) as up,
        serve_process(tmp_path / "cache", {"/simple": up.url + "/simple"}, "--workers", "2") as proxy,
    ):
        # A slow body keeps the download open while the 50 requests land on both workers.
        up.inject_fault("/" + BIG, Fault(chunk_size=64 * 1024, chunk_delay_ms=15))
        results = asyncio.run(_gather(f"{proxy.url}/simple/big/{BIG}", 50))
        assert {status for status, _ in results} == {200}
        assert all(body == big.content for _, body in results), "50 identical, whole bodies"
        assert [r.method for r in up.requests_for("/" + BIG)] == ["GET"]
        assert len(up.requests_for("/simple/big/")) == 1, "one page fetch for both workers"

        target = siblings[0].filename
        results = asyncio.run(_gather(f"{proxy.url}/simple/meldy/{target}.metadata", 50))
        assert {status for status, _ in results} == {200}
        assert len({body for _, body in results}) == 1
        assert b"only-5" in results[0][1]
        for sibling in siblings:
            assert len(up.requests_for("/" + sibling.filename + ".metadata")) == 1, sibling.filename
        assert "Traceback" not in proxy.log()
        # Both workers write the access log (spawned workers set up logging themselves).
        wait_until(
            lambda: proxy.log().count(f"path=/simple/big/{BIG} status=200") >= 50, "50 access-log lines"
        )


@pytest.fixture(scope="module")
def huge_wheel(tmp_path_factory: pytest.TempPathFactory) -> FakeFile:
    """A 200 MB wheel on disk (streamed by the fake upstream, never held in memory)."""
    metadata = metadata_from_fields("huge", "1.0", ["idna"])
    path = write_wheel(tmp_path_factory.mktemp("huge"), "huge-1.0-py3-none-any.whl", metadata,
                       payload_size=200 * 1000 * 1000)  # fmt: skip
    return FakeFile(path.name, path=path, metadata=metadata)


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def test_kill_9_mid_download_then_restart_serves_the_verified_file(
    tmp_path: Path, huge_wheel: FakeFile, backend: dict[str, Any]
) -> None:
    assert huge_wheel.path is not None
    name, expected = huge_wheel.filename, _sha256(huge_wheel.path)
    cache = tmp_path / "cache"
    options = UpstreamOptions(prefix="/simple", hashes=True)
    with UpstreamServer(FakeIndex.from_files({"huge": [huge_wheel]}), options) as up:
        routes = {"/simple": up.url + "/simple"}
        url = f"/simple/huge/{name}"
        # 1 MiB every 20 ms: the whole file would take seconds; we kill after ~30 MB.
        up.inject_fault("/" + name, Fault(chunk_size=1024 * 1024, chunk_delay_ms=20, times=1))
        with serve_process(cache, routes, *backend_flags(backend)) as proxy:
            received = 0
            with (
                httpx.Client(base_url=proxy.url, timeout=30) as client,
                client.stream("GET", url) as response,
            ):
                assert response.status_code == 200
                assert response.headers["content-length"] == str(huge_wheel.body_size)
                for chunk in response.iter_raw():
                    received += len(chunk)
                    if received >= 30 * 1000 * 1000:
                        proxy.kill9()
                        break
            assert proxy.process.returncode is not None
        assert 0 < received < huge_wheel.body_size
        assert tmp_leftovers(cache), "the killed download left its partial temp file"
        assert cache_files(cache, name) == [], "nothing partial was committed"

        with serve_process(cache, routes, *backend_flags(backend)) as proxy:
            assert tmp_leftovers(cache) == [], "start-up dropped the leftover"
            with httpx.Client(base_url=proxy.url, timeout=60) as client:
                digest = hashlib.sha256()
                with client.stream("GET", url) as response:
                    assert response.status_code == 200
                    for chunk in response.iter_bytes():
                        digest.update(chunk)
                assert digest.hexdigest() == expected
                [committed] = cache_files(cache, name)
                assert _sha256(committed) == expected
                assert committed.with_name(name + ".sha256").read_text() == expected
                again = client.head(url)
                assert again.status_code == 200 and again.headers["etag"] == f'"{expected}"'
        assert len(up.requests_for("/" + name)) == 2, "one killed download, one complete"
