"""One download of a file as its readers see it: the bytes so far, in memory and in the temp file.

Every reader (the first client and any late joiner) follows the download from byte 0 as it grows
(``follow``); the last byte is held back until the download is verified, and a download that fails
breaks every reader's connection, so no client ever receives a whole body that was not verified.

A download the cache cannot keep (full or read-only disk) goes on in memory only: from the byte the
disk refused, it waits for its slowest reader before it takes more than the pieces kept in memory,
so readers are served whole and memory stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import anyio

from proxy.cache.store import PageKey
from proxy.errors import UpstreamError

__all__ = ["CHUNK", "Download", "follow", "streaming_headers"]

log = logging.getLogger("wheelmeld")

# One piece of a download: as written to disk, as kept in memory for its readers, as sent.
CHUNK = 1024 * 1024
# The newest pieces of a download stay in memory, so readers keeping up with it are served without
# reading the disk or hopping to a thread (ten clients of one cold 2 GB file once cost 20 GB of
# reads and 20,000 thread hops); a reader further behind reads the file, 1 MiB per hop.
_RECENT_BYTES = 16 * CHUNK


@dataclass(slots=True)
class Download:
    key: PageKey
    final: Path
    total: int | None = None  # upstream's Content-Length, sent on to clients
    written: int = 0
    reading_path: Path | None = None  # the temp file while downloading, the final path once committed
    done: bool = False
    error: str | None = None
    # From this offset on the bytes are in memory only (the disk refused them); None: all on disk.
    memory_from: int | None = None
    answered: bool = False  # upstream's headers arrived: the download is streaming
    started: asyncio.Event = field(default_factory=asyncio.Event)
    progress: asyncio.Condition = field(default_factory=asyncio.Condition)
    recent: deque[tuple[int, bytes]] = field(default_factory=deque)  # (offset, piece), oldest first
    recent_bytes: int = 0
    readers: dict[int, int] = field(default_factory=dict)  # reader -> bytes it was sent
    _tokens: itertools.count[int] = field(default_factory=itertools.count)

    def keep(self, offset: int, piece: bytes) -> None:
        """Remember the piece just written at ``offset``; forget the oldest past the budget."""
        self.recent.append((offset, piece))
        self.recent_bytes += len(piece)
        while self.recent_bytes > _RECENT_BYTES and len(self.recent) > 1:
            self.recent_bytes -= len(self.recent.popleft()[1])

    def from_memory(self, offset: int, stop: int) -> bytes | None:
        """Bytes from ``offset`` (up to ``stop``) out of the recent pieces, or ``None``."""
        for start, piece in self.recent:
            if start <= offset < start + len(piece):
                if offset == start and start + len(piece) <= stop:
                    return piece  # the usual case: a whole piece, no copy
                return piece[offset - start : stop - start]
        return None

    async def advance(self, **changes: object) -> None:
        async with self.progress:
            for name, value in changes.items():
                setattr(self, name, value)
            self.progress.notify_all()

    def unread(self) -> bool:
        """Whether no client reads this download right now (its cut-off: ``proxy.network.pacing``)."""
        return not self.readers

    def join(self) -> int | None:
        """A new reader from byte 0 (its token), or ``None`` when this download can no longer serve
        one: it keeps only a window in memory, and that window has moved past the disk's bytes."""
        if self.memory_from is not None and self.recent and self.recent[0][0] > self.memory_from:
            return None
        token = next(self._tokens)
        self.readers[token] = 0
        return token

    async def leave(self, token: int | None) -> None:
        """A reader that stops reading (done, hung up, or its request failed before the body)."""
        if token is not None and self.readers.pop(token, None) is not None and self.memory_from is not None:
            # Shielded: a reader leaves because it was cancelled, and a download in memory only
            # waits for its readers (``make_room``) — it must hear of this one going.
            with anyio.CancelScope(shield=True):
                await self.advance()

    async def make_room(self, size: int) -> None:
        """Memory only: wait until keeping ``size`` more bytes forgets nothing a reader still needs.

        Raises when nobody reads the download any more: nothing would keep its bytes.
        """
        assert self.memory_from is not None
        async with self.progress:
            while True:
                if not self.readers:
                    raise UpstreamError(f"{self.final.name}: nobody reads it and the cache cannot keep it")
                oldest_kept = self.written + size - _RECENT_BYTES
                if min(self.readers.values()) >= max(self.memory_from, oldest_kept):
                    return
                await self.progress.wait()


def _sendable(download: Download) -> int:
    """How much of the download a reader may have: all of it, but the last byte until verified."""
    if download.done:
        return download.written
    if download.total is not None and download.written < download.total:
        return download.written  # the last byte is still to come: nothing to hold back yet
    return download.written - 1


async def follow(download: Download, token: int) -> AsyncIterator[bytes]:
    """Bytes of the download from 0, as they are written; raises if the download fails."""
    offset = 0
    handle = None
    try:
        # Opened now: a temp file removed later (a download the cache could not commit) stays readable.
        handle = _open_either(download)
        while True:
            async with download.progress:
                while not download.done and _sendable(download) <= offset:
                    await download.progress.wait()
                done, error = download.done, download.error
                available = _sendable(download)
            if error is not None:
                raise UpstreamError(error)
            while offset < available:
                chunk = download.from_memory(offset, available)
                if chunk is None:
                    if handle is None:
                        raise UpstreamError(f"{download.final.name}: fell behind an uncached download")
                    read = min(CHUNK, available - offset)
                    chunk = await asyncio.to_thread(_pread, handle, read, offset)
                    if not chunk:
                        break
                offset += len(chunk)
                yield chunk
                download.readers[token] = offset
                if download.memory_from is not None:
                    await download.advance()  # the download may be waiting for room
            if done:
                return
    finally:
        if handle is not None:
            handle.close()
        await download.leave(token)


def _pread(handle: IO[bytes], size: int, offset: int) -> bytes:
    return os.pread(handle.fileno(), size, offset)


def _open_either(download: Download) -> IO[bytes] | None:
    """Open the temp file, or the final one if the commit renamed it a moment ago."""
    for path in (download.reading_path, download.final):
        if path is not None:
            with contextlib.suppress(OSError):
                return path.open("rb")
    return None


def streaming_headers(headers: dict[str, str], total: int | None) -> dict[str, str]:
    """``headers`` plus Content-Length when upstream gave one; without it the body goes chunked."""
    return {**headers, "Content-Length": str(total)} if total is not None else headers
