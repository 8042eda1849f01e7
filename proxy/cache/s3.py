"""``ObjectStore`` on any S3-compatible store (AWS S3, MinIO, Ceph RGW, R2, GCS), with aiobotocore.

aiobotocore is botocore (the AWS SDK's core) on aiohttp. obstore needs a third of its CPU per small
request, but a process that used obstore dies at exit (SIGABRT) in 2 to 6 of every 16 short runs,
in every version tried, so a CLI command on this backend would fail at random after its work
was done (benchmarks/README.md, "S3 clients"). It is an optional dependency (``pip install
'wheelmeld[s3]'``): nothing imports this module unless the S3 backend is configured.

Credentials come from botocore's standard chain, exactly as the AWS CLI finds them (environment
variables, ``AWS_PROFILE`` and the shared config/credentials files, SSO, container and instance
roles); they appear in no argument, repr, log line or error message of this module.

Whole or nothing: a body that fits in one part is one PUT, atomic in S3. A larger one is a multipart
upload completed only after its input, ``verified(...)``, ended without raising, i.e. after the last
byte was checked against what it must be; on any error, mismatch or cancellation the upload is
aborted. A process killed mid-upload cannot abort: its parts stay invisible (never listed, never
served) until the bucket's ``AbortIncompleteMultipartUpload`` lifecycle rule removes them
(docs/fleet.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from proxy.cache.object_store import (
    Expected,
    ObjectInfo,
    ObjectMissing,
    ObjectStoreError,
    check_key,
    verified,
)

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

__all__ = ["S3ObjectStore"]

_MIB = 1024 * 1024
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})


def _one_line(exc: BaseException, limit: int = 300) -> str:
    return " ".join(str(exc).split())[:limit]


class S3ObjectStore:
    """Objects under ``prefix`` in ``bucket``; ``endpoint_url`` for anything but AWS itself.

    Use it as ``async with S3ObjectStore(...) as store:`` (the client and its connections live
    between enter and exit). ``timeout``: seconds to connect, and seconds a response may go without
    a byte. ``part_size``: bytes per multipart part (S3's least is 5 MiB); a streamed upload holds at
    most two parts in memory, one being sent while the next fills.
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
        read_chunk: int = 256 * 1024,
    ) -> None:
        self.bucket = bucket
        self.prefix = check_key(prefix.strip("/")) if prefix.strip("/") else ""
        self.endpoint_url, self.region = endpoint_url, region
        self._timeout, self._part_size, self._read_chunk = timeout, part_size, read_chunk
        self._exit = contextlib.AsyncExitStack()
        self._client: S3Client | None = None

    def __repr__(self) -> str:
        where = f"bucket={self.bucket!r}, prefix={self.prefix!r}, endpoint_url={self.endpoint_url!r}"
        return f"S3ObjectStore({where})"

    async def __aenter__(self) -> S3ObjectStore:
        session = get_session()
        if await session.get_credentials() is None:
            raise ObjectStoreError(
                "no AWS credentials found (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE and the "
                "shared config files, SSO, container or instance role)"
            )
        config = AioConfig(
            connect_timeout=self._timeout,
            read_timeout=self._timeout,
            retries={"max_attempts": 3, "mode": "standard"},
            # A self-hosted store answers at its own host name, not at <bucket>.<host>.
            s3={"addressing_style": "path" if self.endpoint_url else "auto"},
        )
        client = session.create_client(
            "s3", endpoint_url=self.endpoint_url, region_name=self.region, config=config
        )
        self._client = await self._exit.enter_async_context(client)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._client = None
        await self._exit.aclose()

    @property
    def _s3(self) -> S3Client:
        if self._client is None:
            raise ObjectStoreError(f"{self!r} is not open (use it as 'async with')")
        return self._client

    def _path(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextlib.contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        try:
            yield
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                raise ObjectMissing(f"no object {key!r} in s3://{self.bucket}/{self.prefix}") from exc
            raise ObjectStoreError(f"s3://{self.bucket}: {_one_line(exc)}") from exc
        except BotoCoreError as exc:
            raise ObjectStoreError(f"s3://{self.bucket}: {_one_line(exc)}") from exc

    async def get(self, key: str) -> bytes:
        with self._errors(key):
            response = await self._s3.get_object(Bucket=self.bucket, Key=self._path(key))
            async with response["Body"] as body:
                return await body.read()

    async def stream(self, key: str) -> AsyncIterator[bytes]:
        with self._errors(key):
            response = await self._s3.get_object(Bucket=self.bucket, Key=self._path(key))
        async with response["Body"] as body:
            chunks = body.iter_chunks(self._read_chunk).__aiter__()
            while True:
                with self._errors(key):
                    chunk = await anext(chunks, None)
                if chunk is None:
                    return
                yield chunk

    async def put(self, key: str, data: bytes) -> None:
        with self._errors(key):
            await self._s3.put_object(Bucket=self.bucket, Key=self._path(key), Body=data)

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes], expected: Expected) -> None:
        path, buffer = self._path(key), bytearray()
        body = verified(chunks, expected).__aiter__()
        while len(buffer) < self._part_size:
            chunk = await anext(body, None)
            if chunk is None:  # the whole body fits in one part: one PUT
                with self._errors(key):
                    await self._s3.put_object(Bucket=self.bucket, Key=path, Body=bytes(buffer))
                return
            buffer += chunk
        with self._errors(key):
            upload = await self._s3.create_multipart_upload(Bucket=self.bucket, Key=path)
        try:
            parts = await self._send_parts(path, upload["UploadId"], buffer, body)
            with self._errors(key):
                await self._s3.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=path,
                    UploadId=upload["UploadId"],
                    MultipartUpload={"Parts": parts},
                )
        except BaseException:
            # Shielded: a cancelled writer (a client gone) must still leave no upload behind.
            with contextlib.suppress(ClientError, BotoCoreError):
                aborting = self._s3.abort_multipart_upload(
                    Bucket=self.bucket, Key=path, UploadId=upload["UploadId"]
                )
                await asyncio.shield(aborting)
            raise

    async def _send_parts(
        self, path: str, upload_id: str, buffer: bytearray, body: AsyncIterator[bytes]
    ) -> list[CompletedPartTypeDef]:
        """Every part of ``buffer`` + ``body``, each sent while the next one fills."""
        parts: list[CompletedPartTypeDef] = []
        sending: asyncio.Task[None] | None = None

        async def send(number: int, data: bytes) -> None:
            with self._errors(path):
                sent = await self._s3.upload_part(
                    Bucket=self.bucket, Key=path, UploadId=upload_id, PartNumber=number, Body=data
                )
            parts.append({"PartNumber": number, "ETag": sent["ETag"]})

        try:
            ended = False
            while True:
                while len(buffer) < self._part_size and not ended:
                    chunk = await anext(body, None)
                    ended = chunk is None
                    buffer += chunk or b""
                if not buffer:
                    break
                if sending is not None:
                    await sending
                data, buffer = bytes(buffer[: self._part_size]), buffer[self._part_size :]
                sending = asyncio.create_task(send(len(parts) + 1, data))
            if sending is not None:
                await sending
        finally:
            if sending is not None and not sending.done():
                sending.cancel()
                await asyncio.gather(sending, return_exceptions=True)
        return sorted(parts, key=lambda p: p["PartNumber"])

    async def head(self, key: str) -> ObjectInfo | None:
        try:
            with self._errors(key):
                meta = await self._s3.head_object(Bucket=self.bucket, Key=self._path(key))
        except ObjectMissing:
            return None
        return ObjectInfo(key, meta["ContentLength"], meta["LastModified"], meta.get("ETag"))

    async def exists(self, key: str) -> bool:
        return await self.head(key) is not None

    async def delete(self, key: str) -> None:
        with self._errors(key):
            await self._s3.delete_object(Bucket=self.bucket, Key=self._path(key))

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        # Whole segments: "files" lists "files/…", never "filesystem/…".
        below = self._path(prefix.strip("/")) + "/" if prefix.strip("/") else self.prefix
        if below and not below.endswith("/"):
            below += "/"
        skip = len(self.prefix) + 1 if self.prefix else 0
        pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=below)
        listing = pages.__aiter__()
        while True:
            with self._errors(prefix):
                page = await anext(listing, None)
            if page is None:
                return
            for item in page.get("Contents", ()):
                yield ObjectInfo(item["Key"][skip:], item["Size"], item["LastModified"], item.get("ETag"))

    async def presigned_get_url(self, key: str, expires_in: timedelta) -> str:
        with self._errors(key):
            return await self._s3.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self._path(key)},
                ExpiresIn=int(expires_in.total_seconds()),
            )

    async def abort_uploads(self, older_than: datetime) -> int:
        below = self.prefix + "/" if self.prefix else ""
        pages = self._s3.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=below)
        listing, aborted = pages.__aiter__(), 0
        while True:
            with self._errors(below or "/"):
                page = await anext(listing, None)
            if page is None:
                return aborted
            for upload in page.get("Uploads", ()):
                if upload["Initiated"] < older_than:
                    with self._errors(upload["Key"]):
                        await self._s3.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                    aborted += 1
