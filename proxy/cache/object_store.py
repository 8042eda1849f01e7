"""What the cache needs from a blob store, whatever keeps the blobs (``proxy.cache.s3`` for S3).

Keys are relative, ``/``-separated paths (``files/torch/torch-2.7.0+cu126-…whl``); a store maps them
under its own prefix, so two stores with different prefixes in one bucket never see each other's
objects. Every write is whole or nothing: a reader sees the complete object or none, never a part.
A streamed write names what it must add up to (``Expected``) and is committed only once the last
byte has been checked against it; a body that breaks off or does not match leaves nothing.

The store raises its own errors (``ObjectStoreError`` and below); the service layer wraps them into
``proxy.errors`` where a client is answered, as it does for the other helpers' errors.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

__all__ = [
    "BodyMismatch",
    "Expected",
    "InvalidKey",
    "ObjectInfo",
    "ObjectMissing",
    "ObjectStore",
    "ObjectStoreError",
    "check_key",
    "verified",
]


class ObjectStoreError(Exception):
    """The store failed or refused; ``str(err)`` is one line and never holds a credential."""


class ObjectMissing(ObjectStoreError):
    """No object under that key."""


class InvalidKey(ObjectStoreError):
    """A key that is not a relative path of non-empty, non-dot segments."""


class BodyMismatch(ObjectStoreError):
    """A streamed body was not the size or the SHA-256 it was promised to be."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One stored object; ``key`` is relative to the store's prefix."""

    key: str
    size: int
    last_modified: datetime
    etag: str | None = None


@dataclass(frozen=True, slots=True)
class Expected:
    """What a streamed body must be for the write to be committed; ``None``: not checked."""

    size: int | None = None
    sha256: str | None = None  # lowercase hex


class ObjectStore(Protocol):
    """An async blob store. Keys go through ``check_key``; a bad one raises ``InvalidKey``."""

    async def get(self, key: str) -> bytes:
        """The whole object (small ones: metadata, melds); ``ObjectMissing`` if there is none."""
        ...

    def stream(self, key: str) -> AsyncIterator[bytes]:
        """The object in chunks as they arrive; ``ObjectMissing`` before the first if there is none."""
        ...

    async def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` in one request, replacing what was there."""
        ...

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes], expected: Expected) -> None:
        """Store a body of unknown length as it arrives, committed only if it matches ``expected``.

        If ``chunks`` raises, or the body is not what ``expected`` says (``BodyMismatch``), nothing
        is stored and whatever was there stays."""
        ...

    async def head(self, key: str) -> ObjectInfo | None:
        """The object's size and dates, ``None`` if there is none."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None:
        """Remove the object; removing a missing one is not an error."""
        ...

    def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """Every object whose key starts with the segments of ``prefix`` (``files`` lists
        ``files/…``, not ``filesystem/…``), in no particular order."""
        ...

    async def presigned_get_url(self, key: str, expires_in: timedelta) -> str:
        """A URL anyone can GET the object from, without credentials, until it expires."""
        ...

    async def abort_uploads(self, older_than: datetime) -> int:
        """Abort the multipart uploads under the prefix started before ``older_than`` (their
        writer died mid-upload: nothing else ever ends them); how many were aborted."""
        ...


def check_key(key: str) -> str:
    """``key`` if it is a relative path of plain segments; else ``InvalidKey``."""
    segments = key.split("/")
    if not key or any(s in ("", ".", "..") for s in segments) or any(ord(c) < 0x20 for c in key):
        raise InvalidKey(f"not an object key: {key!r}")
    return key


async def verified(chunks: AsyncIterable[bytes], expected: Expected) -> AsyncIterator[bytes]:
    """``chunks`` passed on as they come, raising ``BodyMismatch`` *instead of ending* when they do
    not add up to ``expected``: a writer that commits at the end of its input commits only a body
    that matched, and one that aborts on an error aborts the rest."""
    digest, size = hashlib.sha256(), 0
    async for chunk in chunks:
        size += len(chunk)
        if expected.size is not None and size > expected.size:
            raise BodyMismatch(f"body longer than the {expected.size} bytes expected")
        digest.update(chunk)
        yield chunk
    if expected.size is not None and size != expected.size:
        raise BodyMismatch(f"body of {size} bytes, {expected.size} expected")
    if expected.sha256 is not None and digest.hexdigest() != expected.sha256.lower():
        raise BodyMismatch(f"body's sha256 {digest.hexdigest()} is not the {expected.sha256} expected")
