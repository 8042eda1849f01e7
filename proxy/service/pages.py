"""Upstream pages, cached: fresh for the route's TTL, then revalidated; stale when upstream fails.

A page is whatever the upstream has at a path: a project page (files) or a project list (the root of
an index, or a PyTorch directory such as ``/whl/nightly/``). Both are kept parsed in memory and on
disk as PEP 691 JSON with upstream's absolute URLs (upstream's own bytes when it sent UTF-8 JSON),
plus the validators for the next conditional request — so a 304 costs no re-parse and a restart
costs no upstream request.

Workers share the disk copy: each remembers the identity (inode, mtime) of the copy it last read or
wrote, and re-reads it only when another worker replaced it, so an expired page costs a ``stat``, a
conditional request and, on 304, one small write — never a parse; a copy another worker merely
revalidated (the same bytes, fresher) is adopted without a parse too. A page another worker fetched
anew is loaded here while this worker is idle (``follow``, through the run's page journal). A failing
upstream (timeout, reset, 5xx, unreadable page) leaves the last good page in service, marked stale,
logged and counted.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Literal

from packaging.utils import canonicalize_name

from proxy.cache.errors import CacheWriteError
from proxy.cache.page_file import StoredPage, dump_page, load_page
from proxy.cache.page_journal import PageJournal
from proxy.cache.store import CacheStore, PageKey
from proxy.errors import NotFound, OfflineMiss, UpstreamError
from proxy.index.errors import NoProjectName, PageParseError
from proxy.index.model import DistFile, ProjectList, ProjectPage, versions_from_files
from proxy.index.negotiate import JSON_V1
from proxy.index.parse import is_utf8_json, parse_project_list, parse_project_page
from proxy.index.releases import Release, release_groups
from proxy.index.render import render_list_json, render_project_json
from proxy.network.upstream import Upstream
from proxy.observe import CacheOutcome, Metrics, not_cached, note_cache
from proxy.service.flights import Flights
from proxy.text import escape_controls

__all__ = ["PageEntry", "PageService"]

log = logging.getLogger("wheelmeld")

# Bodies larger than this are parsed in a thread: a 7 MB page takes a quarter second to parse.
_PARSE_ON_LOOP_MAX = 256 * 1024
_STALE_RETRY_SECONDS = 10.0
# How often a worker looks at the journal for pages its siblings fetched (``follow``).
_FOLLOW_SECONDS = 0.25

# Identity of one on-disk copy: every save is a rename of a new file, so a new inode.
_DiskStamp = tuple[int, int]


@dataclass(slots=True, weakref_slot=True)
class PageEntry:
    """One cached page and what we know about its freshness. Mutable: the service owns it.

    How it is served (rendered, with our hashes) is kept apart, per revisions, in a ``PageView``
    (``proxy.service.page_views``). Weakly referable, so a test can see that nothing built from a
    replaced entry keeps it alive.
    """

    key: PageKey
    kind: Literal["project", "list"]
    page: ProjectPage | None
    listing: ProjectList | None
    fetched_at: float  # wall clock of the last 200 or 304, shared across workers through the disk copy
    etag: str | None = None
    last_modified: str | None = None
    url: str = ""
    stale_reason: str | None = None  # set while we serve this copy because upstream failed
    stale_until: float = 0.0  # while stale, do not ask the failing upstream again before this
    disk_stamp: _DiskStamp | None = None  # the disk copy this entry was read from or written to
    disk_body: bytes | None = None  # its page as stored, so a 304 re-saves without re-rendering

    _by_name: dict[str, DistFile] | None = None
    _groups: dict[str, Release] | None = None

    def files_by_name(self) -> dict[str, DistFile]:
        if self._by_name is None:
            self._by_name = {f.filename: f for f in self.page.files} if self.page else {}
        return self._by_name

    def release_groups(self) -> dict[str, Release]:
        """Wheel file name -> its release's wheels; computed once per page, not per request."""
        if self._groups is None:
            self._groups = release_groups(self.page.files) if self.page else {}
        return self._groups


def _classify(body: bytes, content_type: str, url: str) -> tuple[ProjectPage | None, ProjectList | None]:
    """Is this a project page or a project list? Trust the document, not the path."""
    try:
        page: ProjectPage | None = parse_project_page(body, content_type, url)
    except NoProjectName:
        page = None  # a root list at the host's root: no project name to give a page
    if page is not None and page.files:
        return page, None
    listing = parse_project_list(body, content_type, url)
    if listing.projects or page is None:
        return None, listing
    return page, None


def _merge_pruned(new: ProjectPage, old: ProjectPage | None, still_cached: set[str]) -> ProjectPage:
    """Keep listing files upstream dropped that the cache still holds, so existing locks still sync."""
    if old is None:
        return new
    present = {f.filename for f in new.files}
    kept = tuple(f for f in old.files if f.filename not in present and f.filename in still_cached)
    if not kept:
        return new
    files = new.files + kept
    return replace(new, files=files, versions=versions_from_files(f.filename for f in files))


class PageService:
    def __init__(
        self,
        store: CacheStore,
        *,
        offline: bool,
        clock: Callable[[], float] | None = None,
        journal: PageJournal | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self._offline = offline
        self._entries: dict[PageKey, PageEntry] = {}
        self._clock = clock or time.time
        self._journal = journal  # shared with sibling workers (``--workers N``), else None
        self._metrics = metrics or Metrics()
        self._flights: Flights[PageKey, PageEntry] = Flights()
        self._replaced: list[Callable[[PageEntry], None]] = []

    def when_replaced(self, listener: Callable[[PageEntry], None]) -> None:
        """Call ``listener`` with every entry a newer one replaces, so what was built from it goes."""
        self._replaced.append(listener)

    def _serve(self, entry: PageEntry) -> None:
        """Make ``entry`` the one in service for its key."""
        old = self._entries.get(entry.key)
        self._entries[entry.key] = entry
        if old is not None and old is not entry:
            for listener in self._replaced:
                listener(old)

    # -- persistence ----------------------------------------------------------------------------
    def _stamp(self, key: PageKey) -> _DiskStamp | None:
        try:
            st = os.stat(self._store.page_path(key))
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns

    def _read(self, key: PageKey) -> tuple[_DiskStamp | None, StoredPage] | None:
        """The disk copy, unparsed, and its identity; None when there is none or it is damaged."""
        stamp = self._stamp(key)
        raw = self._store.read(self._store.page_path(key))
        if raw is None:
            return None
        try:
            return stamp, load_page(raw)
        except ValueError:
            return None  # a damaged entry is a miss, never an error

    def _parse(self, key: PageKey, stamp: _DiskStamp | None, stored: StoredPage) -> PageEntry | None:
        try:
            page, listing = (
                (parse_project_page(stored.body, JSON_V1, stored.url), None)
                if stored.kind == "project"
                else (None, parse_project_list(stored.body, JSON_V1, stored.url))
            )
        except (ValueError, PageParseError):
            return None  # a damaged entry is a miss, never an error
        kind: Literal["project", "list"] = "project" if stored.kind == "project" else "list"
        entry = PageEntry(
            key, kind, page, listing, stored.fetched_at, stored.etag, stored.last_modified, stored.url
        )
        entry.disk_stamp, entry.disk_body = stamp, stored.body
        return entry

    def _save(self, entry: PageEntry, *, announce: bool = False) -> None:
        """Write ``entry``'s disk copy; ``announce``: a new page, which sibling workers load too."""
        body = entry.disk_body
        if body is not None and not _is_utf8(body):
            body = None  # the disk copy is read back as UTF-8: render ours instead
        if body is None:
            body = render_project_json(entry.page) if entry.page else render_list_json(entry.listing)  # type: ignore[arg-type]
        stored = StoredPage(entry.kind, entry.url, entry.fetched_at, entry.etag, entry.last_modified, body)
        self._store.write_atomic(self._store.page_path(entry.key), dump_page(stored))
        entry.disk_body, entry.disk_stamp = body, self._stamp(entry.key)
        if announce and self._journal is not None:
            self._journal.record(entry.key)

    # -- the one entry point --------------------------------------------------------------------
    async def get(self, key: PageKey, upstream: Upstream) -> PageEntry:
        entry = self._entries.get(key)
        ttl = upstream.route.page_ttl
        if entry is not None:
            now = self._clock()
            if entry.stale_reason is None and now - entry.fetched_at < ttl:
                return entry
            if entry.stale_reason is not None and now < entry.stale_until:
                return entry  # a failing upstream is retried every few seconds, not per request
        # One look-up per page at a time: a request arriving while one is under way gets its answer
        # (a page, stale or not, or the same error) as soon as it is known, never a fetch of its own
        # after it (behind a stalled upstream, each waiter once waited a whole timeout more).
        return await self._flights.join(key, functools.partial(self._look_up, key, upstream))

    async def lookup(self, key: PageKey, upstream: Upstream) -> PageEntry:
        """``get``, but a normalized project name missing upstream is tried as spelled there."""
        try:
            return await self.get(key, upstream)
        except (NotFound, OfflineMiss) as missing:
            if not key.path or canonicalize_name(key.path[-1]) != key.path[-1]:
                raise
            for spelled in _upstream_spellings(key.path[-1]):
                try:
                    entry = await self.get(PageKey(key.route, (*key.path[:-1], spelled)), upstream)
                except (NotFound, OfflineMiss):
                    continue
                if entry.kind == "project":
                    return entry
            raise missing

    async def _look_up(self, key: PageKey, upstream: Upstream) -> PageEntry:
        ttl = upstream.route.page_ttl
        # Pages are each replica's own (revalidated upstream with their validators): no fleet lease.
        async with self._store.lock("page:" + key.label):
            entry = await self._adopt_disk_copy(key)
            if self._offline:
                if entry is None:
                    raise OfflineMiss(f"offline, and the cache holds no page for /{key.label}/")
                return entry
            if entry is not None and self._clock() - entry.fetched_at < ttl:
                entry.stale_reason = None
                return entry
            return await self._refresh(key, entry, upstream)

    async def _adopt_disk_copy(self, key: PageKey) -> PageEntry | None:
        """The entry to serve ``key`` from: the disk copy when it is newer than ours (another worker
        refreshed it, or this process just started), else ours. Call it holding the page's lock."""
        entry = self._entries.get(key)
        if entry is not None and entry.disk_stamp == await asyncio.to_thread(self._stamp, key):
            return entry
        read = await asyncio.to_thread(self._read, key)
        if read is None:
            return entry
        stamp, stored = read
        if entry is not None and stored.fetched_at <= entry.fetched_at:
            return entry
        if (
            entry is not None
            and (stored.kind, stored.url) == (entry.kind, entry.url)
            and stored.body == entry.disk_body
        ):
            # Another worker revalidated this very page (a 304): the same bytes, fresher. Keep our
            # parsed entry (and its ready answers) rather than parse a 15,000-file page again.
            entry.fetched_at, entry.etag, entry.last_modified = (
                stored.fetched_at,
                stored.etag,
                stored.last_modified,
            )
            entry.disk_stamp, entry.stale_reason = stamp, None
            return entry
        on_disk = await asyncio.to_thread(self._parse, key, stamp, stored)
        if on_disk is not None:
            self._serve(on_disk)
            entry = on_disk
        return entry

    async def follow(
        self, idle: asyncio.Event, prepare: Callable[[PageEntry], Awaitable[None]] | None = None
    ) -> None:
        """Load the pages sibling workers fetch, ahead of any request for them here (runs until
        cancelled; without a journal it returns at once).

        Each load waits until ``idle`` is set (no request in flight in this worker), so requests never
        queue behind parsing a page nobody here asked for yet; a worker that is never idle loads
        pages when they are asked for, as it would without a journal. ``prepare`` then gets each
        page loaded ahead, to render what clients will ask of it.
        """
        if self._journal is None:
            return
        while True:
            await asyncio.sleep(_FOLLOW_SECONDS)
            try:
                for key in await asyncio.to_thread(self._journal.others):
                    await idle.wait()
                    entry = await self._load_ahead(key)
                    if entry is not None and prepare is not None:
                        await idle.wait()
                        await prepare(entry)
            except Exception:  # never let one bad page stop the following
                log.exception("loading pages sibling workers fetched")

    async def _load_ahead(self, key: PageKey) -> PageEntry | None:
        """The disk copy of ``key`` made the entry in service, if it is newer than ours, else None."""
        async with self._store.lock("page:" + key.label):
            before = self._entries.get(key)
            entry = await self._adopt_disk_copy(key)
            if entry is None or entry is before:
                return None
            if entry.page is not None:
                # A page is read for its release groups by the first .metadata request: do that
                # here too, and off the loop (a 15,000-file page groups in 20 ms).
                await asyncio.to_thread(entry.release_groups)
            self._metrics.pages_loaded_ahead += 1
            return entry

    async def _refresh(self, key: PageKey, entry: PageEntry | None, upstream: Upstream) -> PageEntry:
        url = upstream.url_for(key.path)
        try:
            fetched = await upstream.fetch_page(
                url,
                etag=entry.etag if entry else None,
                last_modified=entry.last_modified if entry else None,
            )
            if fetched.status == 404:
                raise NotFound(f"upstream has no page at /{key.label}/")
            if fetched.status == 304 and entry is not None:
                note_cache(CacheOutcome.REVALIDATED)
                entry.fetched_at = self._clock()
                entry.stale_reason = None
                await self._keep(entry)
                return entry
            try:
                args = (fetched.body, fetched.content_type, fetched.url)
                if len(fetched.body) > _PARSE_ON_LOOP_MAX:
                    page, listing = await asyncio.to_thread(_classify, *args)
                else:
                    page, listing = _classify(*args)
            except PageParseError as exc:
                raise UpstreamError(f"upstream page /{key.label}/ is unreadable: {exc}") from exc
        except UpstreamError as exc:
            if entry is None:
                raise
            # Never worse than no proxy: the last good page beats an error.
            log.warning("serving the cached page /%s/ stale: %s", escape_controls(key.label), exc.reason)
            entry.stale_reason = exc.reason
            entry.stale_until = self._clock() + _STALE_RETRY_SECONDS
            return entry
        note_cache(CacheOutcome.MISS)
        as_fetched = page
        if page is not None and upstream.route.keep_pruned and entry is not None:
            cached = set(await asyncio.to_thread(self._store.file_names, key))
            page = _merge_pruned(page, entry.page, cached)
        new = PageEntry(
            key=key,
            kind="project" if page is not None else "list",
            page=page,
            listing=listing,
            fetched_at=self._clock(),
            etag=fetched.etag,
            last_modified=fetched.last_modified,
            url=fetched.url,
        )
        if page is as_fetched and is_utf8_json(fetched.content_type):
            # Upstream's own PEP 691 bytes are a disk copy as good as our rendering of them (they
            # parse back to the same page), and re-rendering cost a 15,000-file page 150 ms.
            new.disk_body = fetched.body
        await self._keep(new, announce=True)
        self._serve(new)
        return new

    async def _keep(self, entry: PageEntry, *, announce: bool = False) -> None:
        """``_save``, but a cache that refuses the write leaves the page served from memory only."""
        try:
            await asyncio.to_thread(functools.partial(self._save, entry, announce=announce))
        except CacheWriteError as exc:
            not_cached(self._metrics, "page", f"/{entry.key.label}/", exc)

    def holds(self, entry: PageEntry) -> bool:
        """Whether ``entry`` is the one in service for its key, fresh or not."""
        return self._entries.get(entry.key) is entry

    def in_service(self, entry: PageEntry, ttl: float) -> bool:
        """Whether ``get`` would answer with ``entry`` right now, fresh, without any I/O."""
        return (
            self._entries.get(entry.key) is entry
            and entry.stale_reason is None
            and self._clock() - entry.fetched_at < ttl
        )


def _upstream_spellings(canonical: str) -> list[str]:
    """Directory names an upstream may keep a project under besides the PEP 503 one.

    The PyTorch index lower-cases project directories without normalizing them
    (``typing_extensions/``), so the normalized URL installers ask for can 404 there.
    """
    return [
        s for s in dict.fromkeys((canonical.replace("-", "_"), canonical.replace("-", "."))) if s != canonical
    ]


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
