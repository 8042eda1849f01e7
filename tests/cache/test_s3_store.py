"""``proxy.cache.s3.S3ObjectStore`` against moto's S3 server (a real HTTP S3 API) on 127.0.0.1.

What S3 holds is read with boto3 straight from the server, not through the store under test: a
write that failed must leave no object *and* no open multipart upload.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from tests.support.s3_server import ACCESS_KEY, SECRET_KEY, MotoS3

pytest.importorskip("aiobotocore", reason="the [s3] extra is not installed (pip install -e '.[test]')")

from proxy.cache.object_store import BodyMismatch, Expected, InvalidKey, ObjectMissing, ObjectStoreError
from proxy.cache.s3 import S3ObjectStore

MIB = 1024 * 1024
PART = 5 * MIB  # S3's smallest part: a 12 MiB body is three parts
WHEEL = "files/torch/torch-2.7.0+cu126-cp311-cp311-linux_x86_64.whl"


pytestmark = pytest.mark.usefixtures("aws_env")


def _store(moto: MotoS3, bucket: str, prefix: str = "") -> S3ObjectStore:
    return S3ObjectStore(
        bucket, prefix=prefix, endpoint_url=moto.endpoint_url, region="us-east-1", timeout=5, part_size=PART
    )


async def _chunks(data: bytes, *, fail_after: int | None = None) -> AsyncIterator[bytes]:
    for start in range(0, len(data), MIB):
        if fail_after is not None and start >= fail_after:
            raise ConnectionResetError("upstream went away")
        yield data[start : start + MIB]


async def _collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in chunks])


def test_put_get_head_delete(moto: MotoS3, bucket: str) -> None:
    async def run() -> None:
        async with _store(moto, bucket) as store:
            assert not await store.exists(WHEEL)
            await store.put(WHEEL, b"wheel bytes")
            assert await store.get(WHEEL) == b"wheel bytes"
            assert await _collect(store.stream(WHEEL)) == b"wheel bytes"
            info = await store.head(WHEEL)
            assert info is not None and (info.key, info.size) == (WHEEL, 11)
            await store.delete(WHEEL)
            await store.delete(WHEEL)  # gone already: not an error
            assert await store.head(WHEEL) is None
            with pytest.raises(ObjectMissing):
                await store.get(WHEEL)
            with pytest.raises(ObjectMissing):
                await _collect(store.stream(WHEEL))

    asyncio.run(run())
    assert moto.keys(bucket) == []


@pytest.mark.parametrize(
    "size", [12 * MIB, 10 * MIB, 3 * MIB, 0], ids=["three-parts", "two-parts", "one-put", "empty"]
)
def test_a_verified_stream_is_stored_whole(moto: MotoS3, bucket: str, size: int) -> None:
    body = os.urandom(size)

    async def run() -> None:
        async with _store(moto, bucket) as store:
            expected = Expected(len(body), hashlib.sha256(body).hexdigest())
            await store.put_stream(WHEEL, _chunks(body), expected)
            assert await _collect(store.stream(WHEEL)) == body

    asyncio.run(run())
    assert moto.keys(bucket) == [WHEEL]
    assert moto.open_uploads(bucket) == []


@pytest.mark.parametrize(
    ("expected", "fail_after", "error"),
    [
        pytest.param(Expected(), 11 * MIB, ConnectionResetError, id="source-breaks-after-two-parts"),
        pytest.param(Expected(), 6 * MIB, ConnectionResetError, id="source-breaks-in-the-second-part"),
        pytest.param(Expected(), 0, ConnectionResetError, id="source-breaks-at-once"),
        pytest.param(Expected(sha256="0" * 64), None, BodyMismatch, id="wrong-sha256"),
        pytest.param(Expected(size=12 * MIB + 1), None, BodyMismatch, id="too-short"),
        pytest.param(Expected(size=7 * MIB), None, BodyMismatch, id="too-long"),
    ],
)
def test_a_stream_that_fails_leaves_nothing_and_the_old_object_stays(
    moto: MotoS3, bucket: str, expected: Expected, fail_after: int | None, error: type[Exception]
) -> None:
    body = os.urandom(12 * MIB)
    fresh = "files/torch/never-written.whl"

    async def run() -> None:
        async with _store(moto, bucket) as store:
            await store.put(WHEEL, b"the complete old object")
            for key in (WHEEL, fresh):
                with pytest.raises(error):
                    await store.put_stream(key, _chunks(body, fail_after=fail_after), expected)
            assert await store.get(WHEEL) == b"the complete old object"
            assert not await store.exists(fresh)

    asyncio.run(run())
    assert moto.keys(bucket) == [WHEEL]
    assert moto.open_uploads(bucket) == []  # every multipart upload started was aborted


def test_a_cancelled_upload_leaves_nothing(moto: MotoS3, bucket: str) -> None:
    # The client that asked for the file went away: the task writing it is cancelled mid-body.
    started = asyncio.Event()

    async def endless() -> AsyncIterator[bytes]:
        for count in itertools.count():
            if count == 12:
                started.set()
            yield b"x" * MIB

    async def run() -> None:
        async with _store(moto, bucket) as store:
            writing = asyncio.create_task(store.put_stream(WHEEL, endless(), Expected()))
            await started.wait()
            writing.cancel()
            with pytest.raises(asyncio.CancelledError):
                await writing

    asyncio.run(run())
    assert moto.keys(bucket) == []
    assert moto.open_uploads(bucket) == []


def test_prefixes_keep_stores_apart(moto: MotoS3, bucket: str) -> None:
    async def run() -> None:
        async with (
            _store(moto, bucket, "team") as team,
            _store(moto, bucket, "team-b/") as neighbour,
            _store(moto, bucket) as root,
        ):
            await team.put("metadata/a.metadata", b"a")
            await neighbour.put("metadata/a.metadata", b"b")
            assert await team.get("metadata/a.metadata") == b"a"
            assert await neighbour.get("metadata/a.metadata") == b"b"
            assert [i.key async for i in team.list()] == ["metadata/a.metadata"]
            everything = sorted([i.key async for i in root.list()])
            assert everything == ["team-b/metadata/a.metadata", "team/metadata/a.metadata"]
            await team.delete("metadata/a.metadata")
            assert await neighbour.exists("metadata/a.metadata")

    asyncio.run(run())
    assert moto.keys(bucket) == ["team-b/metadata/a.metadata"]


def test_listing_is_by_whole_segments(moto: MotoS3, bucket: str) -> None:
    keys = {WHEEL: 3, "files/numpy/numpy-2.0-py3-none-any.whl": 5, "filesystem/x": 1, "metadata/m": 2}

    async def run() -> None:
        async with _store(moto, bucket, "fleet") as store:
            for key, size in keys.items():
                await store.put(key, b"x" * size)
            assert {i.key: i.size async for i in store.list()} == keys
            assert {i.key async for i in store.list("files")} == {k for k in keys if k.startswith("files/")}
            assert [i.key async for i in store.list("files/torch/")] == [WHEEL]
            assert [i async for i in store.list("nothing")] == []

    asyncio.run(run())


def test_a_presigned_url_serves_the_object_without_credentials(moto: MotoS3, bucket: str) -> None:
    async def run() -> tuple[str, str]:
        async with _store(moto, bucket, "fleet") as store:
            await store.put(WHEEL, b"signed bytes")
            return (
                await store.presigned_get_url(WHEEL, timedelta(minutes=5)),
                await store.presigned_get_url("files/missing.whl", timedelta(minutes=5)),
            )

    url, missing = asyncio.run(run())
    assert SECRET_KEY not in url
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == b"signed bytes"
    assert httpx.get(missing).status_code == 404


@pytest.mark.parametrize("key", ["/abs", "a/../b", ""])
def test_bad_keys_are_refused_before_any_request(moto: MotoS3, bucket: str, key: str) -> None:
    async def run() -> None:
        async with _store(moto, bucket) as store:
            await store.put(key, b"x")

    with pytest.raises(InvalidKey):
        asyncio.run(run())
    assert moto.keys(bucket) == []


def test_credentials_are_never_shown(moto: MotoS3) -> None:
    store = _store(moto, "wheelmeld-no-such-bucket")

    async def run() -> None:
        async with store:
            await store.put("a", b"x")

    assert SECRET_KEY not in repr(store)
    with pytest.raises(ObjectStoreError) as caught:
        asyncio.run(run())
    message = str(caught.value)
    assert "NoSuchBucket" in message
    assert "\n" not in message
    assert SECRET_KEY not in message and ACCESS_KEY not in message


def test_no_credentials_anywhere_is_one_clear_error(moto: MotoS3, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")

    async def run() -> None:
        async with _store(moto, "wheelmeld-any"):
            pass

    with pytest.raises(ObjectStoreError, match="no AWS credentials found"):
        asyncio.run(run())
