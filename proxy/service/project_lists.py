"""A route's project list (``GET /simple/``): fetched, rendered once in both formats, served from disk.

The public index lists some 700,000 projects, 40 MB of HTML. Read as a project page it took 22.7 s
and found "files" in it (projects named ``cal.exe``); kept parsed in memory, with its renderings, it
would hold a worker's 100 MB. So the list never becomes a ``PageEntry``: when upstream sends a new
one, its names are read once (in a thread) and rendered as PEP 691 JSON — the route root's
``page.json``, in the format every cached page has — and as PEP 503 HTML (``page.html`` beside it),
links pointing at our project pages. An answer streams one of those two files: a warm one costs an
``open``, a read of a small header and the copy, and no list is held in memory between requests.

Freshness is the route's page TTL, read from the header on disk, so sibling workers share one copy;
an expired list is revalidated with upstream's validators, and a failing upstream leaves the last
good copy in service, marked stale.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import BinaryIO

from proxy.cache.page_file import StoredPage, dump_page, load_header, load_page
from proxy.cache.store import CacheStore, PageKey
from proxy.errors import NotFound, OfflineMiss, UpstreamError
from proxy.index.errors import PageParseError
from proxy.index.model import ProjectList
from proxy.index.negotiate import JSON_V1
from proxy.index.parse import parse_project_list
from proxy.index.render import render_list_html, render_list_json
from proxy.network.upstream import Upstream
from proxy.observe import CacheOutcome

__all__ = ["ListBody", "ProjectListService"]

log = logging.getLogger("wheelmeld")

_HEAD_READ = 64 * 1024  # a page file's header line is a few hundred bytes
_CHUNK = 1024 * 1024
_STALE_RETRY_SECONDS = 10.0


@dataclass(slots=True)
class ListBody:
    """One rendering of a cached list, open: the caller streams ``length`` bytes from ``start`` and
    closes ``fh`` however its answer ends."""

    fh: BinaryIO
    start: int
    length: int
    outcome: CacheOutcome
    stale_reason: str | None = None

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body, read off the loop."""
        await asyncio.to_thread(self.fh.seek, self.start)
        left = self.length
        while left > 0:
            chunk = await asyncio.to_thread(self.fh.read, min(_CHUNK, left))
            if not chunk:
                break  # the copy we opened is immutable: only a damaged disk ends early
            left -= len(chunk)
            yield chunk


def _names_renderings(body: bytes, content_type: str, url: str) -> tuple[bytes, bytes]:
    """Upstream's list as our (PEP 691 JSON, PEP 503 HTML) bytes (blocking: a second for 700k names)."""
    listing = parse_project_list(body, content_type, url)
    names = tuple(n for n in dict.fromkeys(listing.projects) if n.isprintable())
    compact = ProjectList(names)
    return render_list_json(compact), render_list_html(compact)


class ProjectListService:
    def __init__(self, store: CacheStore, *, offline: bool, clock: Callable[[], float] | None = None) -> None:
        self._store = store
        self._offline = offline
        self._clock = clock or time.time
        # Per list: upstream failed, so do not ask it again before this (wall clock) and say why.
        self._stale: dict[PageKey, tuple[float, str]] = {}

    # -- disk ---------------------------------------------------------------------------------------
    def _open(self, key: PageKey, want_json: bool) -> tuple[StoredPage, ListBody] | None:
        """The cached list's header and the rendering asked for, open; None when there is none
        usable (no copy, a damaged one, or one left by an older wheelmeld: it is rebuilt)."""
        try:
            fh = open(self._store.page_path(key), "rb")  # noqa: SIM115 - the ListBody closes it
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            header, start = load_header(fh.read(_HEAD_READ))
            if header.kind != "list":
                raise ValueError("not a project list")
            if want_json:
                size = os.fstat(fh.fileno()).st_size
                return header, ListBody(fh, start, size - start, CacheOutcome.HIT)
            fh.close()
            fh = open(self._store.list_html_path(key), "rb")  # noqa: SIM115
            return header, ListBody(fh, 0, os.fstat(fh.fileno()).st_size, CacheOutcome.HIT)
        except (ValueError, OSError):
            fh.close()
            return None

    def _rebuild(self, key: PageKey) -> bool:
        """Render ``page.html`` (and re-save ``page.json``) from a cached list lacking it, such as one
        an older wheelmeld or a bundle left; False when the cache holds no readable list."""
        raw = self._store.read(self._store.page_path(key))
        if raw is None:
            return False
        try:
            stored = load_page(raw)
            if stored.kind != "list":
                return False  # an older wheelmeld read some lists as project pages: fetch anew
            as_json, as_html = _names_renderings(stored.body, JSON_V1, stored.url)
        except (ValueError, PageParseError):
            return False
        self._write(key, replace(stored, body=as_json), as_html)
        return True

    def _write(self, key: PageKey, stored: StoredPage, html: bytes | None) -> None:
        # HTML first: a sibling worker that sees the new page.json finds the new page.html too.
        items = [] if html is None else [(self._store.list_html_path(key), html)]
        self._store.write_many([*items, (self._store.page_path(key), dump_page(stored))])

    # -- the entry point ----------------------------------------------------------------------------
    async def get(self, key: PageKey, upstream: Upstream, want_json: bool) -> ListBody:
        """The list at ``key`` in the format asked, fresh within the route's TTL where upstream allows."""
        ttl = upstream.route.page_ttl
        found = await asyncio.to_thread(self._open, key, want_json)
        if found is not None:
            header, body = found
            stale = self._stale.get(key)
            if self._offline or (stale is None and self._clock() - header.fetched_at < ttl):
                return body
            if stale is not None and self._clock() < stale[0]:
                body.outcome, body.stale_reason = CacheOutcome.STALE, stale[1]
                return body
            body.fh.close()
        async with self._store.lock("page:" + key.label):  # each replica's own, as pages
            return await self._refresh(key, upstream, want_json)

    async def _refresh(self, key: PageKey, upstream: Upstream, want_json: bool) -> ListBody:
        found = await asyncio.to_thread(self._open, key, want_json)
        if found is None and await asyncio.to_thread(self._rebuild, key):
            found = await asyncio.to_thread(self._open, key, want_json)
        if found is not None and self._clock() - found[0].fetched_at < upstream.route.page_ttl:
            self._stale.pop(key, None)
            return found[1]  # another worker (or this rebuild) has it fresh
        if self._offline:
            if found is None:
                raise OfflineMiss(f"offline, and the cache holds no project list for /{key.label}/")
            return found[1]
        header = found[0] if found is not None else None
        if found is not None:
            found[1].fh.close()
        try:
            outcome = await self._fetch(key, upstream, header)
        except UpstreamError as exc:
            if header is None:
                raise
            log.warning("serving the cached project list /%s/ stale: %s", key.label, exc.reason)
            self._stale[key] = (self._clock() + _STALE_RETRY_SECONDS, exc.reason)
            outcome = CacheOutcome.STALE
        else:
            self._stale.pop(key, None)
        reopened = await asyncio.to_thread(self._open, key, want_json)
        if reopened is None:
            raise UpstreamError(f"the project list /{key.label}/ could not be cached")
        body = reopened[1]
        body.outcome = outcome
        if outcome is CacheOutcome.STALE:
            body.stale_reason = self._stale[key][1]
        return body

    async def _fetch(self, key: PageKey, upstream: Upstream, cached: StoredPage | None) -> CacheOutcome:
        """Ask upstream (conditionally, when ``cached``) and keep what it says on disk."""
        fetched = await upstream.fetch_page(
            upstream.url_for(key.path),
            etag=cached.etag if cached else None,
            last_modified=cached.last_modified if cached else None,
        )
        if fetched.status == 404:
            raise NotFound(f"upstream has no project list at /{key.label}/")
        if fetched.status == 304 and cached is not None:
            await asyncio.to_thread(self._touch, key)
            return CacheOutcome.REVALIDATED
        try:
            as_json, as_html = await asyncio.to_thread(
                _names_renderings, fetched.body, fetched.content_type, fetched.url
            )
        except PageParseError as exc:
            raise UpstreamError(f"upstream project list /{key.label}/ is unreadable: {exc}") from exc
        stored = StoredPage("list", fetched.url, self._clock(), fetched.etag, fetched.last_modified, as_json)
        await asyncio.to_thread(self._write, key, stored, as_html)
        return CacheOutcome.MISS

    def _touch(self, key: PageKey) -> None:
        """A 304: the same list, fresh from now (the body is re-saved as it is)."""
        raw = self._store.read(self._store.page_path(key))
        if raw is not None:
            stored = load_page(raw)
            self._write(key, replace(stored, fetched_at=self._clock()), None)
