"""Small files that may change under one name: a release's PEP 825 ``{name}-{version}-variants.json``.

Distribution files never change once uploaded, so they are cached forever (``files``). The index
regenerates a release's ``variants.json`` whenever a variant wheel is added, so it is served like a
page instead: fresh for the route's page TTL, then fetched again; while upstream fails, the last good
copy is served (marked stale). A copy whose sha256 the page lists is valid as long as the page lists
that hash, whatever its age, and bytes that do not match the listed hash are never served.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from proxy.cache.errors import CacheWriteError
from proxy.cache.store import CacheStore, PageKey
from proxy.errors import NotFound, OfflineMiss, UpstreamError
from proxy.index.model import DistFile
from proxy.network.upstream import Upstream
from proxy.observe import Metrics, not_cached

__all__ = ["RevalidatedFiles"]

log = logging.getLogger("wheelmeld")

# variants.json lists a release's variants: kilobytes. A cap keeps a wrong link from filling memory.
_SIZE_CAP = 16 * 1024 * 1024


class RevalidatedFiles:
    def __init__(
        self, store: CacheStore, metrics: Metrics, *, offline: bool, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._offline = offline
        self._clock = clock

    async def get(self, key: PageKey, dist: DistFile, upstream: Upstream) -> tuple[bytes, str]:
        """The bytes to serve and, when they are a stale copy, why (else ``""``)."""
        path = self._store.revalidated_path(key, dist.filename)
        listed = dist.hashes.get("sha256")
        cached, age = await asyncio.to_thread(self._read_with_age, path)
        if cached is not None and self._still_good(cached, age, listed, upstream):
            return cached, ""
        if self._offline:
            if cached is not None and _matches(cached, listed):
                return cached, "offline"
            raise OfflineMiss(f"offline, and the cache holds no current copy of {dist.filename}")
        async with self._store.lock("revalidated:" + str(path)):  # revalidated like a page
            # Another request (or worker) may have fetched it while this one waited for the lock.
            cached, age = await asyncio.to_thread(self._read_with_age, path)
            if cached is not None and self._still_good(cached, age, listed, upstream):
                return cached, ""
            try:
                fetched = await upstream.fetch_small(dist.url, limit=_SIZE_CAP)
            except UpstreamError as exc:
                if cached is not None and _matches(cached, listed):
                    log.warning("serving a stale %s: %s", dist.filename, exc.reason)
                    return cached, exc.reason
                raise
            if fetched is None:
                raise NotFound(f"upstream has no {dist.filename} (404), though its page lists it")
            if not _matches(fetched, listed):
                raise UpstreamError(f"upstream's {dist.filename} does not match the sha256 its page lists")
            try:
                await asyncio.to_thread(self._store.write_atomic, path, fetched)
            except CacheWriteError as exc:  # a full or read-only disk: served, uncached
                not_cached(self._metrics, "file", dist.filename, exc)
        return fetched, ""

    def _still_good(self, cached: bytes, age: float, listed: str | None, upstream: Upstream) -> bool:
        if listed:
            return _matches(cached, listed)
        return age < upstream.route.page_ttl

    def _read_with_age(self, path: Path) -> tuple[bytes | None, float]:
        """The cached copy and how long ago it was fetched (blocking: run it in a thread)."""
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return None, 0.0
        return self._store.read(path), self._clock() - mtime


def _matches(body: bytes, listed: str | None) -> bool:
    return not listed or hashlib.sha256(body).hexdigest() == listed.lower()
