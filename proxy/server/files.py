"""Distribution files: served from the cache, or streamed from upstream while they are cached.

One download per file, whatever the number of clients: the first request starts a ``Download`` that
runs on its own (a client hanging up does not stop it), writes a temp file and commits it only after
its sha256 matched upstream's. Every client — the first and any late joiner — reads that temp file
from byte 0 as it grows, so nobody waits for the whole file. A wrong hash or a truncated body aborts
every reader's response (their Content-Length then tells their installer) and leaves nothing cached.
Across worker processes the download holds the file's flock; a second process waits for it and
then serves the committed file.

Serving a cached file sets its access time: that is the "recently used" of the size limit
(``cache.max_size``), enforced in a thread after each commit that may have pushed the cache over it,
sparing files being downloaded or streamed from the cache right now.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections import Counter, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import anyio
from starlette.responses import FileResponse, Response
from starlette.types import Receive, Scope, Send

from proxy.cache.evict import evict
from proxy.cache.store import CacheStore, ProjectKey
from proxy.errors import OfflineMiss, UpstreamError, WheelmeldError
from proxy.index.model import DistFile
from proxy.server.observability import Metrics
from proxy.server.upstream import Upstream
from proxy.text import escape_controls

__all__ = ["FileService", "read_sidecar_hash", "sidecar_hashes"]

log = logging.getLogger("wheelmeld")

# One piece of a download: as written to disk, as kept in memory for its readers, as sent.
_CHUNK = 1024 * 1024
# The newest pieces of a download stay in memory, so readers keeping up with it are served without
# reading the disk or hopping to a thread (ten clients of one cold 2 GB file once cost 20 GB of
# reads and 20,000 thread hops); a reader further behind reads the file, 1 MiB per hop.
_RECENT_BYTES = 16 * _CHUNK
_IMMUTABLE = "public, max-age=31536000, immutable"


def read_sidecar_hash(path: Path) -> str | None:
    """The verified sha256 of a cached file, or ``None`` unless the cache holds the file itself.

    The sidecar is written just before the file's commit (and outlives it for a moment when the file
    is evicted): a hash is only ever advertised for a file we can serve.
    """
    try:
        digest = path.with_name(path.name + ".sha256").read_text().strip()
    except OSError:
        return None
    return digest if digest and path.exists() else None


def sidecar_hashes(files_dir: Path) -> dict[str, str]:
    """``read_sidecar_hash`` of every file the cache holds in ``files_dir``, with one listing.

    A page of 20,000 files without upstream hashes (PyTorch nightlies) once cost 20,000 failed
    opens per render; only the files actually cached are read.
    """
    try:
        names = [entry.name for entry in os.scandir(files_dir)]
    except OSError:
        return {}
    found = {}
    for name in names:
        if name.endswith(".sha256"):
            digest = read_sidecar_hash(files_dir / name.removesuffix(".sha256"))
            if digest:
                found[name.removesuffix(".sha256")] = digest
    return found


@dataclass(slots=True)
class _Download:
    key: ProjectKey
    final: Path
    total: int | None = None
    written: int = 0
    reading_path: Path | None = None  # the temp file while downloading, the final path once committed
    done: bool = False
    error: str | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)
    progress: asyncio.Condition = field(default_factory=asyncio.Condition)
    recent: deque[tuple[int, bytes]] = field(default_factory=deque)  # (offset, piece), oldest first
    recent_bytes: int = 0

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


def _write_and_hash(fh: IO[bytes], digest: hashlib._Hash, chunk: bytes) -> None:
    fh.write(chunk)
    fh.flush()  # readers open the file by path: they must see what the counter says is there
    digest.update(chunk)


class FileService:
    def __init__(self, store: CacheStore, metrics: Metrics, *, offline: bool, max_size: int = 0) -> None:
        self._store = store
        self._metrics = metrics
        self._offline = offline
        self._max_size = max_size  # bytes of cached files; 0 = no limit
        self._downloads: dict[Path, _Download] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._serving: Counter[Path] = Counter()  # cached files being sent right now
        self._eviction_queued = False
        self._eviction_lock = asyncio.Lock()
        # Per page, bumped when a file is committed there: that page then advertises its hash where
        # upstream gave none. Evictions (rare, and not tied to one page) bump every page.
        self._revisions: Counter[ProjectKey] = Counter()
        self._evictions = 0

    def revision(self, key: ProjectKey) -> int:
        return self._revisions.get(key, 0) + self._evictions  # .get: no Counter.__missing__ call

    async def respond(self, key: ProjectKey, dist: DistFile, upstream: Upstream, method: str) -> Response:
        final = self._store.file_path(key, dist.filename)
        cached = self._cached_response(final, dist)
        if cached is not None:
            return cached
        if self._offline:
            raise OfflineMiss(f"offline, and the cache does not hold {dist.filename}")
        download = self._downloads.get(final)
        if download is None:
            download = _Download(key=key, final=final)
            self._downloads[final] = download
            task = asyncio.create_task(self._run(download, dist, upstream))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await download.started.wait()
        if download.error is not None and download.reading_path is None:
            raise UpstreamError(download.error)
        if download.done and download.error is None:
            cached = self._cached_response(final, dist)
            if cached is not None:
                return cached
        headers = {"Cache-Control": _IMMUTABLE}
        if download.total is not None:
            headers["Content-Length"] = str(download.total)
        if method == "HEAD":
            return Response(b"", headers=headers, media_type="application/octet-stream")
        return _FollowingResponse(
            self._follow(download), headers=headers, media_type="application/octet-stream"
        )

    def _cached_response(self, path: Path, dist: DistFile) -> Response | None:
        """The committed file, marked as used now; ``None`` when the cache does not hold it."""
        stat = _touch(path)
        if stat is None:
            return None
        digest = dist.hashes.get("sha256") or read_sidecar_hash(path)
        headers = {"Cache-Control": _IMMUTABLE}
        if digest:
            headers["ETag"] = f'"{digest}"'
        # FileResponse answers Range, If-Range and HEAD itself; its own ETag is replaced by the hash.
        return _TrackedFileResponse(
            path, self._serving, stat, headers=headers, media_type="application/octet-stream"
        )

    # -- the size limit ---------------------------------------------------------------------------
    def _schedule_eviction(self, committed: Path) -> None:
        """After a commit: bring the cache under ``max_size`` in the background (one run queued)."""
        if not self._max_size or self._eviction_queued:
            return
        self._eviction_queued = True
        task = asyncio.create_task(self._evict(committed))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _evict(self, committed: Path) -> None:
        async with self._eviction_lock:
            self._eviction_queued = False  # commits from now on queue a run of their own
            protected = {committed, *self._downloads, *(p for p, n in self._serving.items() if n > 0)}
            try:
                result = await asyncio.to_thread(evict, self._store, self._max_size, frozenset(protected))
            except OSError as exc:
                log.warning("eviction failed: %s", exc)
                return
            if result.removed:
                self._evictions += 1  # pages stop advertising hashes only a dropped file gave
                log.info(
                    "evicted %d file(s), %d bytes; %d bytes of files remain",
                    len(result.removed), result.freed, result.remaining,
                )  # fmt: skip

    async def _run(self, download: _Download, dist: DistFile, upstream: Upstream) -> None:
        try:
            async with self._store.lock("file:" + str(download.final)):
                if download.final.exists():  # another worker committed it while we waited
                    await download.advance(done=True, reading_path=download.final)
                    download.started.set()
                    return
                await self._fetch(download, dist, upstream)
        except WheelmeldError as exc:
            await download.advance(error=exc.reason, done=True)
        except Exception as exc:  # never let a reader wait forever on a task that died
            await download.advance(error=f"download failed: {type(exc).__name__}", done=True)
        finally:
            download.started.set()
            self._downloads.pop(download.final, None)

    async def _fetch(self, download: _Download, dist: DistFile, upstream: Upstream) -> None:
        expected = dist.hashes.get("sha256")
        digest = hashlib.sha256()
        with self._store.open_temp() as (tmp_path, fh):
            # Identity: we store and hash the file's own bytes, never a transfer encoding of them.
            async with upstream.stream(dist.url, headers={"Accept-Encoding": "identity"}) as response:
                length = response.headers.get("content-length")
                total = int(length) if length and length.isdigit() else None
                await download.advance(total=total, reading_path=tmp_path)
                download.started.set()
                async for chunk in response.aiter_raw(_CHUNK):
                    await asyncio.to_thread(_write_and_hash, fh, digest, chunk)
                    self._metrics.upstream_bytes += len(chunk)
                    download.keep(download.written, chunk)
                    await download.advance(written=download.written + len(chunk))
            self._metrics.upstream_request("file")
            if total is not None and download.written != total:
                raise UpstreamError(f"upstream sent {download.written} of {total} bytes of {dist.filename}")
            actual = digest.hexdigest()
            if expected and actual != expected.lower():
                raise UpstreamError(f"{dist.filename} does not match upstream's sha256; not cached")
            await asyncio.to_thread(os.fsync, fh.fileno())
            sidecar = download.final.with_name(download.final.name + ".sha256")
            await asyncio.to_thread(self._store.write_atomic, sidecar, actual.encode())
            await asyncio.to_thread(self._store.commit, tmp_path, download.final)
        self._revisions[download.key] += 1
        await download.advance(done=True, reading_path=download.final)
        self._schedule_eviction(download.final)

    async def _follow(self, download: _Download) -> AsyncIterator[bytes]:
        """Bytes of the download from 0, as they are written; raises if the download fails.

        The last byte is held back until the download is verified: a client must never receive a
        complete body (all Content-Length bytes) of a file whose hash then turns out wrong.
        """
        offset = 0
        handle = None
        try:
            while True:
                async with download.progress:
                    while not download.done and _sendable(download) <= offset:
                        await download.progress.wait()
                    done, error = download.done, download.error
                    available = _sendable(download)
                if error is not None:
                    # Aborting the body (not ending it) makes the client see a short read.
                    raise UpstreamError(error)
                while offset < available:
                    chunk = download.from_memory(offset, available)
                    if chunk is None:
                        if handle is None:
                            handle = _open_either(download)
                        chunk = await asyncio.to_thread(
                            os.pread, handle.fileno(), min(_CHUNK, available - offset), offset
                        )
                        if not chunk:
                            break
                    offset += len(chunk)
                    yield chunk
                if done:
                    return
        finally:
            if handle is not None:
                handle.close()


def _sendable(download: _Download) -> int:
    """How much of the download a reader may have: all of it, but the last byte until verified."""
    if download.done:
        return download.written
    if download.total is not None and download.written < download.total:
        return download.written  # the last byte is still to come: nothing to hold back yet
    return download.written - 1


class _FollowingResponse(Response):
    """Streams a download as it grows; a failed download ends the body short instead of raising.

    Raising out of the app would make the server log a traceback; returning without the final body
    message makes it close the connection, so the client's Content-Length check sees a short read.
    """

    def __init__(self, chunks: AsyncIterator[bytes], headers: dict[str, str], media_type: str) -> None:
        super().__init__(None, headers=headers, media_type=media_type)
        self._chunks = chunks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        async with anyio.create_task_group() as group:

            async def stream() -> None:
                try:
                    async for chunk in self._chunks:
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                except UpstreamError as exc:
                    log.warning("aborted %s: %s", escape_controls(scope.get("path", "?")), exc.reason)
                else:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                group.cancel_scope.cancel()

            async def watch_disconnect() -> None:
                # A client that hangs up stops its reader; the download itself goes on for the others.
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(stream)
            group.start_soon(watch_disconnect)


class _TrackedFileResponse(FileResponse):
    """A cached file's response that counts itself as "in use" while it sends, so eviction spares it."""

    def __init__(
        self, path: Path, in_use: Counter[Path], stat: os.stat_result | None, **kwargs: object
    ) -> None:
        super().__init__(path, stat_result=stat, **kwargs)  # type: ignore[arg-type]
        self._in_use, self._tracked = in_use, path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._in_use[self._tracked] += 1
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._in_use[self._tracked] -= 1
            if self._in_use[self._tracked] <= 0:
                del self._in_use[self._tracked]


def _touch(path: Path) -> os.stat_result | None:
    """Mark a cached file as used now (its access time; the modification time stays ours).

    ``None`` when the cache does not hold it (never did, or evicted a moment ago).
    """
    try:
        stat = os.stat(path)
        os.utime(path, ns=(time.time_ns(), stat.st_mtime_ns))
    except OSError:
        return None
    return stat


def _open_either(download: _Download):  # type: ignore[no-untyped-def]
    """Open the temp file, or the final one if the commit renamed it a moment ago."""
    for path in (download.reading_path, download.final):
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                return path.open("rb")
    raise UpstreamError(f"download of {download.final.name} vanished")
