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
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO

from proxy.cache.errors import CacheWriteError
from proxy.cache.evict import evict
from proxy.cache.object_store import BodyMismatch, ObjectStoreError
from proxy.cache.shared import SharedFile, SharedTier
from proxy.cache.store import CacheStore, PageKey
from proxy.errors import OfflineMiss, UpstreamError, WheelmeldError
from proxy.index.model import DistFile
from proxy.network.pacing import Pace, Stalled, paced
from proxy.network.upstream import Upstream
from proxy.observe import Metrics, not_cached
from proxy.service.downloads import CHUNK, Download, follow, streaming_headers

__all__ = [
    "IMMUTABLE",
    "CachedFile",
    "FileAnswer",
    "FileService",
    "RedirectedFile",
    "StreamedFile",
    "stated_lengths",
]

log = logging.getLogger("wheelmeld")

# Files never change under their name: clients and caches in between may keep them for good.
IMMUTABLE = "public, max-age=31536000, immutable"
_OCTETS = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class CachedFile:
    """A committed file to send as it is (the edge answers Range, If-Range and HEAD on it)."""

    path: Path
    stat: os.stat_result
    headers: dict[str, str]
    # Files being sent right now, by path: the edge counts itself in while it sends, so eviction
    # spares the file.
    in_use: Counter[Path]
    media_type: str = _OCTETS


@dataclass(frozen=True, slots=True)
class StreamedFile:
    """A download followed as it grows; ``chunks`` is ``None`` for a HEAD (headers only).

    A failed download raises ``UpstreamError`` out of ``chunks``: the edge breaks the connection.
    """

    headers: dict[str, str]
    chunks: AsyncIterator[bytes] | None
    media_type: str = _OCTETS


@dataclass(frozen=True, slots=True)
class RedirectedFile:
    """The file is committed in the fleet's bucket: the client fetches it there (a 307 to ``url``,
    presigned: a bearer token until it expires, so never kept by a cache in between)."""

    url: str


FileAnswer = CachedFile | StreamedFile | RedirectedFile


def stated_lengths(size: int | None, headers: Mapping[str, str]) -> tuple[int, ...]:
    """Every length upstream stated for a file: the page's ``size``, Content-Length, Content-Range."""
    stated = [] if size is None else [size]
    length = headers.get("content-length", "")
    if length.isdigit():
        stated.append(int(length))
    whole = headers.get("content-range", "").rpartition("/")[2]
    if whole.isdigit():
        stated.append(int(whole))
    return tuple(stated)


@dataclass(frozen=True, slots=True)
class _Body:
    """Where a download's bytes come from: upstream's response, or the fleet's bucket."""

    total: int | None  # sent on to clients as Content-Length
    lengths: tuple[int, ...]  # every length stated for the file: the body must be each of them
    chunks: AsyncIterator[bytes]
    upstream: bool  # counted as upstream traffic


def _write_and_hash(store: CacheStore, fh: IO[bytes], digest: hashlib._Hash, chunk: bytes) -> None:
    store.append(fh, chunk)
    digest.update(chunk)


class FileService:
    def __init__(
        self,
        store: CacheStore,
        metrics: Metrics,
        *,
        offline: bool,
        max_size: int = 0,
        pace: Pace | None = None,
        shared: SharedTier | None = None,
        redirect: timedelta | None = None,
    ) -> None:
        self._store = store
        self._shared = shared
        self._redirect = redirect  # presigned URLs' lifetime; None: files stream through this replica
        self._pace = pace or Pace()
        self._metrics = metrics
        self._offline = offline
        self._max_size = max_size  # bytes of cached files; 0 = no limit
        self._downloads: dict[Path, Download] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._serving: Counter[Path] = Counter()  # cached files being sent right now
        self._eviction_queued = False
        self._eviction_lock = asyncio.Lock()
        # Per page, bumped when a file is committed there: that page then advertises its hash where
        # upstream gave none. Evictions (rare, and not tied to one page) bump every page.
        self._revisions: Counter[PageKey] = Counter()
        self._evictions = 0

    def revision(self, key: PageKey) -> int:
        return self._revisions.get(key, 0) + self._evictions  # .get: no Counter.__missing__ call

    async def answer(self, key: PageKey, dist: DistFile, upstream: Upstream, method: str) -> FileAnswer:
        final = self._store.file_path(key, dist.filename)
        if self._shared is not None and self._redirect is not None:
            url = await self._shared.presigned_file_url(final, self._redirect)
            if url is not None:
                return RedirectedFile(url)
        cached = self._cached_response(final, dist)
        if cached is not None:
            return cached
        if self._offline and not (self._shared is not None and await self._shared.holds_file(final)):
            raise OfflineMiss(f"offline, and the cache does not hold {dist.filename}")
        reads = method != "HEAD"
        download = self._downloads.get(final)
        # Joined before anything is awaited: a download kept in memory only waits for its readers.
        token = download.join() if download is not None and reads else None
        if download is None or (reads and token is None):
            # None under way, or one in memory only that moved past byte 0: a download of our own.
            download = self._start(key, final, dist, upstream, memory_only=download is not None)
            token = download.join() if reads else None
        try:
            await download.started.wait()
        except BaseException:
            await download.leave(token)
            raise
        if not download.answered:
            await download.leave(token)
            raise UpstreamError(download.error or f"download of {dist.filename} failed")
        if download.done and download.error is None and download.memory_from is None:
            cached = self._cached_response(final, dist)
            if cached is not None:
                await download.leave(token)
                return cached
        headers = streaming_headers({"Cache-Control": IMMUTABLE}, download.total)
        return StreamedFile(headers, None if token is None else follow(download, token))

    def _start(
        self, key: PageKey, final: Path, dist: DistFile, upstream: Upstream, *, memory_only: bool
    ) -> Download:
        download = Download(key=key, final=final, memory_from=0 if memory_only else None)
        self._downloads[final] = download
        task = asyncio.create_task(self._run(download, dist, upstream))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return download

    def _cached_response(self, path: Path, dist: DistFile) -> CachedFile | None:
        """The committed file, marked as used now; ``None`` when the cache does not hold it."""
        stat = _touch(path)
        if stat is None:
            return None
        digest = dist.hashes.get("sha256") or self._store.file_hash(path)
        headers = {"Cache-Control": IMMUTABLE}
        if digest:
            headers["ETag"] = f'"{digest}"'
        return CachedFile(path, stat, headers, self._serving)

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
            # A download done is only publishing its committed file to the bucket: not protected.
            downloading = (path for path, d in self._downloads.items() if not d.done)
            protected = {committed, *downloading, *(p for p, n in self._serving.items() if n > 0)}
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

    async def _run(self, download: Download, dist: DistFile, upstream: Upstream) -> None:
        try:
            if download.memory_from == 0:
                # Nothing to commit: no lock to hold.
                await self._fetch(download, dist, self._from_upstream(download, dist, upstream))
            else:
                async with self._store.lock("file:" + str(download.final), fleet=True):
                    # Local, then the fleet's bucket, then upstream: a replica that waited for this
                    # lock serves what the holder committed (here, or in the bucket).
                    if download.final.exists():
                        await download.advance(done=True, answered=True, reading_path=download.final)
                        return
                    found = None if self._shared is None else await self._shared.open_file(download.final)
                    if found is not None and await self._pull(download, dist, found):
                        return
                    if self._offline:  # the bucket held it a moment ago, and no longer does
                        raise OfflineMiss(f"offline, and the cache does not hold {dist.filename}")
                    await self._fetch(download, dist, self._from_upstream(download, dist, upstream))
                    if self._shared is not None:  # before the lock goes: the fleet must see it
                        # The bucket had no sidecar a moment ago: under a fleet lease, still none.
                        leased = self._store.leases is not None
                        hash_path = self._store.hash_path(download.final)
                        await self._shared.publish_file(download.final, hash_path, seen_missing=leased)
        except WheelmeldError as exc:
            await download.advance(error=exc.reason, done=True)
        except Stalled as exc:
            log.warning("abandoned the download of %s: %s", dist.filename, exc)
            await download.advance(error=f"download of {dist.filename} cut off: {exc}", done=True)
        except Exception as exc:  # never let a reader wait forever on a task that died
            await download.advance(error=f"download failed: {type(exc).__name__}", done=True)
        finally:
            download.started.set()
            if self._downloads.get(download.final) is download:
                del self._downloads[download.final]

    @contextlib.asynccontextmanager
    async def _from_upstream(
        self, download: Download, dist: DistFile, upstream: Upstream
    ) -> AsyncIterator[_Body]:
        # Identity: we store and hash the file's own bytes, never a transfer encoding of them.
        identity = {"Accept-Encoding": "identity"}
        async with upstream.stream(dist.url, headers=identity, read_timeout=self._pace.idle) as response:
            length = response.headers.get("content-length")
            yield _Body(
                total=int(length) if length and length.isdigit() else None,
                lengths=stated_lengths(dist.size, response.headers),
                chunks=paced(response.aiter_raw(), self._pace, download.unread, CHUNK),
                upstream=True,
            )
        self._metrics.upstream_request("file")

    async def _pull(self, download: Download, dist: DistFile, found: SharedFile) -> bool:
        """The file from the fleet's bucket, through the same download its readers follow;
        ``False`` (nothing done) when the bucket's copy is not the file the page lists."""
        assert self._shared is not None
        listed = dist.hashes.get("sha256")
        if listed and listed.lower() != found.sha256.lower():
            await self._shared.discard(download.final, f"the page lists sha256 {listed}")
            return False
        lengths = (found.size, *stated_lengths(dist.size, {}))
        body = _Body(total=found.size, lengths=lengths, chunks=found.chunks, upstream=False)
        try:
            await self._fetch(download, dist, contextlib.nullcontext(body), expected=found.sha256)
        except ObjectStoreError as exc:
            if isinstance(exc, BodyMismatch):
                await self._shared.discard(download.final, str(exc))
            raise UpstreamError(f"the shared copy of {dist.filename} failed: {exc}") from exc
        self._shared.pulled(download.final)
        return True

    async def _fetch(
        self,
        download: Download,
        dist: DistFile,
        source: contextlib.AbstractAsyncContextManager[_Body],
        *,
        expected: str | None = None,
    ) -> None:
        """The file from ``source`` into a temp file its readers follow, committed once verified
        against every length stated and the page's sha256 (and ``expected``, the bucket's)."""
        hashes = [h.lower() for h in (dist.hashes.get("sha256"), expected) if h]
        digest = hashlib.sha256()
        with contextlib.ExitStack() as temp:
            tmp_path, fh = None, None
            if download.memory_from is None:
                try:
                    tmp_path, fh = temp.enter_context(self._store.open_temp())
                except CacheWriteError as exc:
                    self._not_kept(download, exc)
            async with source as body:
                lengths = body.lengths
                await download.advance(total=body.total, reading_path=tmp_path, answered=True)
                download.started.set()
                async for chunk in body.chunks:
                    await self._take(download, fh, digest, chunk, upstream=body.upstream)
            wrong = [n for n in lengths if n != download.written]
            if wrong:
                raise UpstreamError(
                    f"upstream sent {download.written} bytes of {dist.filename}, not the {wrong[0]} it stated"
                )
            actual = digest.hexdigest()
            if any(actual != h for h in hashes):
                raise UpstreamError(f"{dist.filename} does not match upstream's sha256; not cached")
            if fh is not None and tmp_path is not None and download.memory_from is None:
                # Our own hash is vouched for only when a length upstream stated checked out.
                vouched = bool(hashes or lengths)
                try:
                    await asyncio.to_thread(self._commit, download.final, tmp_path, fh, actual, vouched)
                except CacheWriteError as exc:
                    self._not_kept(download, exc)
                else:
                    self._revisions[download.key] += 1
                    await download.advance(done=True, reading_path=download.final)
                    self._schedule_eviction(download.final)
                    return
            await download.advance(done=True)  # served, not kept: readers opened the temp file

    async def _take(
        self, download: Download, fh: IO[bytes] | None, digest: hashlib._Hash, chunk: bytes, *, upstream: bool
    ) -> None:
        """One piece from upstream: to disk while the cache takes it, to the readers in any case."""
        if fh is not None and download.memory_from is None:
            try:
                await asyncio.to_thread(_write_and_hash, self._store, fh, digest, chunk)
            except CacheWriteError as exc:
                self._not_kept(download, exc)
        if download.memory_from is not None:
            await download.make_room(len(chunk))
            await asyncio.to_thread(digest.update, chunk)
        if upstream:
            self._metrics.upstream_bytes += len(chunk)
        download.keep(download.written, chunk)
        await download.advance(written=download.written + len(chunk))

    def _commit(self, final: Path, tmp_path: Path, fh: IO[bytes], digest: str, vouched: bool) -> None:
        """Blocking: the verified temp file into place, with its hash beside it when vouched for."""
        self._store.sync(fh)
        sidecar = self._store.hash_path(final)
        if vouched:
            self._store.write_atomic(sidecar, digest.encode())
        else:
            self._store.remove(sidecar)  # a hash left from an earlier copy is not this one's
        self._store.commit(tmp_path, final)

    def _not_kept(self, download: Download, exc: CacheWriteError) -> None:
        """The cache refused the download: it goes on in memory only, from the byte refused."""
        download.memory_from = download.written
        not_cached(self._metrics, "file", download.final.name, exc)


def _touch(path: Path) -> os.stat_result | None:
    """Mark a cached file as used now (its access time; the modification time stays ours).

    ``None`` when the cache does not hold it (never did, or evicted a moment ago). A cache that
    cannot be written still serves what it holds: the file is then just not marked.
    """
    try:
        stat = os.stat(path)
    except OSError:
        return None
    with contextlib.suppress(OSError):
        os.utime(path, ns=(time.time_ns(), stat.st_mtime_ns))
    return stat
