"""Two replicas sharing one bucket (moto's S3 server) and one Redis (a real redis-server), in front
of the fault-injecting fake upstream: the fleet fetches each object once, a second replica locks
the seed from what the first one stored, and a replica killed while it holds a download's lease is
taken over without a partial object ever reaching the bucket.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.config import Config
from tests.cache.cachekit import metric, serve_process
from tests.e2e.e2ekit import Clients, seed_pyproject, write_project
from tests.support.fake_index import FakeFile, FakeIndex
from tests.support.fleet import fleet_toml
from tests.support.proxy import ProxyServer, proxy_config
from tests.support.redis_server import RedisServer
from tests.support.s3_server import MotoS3
from tests.support.stack import wait_until
from tests.support.upstream import Fault, UpstreamOptions, UpstreamServer
from tests.support.wheels import build_wheel, metadata_from_fields

pytest.importorskip("aiobotocore", reason="the [s3] extra is not installed (pip install -e '.[test]')")
pytest.importorskip("redis", reason="the [coordination] extra is not installed (pip install -e '.[test]')")

pytestmark = pytest.mark.usefixtures("aws_env")

BIG = "big-1.0-py3-none-any.whl"


def _fleet(moto: MotoS3, bucket: str, redis: RedisServer) -> dict[str, Any]:
    """What every replica of one fleet shares: the bucket and the leases."""
    return {
        "cache_backend": "s3",
        "s3_bucket": bucket,
        "s3_endpoint_url": moto.endpoint_url,
        "s3_region": "us-east-1",
        "redis_url": redis.url,
    }


def _replica(tmp_path: Path, name: str, routes: dict[str, str], shared: dict[str, Any]) -> Config:
    return proxy_config(tmp_path / f"cache-{name}", routes, **shared)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _big(size: int) -> FakeFile:
    metadata = metadata_from_fields("big", "1.0", ["idna"])
    return FakeFile(BIG, content=build_wheel(BIG, metadata, payload_size=size), metadata=metadata)


# -- (a) a lock through one replica, then through the other --------------------------------------


@pytest.mark.e2e
def test_a_second_replica_locks_the_seed_from_what_the_first_stored(
    tmp_path: Path, pytorch_upstream: UpstreamServer, moto: MotoS3, bucket: str, redis_server: RedisServer
) -> None:
    routes = {"/whl": pytorch_upstream.url + "/whl"}
    shared = _fleet(moto, bucket, redis_server)
    locks: dict[str, bytes] = {}
    upstream_during: dict[str, list[str]] = {}
    with (
        ProxyServer(_replica(tmp_path, "a", routes, shared)) as a,
        ProxyServer(_replica(tmp_path, "b", routes, shared)) as b,
    ):
        for name, replica in (("a", a), ("b", b)):
            before = len(pytorch_upstream.log.records())
            project = write_project(tmp_path / name, seed_pyproject(f"{replica.url}/whl/nightly/cu126"))
            (tmp_path / f"home-{name}").mkdir()
            # A uv of its own with an empty cache: every request of the lock really reaches the replica.
            Clients(home=tmp_path / f"home-{name}", uv_cache=tmp_path / f"uv-cache-{name}").lock(project)
            locks[name] = (project / "uv.lock").read_bytes()
            upstream_during[name] = [r.path for r in pytorch_upstream.log.records()[before:]]
    assert b"nvidia-cublas-cu12" in locks["a"], "the melded CUDA dependencies are in the lock"
    assert locks["b"] == locks["a"].replace(a.url.encode(), b.url.encode())
    assert any(not path.endswith("/") for path in upstream_during["a"]), "a read metadata upstream"
    # Pages are each replica's own (revalidated upstream); metadata and melds come from the bucket.
    assert [path for path in upstream_during["b"] if not path.endswith("/")] == []


# -- (b) twenty cold requests over both replicas ---------------------------------------------------


async def _get_all(urls: list[str]) -> list[tuple[int, bytes]]:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=len(urls) + 5)) as client:

        async def one(url: str) -> tuple[int, bytes]:
            response = await client.get(url)
            return response.status_code, response.content

        return await asyncio.gather(*(one(url) for url in urls))


def test_twenty_cold_requests_over_two_replicas_fetch_the_file_upstream_once(
    tmp_path: Path, moto: MotoS3, bucket: str, redis_server: RedisServer
) -> None:
    big = _big(1024 * 1024)
    options = UpstreamOptions(prefix="/simple", hashes=True, pep658=True)
    with UpstreamServer(FakeIndex.from_files({"big": [big]}), options) as up:
        routes = {"/simple": up.url + "/simple"}
        shared = _fleet(moto, bucket, redis_server)
        # A slow body keeps the first download under way while every request lands.
        up.inject_fault("/" + BIG, Fault(chunk_size=64 * 1024, chunk_delay_ms=15))
        with (
            ProxyServer(_replica(tmp_path, "a", routes, shared)) as a,
            ProxyServer(_replica(tmp_path, "b", routes, shared)) as b,
        ):
            urls = [f"{(a, b)[i % 2].url}/simple/big/{BIG}" for i in range(20)]
            results = asyncio.run(_get_all(urls))
            metrics = [httpx.get(f"{r.url}/metrics", timeout=10).text for r in (a, b)]
    assert {status for status, _ in results} == {200}
    assert {_sha256(body) for _, body in results} == {_sha256(big.content or b"")}
    assert [r.method for r in up.requests_for("/" + BIG)] == ["GET"], "one upstream GET for the fleet"
    waited = sum(metric(text, "wheelmeld_lease_total", outcome="waited") for text in metrics)
    assert waited >= 1, "one replica waited on the other's lease"


# -- (c) kill -9 of the replica holding the lease, mid-download ------------------------------------


def _fetch_verified(urls: list[str], expected: str, started: threading.Event | None = None) -> str:
    """A client that retries on the next replica when one breaks off (as uv and pip retry)."""
    for url in urls:
        digest = hashlib.sha256()
        try:
            with httpx.stream("GET", url, timeout=60) as response:
                if response.status_code != 200:
                    continue
                for chunk in response.iter_bytes():
                    if started is not None:
                        started.set()
                    digest.update(chunk)
        except httpx.HTTPError:
            continue
        if digest.hexdigest() == expected:
            return url
    raise AssertionError(f"no replica served the verified file: {urls}")


@contextlib.contextmanager
def _threads(count: int, target: Any, *args: Any) -> Iterator[list[Any]]:
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(target(*args))) for _ in range(count)]
    for thread in threads:
        thread.start()
    try:
        yield results
    finally:
        for thread in threads:
            thread.join(timeout=120)


def test_kill_9_of_the_lease_holder_mid_download_is_taken_over_and_nothing_partial_is_stored(
    tmp_path: Path, moto: MotoS3, bucket: str, redis_server: RedisServer
) -> None:
    big = _big(8 * 1024 * 1024)
    expected = _sha256(big.content or b"")
    options = UpstreamOptions(prefix="/simple", hashes=True, pep658=True)
    config = fleet_toml(tmp_path / "fleet.toml", moto, bucket, redis_server, lease_ttl=1.0)
    with UpstreamServer(FakeIndex.from_files({"big": [big]}), options) as up:
        routes = {"/simple": up.url + "/simple"}
        # The first download drips (8 MiB in ~3 s); the one that takes over runs at full speed.
        up.inject_fault("/" + BIG, Fault(chunk_size=64 * 1024, chunk_delay_ms=25, times=1))
        with (
            serve_process(tmp_path / "cache-a", routes, "--config", str(config)) as a,
            serve_process(tmp_path / "cache-b", routes, "--config", str(config)) as b,
        ):
            path = f"/simple/big/{BIG}"
            started = threading.Event()
            with _threads(3, _fetch_verified, [a.url + path, b.url + path], expected, started) as on_a:
                assert started.wait(30), "a began streaming the file"
                with _threads(3, _fetch_verified, [b.url + path], expected) as on_b:
                    # b's download waits on a's lease (a waiter subscribes to its release).
                    wait_until(lambda: _subscribers(redis_server) >= 1, "b waiting on a's lease", 20)
                    a.kill9()
            assert sorted(on_a) == [b.url + path] * 3, "a's clients were cut off and retried on b"
            assert on_b == [b.url + path] * 3
            b_metrics = httpx.get(b.url + "/metrics", timeout=10).text
            assert metric(b_metrics, "wheelmeld_lease_total", outcome="taken_over") == 1
            # b publishes the file once its last byte went out: its sidecar is the commit mark.
            wait_until(lambda: any(k.endswith(BIG + ".sha256") for k in moto.keys(bucket)), "b published")
    assert len(up.requests_for("/" + BIG)) == 2, "a's cut-off download and b's, nothing more"
    keys = [k for k in moto.keys(bucket) if BIG in k]
    assert sorted(k.rpartition("/")[2] for k in keys) == [BIG, BIG + ".sha256"], keys
    assert moto.open_uploads(bucket) == [], "no upload left open"
    [file_key] = [k for k in keys if k.endswith(BIG)]
    body = moto.client.get_object(Bucket=bucket, Key=file_key)["Body"].read()
    assert _sha256(body) == expected, "the one object under the file's name is the whole file"


def _subscribers(redis: RedisServer) -> int:
    from proxy.cache.redis_leases import RELEASED_CHANNEL

    return int(dict(redis.client().pubsub_numsub(RELEASED_CHANNEL))[RELEASED_CHANNEL.encode()])
