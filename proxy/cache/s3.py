"""``ObjectStore`` on any S3-compatible store (AWS S3, MinIO, Ceph RGW, R2, GCS's S3 interface), with obstore.

obstore (Rust's object_store behind a thin typed Python layer) spends a quarter of aiobotocore's
CPU per small request and holds no more than its parts in flight while streaming; numbers in
benchmarks/README.md ("S3 clients"). It is an optional dependency (``pip install 'wheelmeld[s3]'``):
nothing imports this module unless the S3 backend is configured.

Credentials come from the standard AWS chain, exactly as the AWS CLI finds them (environment
variables, ``AWS_PROFILE`` and the shared config/credentials files, SSO, container and instance
roles), through botocore; they are handed to obstore by a callable and appear in no argument, repr,
log line or error message of this module.

Whole or nothing: ``put`` is one PUT request, atomic in S3. ``put_stream`` is a multipart upload
that obstore completes only when its input ends, and its input is ``verified(...)``, which raises
instead of ending when the body does not match; on any error obstore aborts the upload. A process
killed mid-upload cannot abort: its parts stay invisible (never listed, never served) until the
bucket's ``AbortIncompleteMultipartUpload`` lifecycle rule removes them (docs/fleet.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

import obstore
from obstore.exceptions import BaseError
from obstore.store import S3Store

from proxy.cache.object_store import (
    Expected,
    ObjectInfo,
    ObjectMissing,
    ObjectStoreError,
    check_key,
    verified,
)

if TYPE_CHECKING:
    from obstore import ObjectMeta
    from obstore.store import S3Config, S3CredentialProvider

__all__ = ["S3ObjectStore"]

_T = TypeVar("_T")
_MIB = 1024 * 1024
# A wheel of several GB takes a while on any link; stalls are caught by the read timeout instead.
_REQUEST_LIMIT = timedelta(hours=6)


def _standard_credentials() -> S3CredentialProvider:
    """The AWS CLI's credential chain, through botocore (imported here: only this backend needs it)."""
    from obstore.auth.boto3 import Boto3CredentialProvider

    try:
        return Boto3CredentialProvider()
    except ValueError as exc:  # the chain found nothing
        raise ObjectStoreError(
            "no AWS credentials found (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE and the "
            "shared config files, SSO, container or instance role)"
        ) from exc


def _one_line(exc: BaseException, limit: int = 300) -> str:
    return " ".join(str(exc).split())[:limit]


class S3ObjectStore:
    """Objects under ``prefix`` in ``bucket``; ``endpoint_url`` for anything but AWS itself.

    ``timeout``: seconds to connect, and seconds a response may go without a byte. ``part_size`` and
    ``concurrent_parts`` bound a streamed upload's memory at their product.
    """

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        timeout: float = 30.0,
        part_size: int = 8 * _MIB,
        concurrent_parts: int = 4,
        read_chunk: int = 256 * 1024,
    ) -> None:
        self.bucket = bucket
        self.prefix = check_key(prefix.strip("/")) if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url
        self._part_size, self._concurrent_parts, self._read_chunk = part_size, concurrent_parts, read_chunk
        credentials = _standard_credentials()
        config: S3Config = {}
        if region is not None:
            config["region"] = region
        if endpoint_url is not None:
            config["endpoint"] = endpoint_url
        stall = timedelta(seconds=timeout)
        self._store = S3Store(
            bucket,
            config=config,
            client_options={
                "allow_http": bool(endpoint_url and endpoint_url.startswith("http://")),
                "connect_timeout": stall,
                "read_timeout": stall,
                "timeout": _REQUEST_LIMIT,
            },
            retry_config={"max_retries": 3, "retry_timeout": timedelta(seconds=4 * timeout)},
            credential_provider=credentials,
        )

    def __repr__(self) -> str:
        where = f"bucket={self.bucket!r}, prefix={self.prefix!r}, endpoint_url={self.endpoint_url!r}"
        return f"S3ObjectStore({where})"

    def _path(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _key(self, path: str) -> str:
        return path[len(self.prefix) + 1 :] if self.prefix else path

    def _info(self, meta: ObjectMeta) -> ObjectInfo:
        return ObjectInfo(self._key(meta["path"]), meta["size"], meta["last_modified"], meta["e_tag"])

    async def _call(self, key: str, call: Awaitable[_T], *, reading: bool = True) -> _T:
        try:
            return await call
        except FileNotFoundError as exc:  # obstore's 404: no such object or, on a write, no such bucket
            if not reading:
                raise ObjectStoreError(f"s3://{self.bucket}: {_one_line(exc)}") from exc
            raise ObjectMissing(f"no object {key!r} in s3://{self.bucket}/{self.prefix}") from exc
        except BaseError as exc:
            raise ObjectStoreError(f"s3://{self.bucket}: {_one_line(exc)}") from exc

    async def get(self, key: str) -> bytes:
        result = await self._call(key, obstore.get_async(self._store, self._path(key)))
        return bytes(await self._call(key, result.bytes_async()))

    async def stream(self, key: str) -> AsyncIterator[bytes]:
        result = await self._call(key, obstore.get_async(self._store, self._path(key)))
        chunks = result.stream(min_chunk_size=self._read_chunk)
        while True:
            try:
                chunk = await self._call(key, anext(chunks))
            except StopAsyncIteration:
                return
            yield bytes(chunk)

    async def put(self, key: str, data: bytes) -> None:
        upload = obstore.put_async(self._store, self._path(key), data, use_multipart=False)
        await self._call(key, upload, reading=False)

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes], expected: Expected) -> None:
        upload = obstore.put_async(
            self._store,
            self._path(key),
            verified(chunks, expected),
            chunk_size=self._part_size,
            max_concurrency=self._concurrent_parts,
        )
        await self._call(key, upload, reading=False)

    async def head(self, key: str) -> ObjectInfo | None:
        try:
            meta = await self._call(key, obstore.head_async(self._store, self._path(key)))
        except ObjectMissing:
            return None
        return self._info(meta)

    async def exists(self, key: str) -> bool:
        return await self.head(key) is not None

    async def delete(self, key: str) -> None:
        await self._call(key, obstore.delete_async(self._store, self._path(key)))

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        where = self._path(prefix.strip("/")) if prefix.strip("/") else self.prefix
        batches = obstore.list(self._store, prefix=where or None, chunk_size=1000)
        while True:
            try:
                batch = await self._call(prefix, anext(batches))
            except StopAsyncIteration:
                return
            for meta in batch:
                yield self._info(meta)

    async def presigned_get_url(self, key: str, expires_in: timedelta) -> str:
        return await self._call(key, obstore.sign_async(self._store, "GET", self._path(key), expires_in))
