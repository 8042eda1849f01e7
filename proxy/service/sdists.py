"""A release's sdist metadata for its meld: what installers get where no wheel of the release fits.

Cheapest first, as for wheels: the cache's copy; the sdist the cache holds; upstream's PEP 658 file
for the sdist when the page advertises one (indexes that publish sdist metadata say so; probing
would cost a 404 per release where they do not); else ``PKG-INFO`` read off the head of the remote
archive (``proxy.network.sdist_metadata``: streamed and stopped, or ranges for a zip; never built,
never extracted). It is immutable like a wheel's metadata: fetched once, ever, and kept on disk
under the sdist's name. Metadata that cannot be had is ``SdistInput(name, None)``: the engine then
calls the meld incomplete, so it is served but not cached, and tried again on a later request.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

from proxy.cache.errors import CacheWriteError
from proxy.cache.store import CacheStore, PageKey
from proxy.errors import OfflineMiss, UpstreamError, WheelmeldError
from proxy.index.model import DistFile
from proxy.meld import MeldLimits, SdistInput
from proxy.meld.reading import Read, read_metadata
from proxy.network.remote_zip import RemoteZipError
from proxy.network.sdist_metadata import NoPkgInfo, fetch_sdist_metadata, read_local_pkg_info
from proxy.network.upstream import Upstream
from proxy.observe import Metrics, not_cached, upstream_time

__all__ = ["SdistMetadata"]

log = logging.getLogger("wheelmeld")

_UNREADABLE_MAX = 4096


class _Unreadable(UpstreamError):
    """The sdist itself holds no readable PKG-INFO (not a failed transfer)."""


class SdistMetadata:
    def __init__(self, store: CacheStore, metrics: Metrics, *, offline: bool, limits: MeldLimits) -> None:
        self._store = store
        self._metrics = metrics
        self._offline = offline
        self._limits = limits
        # Sdists (by URL and hash) whose archive holds no readable PKG-INFO (numpy's meson-built
        # sdist keeps it last, past the cap): the file never changes, so it is not read again.
        self._unreadable: dict[tuple[str, str], str] = {}

    async def input(self, key: PageKey, sdist: DistFile, upstream: Upstream) -> SdistInput:
        """``sdist``'s metadata for ``meld_release``; ``metadata=None`` when it cannot be had now."""
        path = self._store.metadata_path(key, sdist.filename)
        cached = await asyncio.to_thread(self._store.read, path)
        if cached is not None:
            return SdistInput(sdist.filename, cached)
        async with self._store.lock("meta:" + str(path)):
            cached = await asyncio.to_thread(self._store.read, path)
            if cached is not None:
                return SdistInput(sdist.filename, cached)
            identity = (sdist.url, sdist.hashes.get("sha256", ""))
            if identity in self._unreadable:
                return SdistInput(sdist.filename, None)
            try:
                data = await self._fetch(key, sdist, upstream)
            except _Unreadable as exc:
                if len(self._unreadable) >= _UNREADABLE_MAX:
                    self._unreadable.clear()
                self._unreadable[identity] = exc.reason
                log.info("no metadata for the sdist %s: %s", sdist.filename, exc.reason)
                return SdistInput(sdist.filename, None)
            except WheelmeldError as exc:
                log.info("no metadata for the sdist %s: %s", sdist.filename, exc.reason)
                return SdistInput(sdist.filename, None)
            if self._usable(data):
                # What cannot take part is never kept: the engine says why, and a later try reads again.
                try:
                    await asyncio.to_thread(self._store.write_atomic, path, data)
                except CacheWriteError as exc:  # a full or read-only disk: served, uncached
                    not_cached(self._metrics, "metadata", sdist.filename, exc)
        return SdistInput(sdist.filename, data)

    def _usable(self, data: bytes) -> bool:
        limits = self._limits
        return isinstance(read_metadata(data, limits.max_metadata_bytes, limits.max_requirements), Read)

    async def _fetch(self, key: PageKey, sdist: DistFile, upstream: Upstream) -> bytes:
        local = self._store.file_path(key, sdist.filename)
        if local.exists():
            data = await asyncio.to_thread(read_local_pkg_info, local, sdist.filename)
            if data is not None:
                return data
        if self._offline:
            raise OfflineMiss(f"offline, and the cache holds no metadata for {sdist.filename}")
        async with upstream.sibling_gate:
            if sdist.core_metadata:
                data = await upstream.fetch_small(sdist.url + ".metadata")
                self._metrics.upstream_request("metadata")
                if data is not None:
                    advertised = sdist.core_metadata
                    expected = advertised.get("sha256") if isinstance(advertised, dict) else None
                    if expected and hashlib.sha256(data).hexdigest() != expected.lower():
                        raise UpstreamError(
                            f"upstream metadata of {sdist.filename} does not match its sha256"
                        )
                    return data
            try:
                with upstream_time():
                    async with upstream.deadline(sdist.url):  # the whole read, not each chunk
                        fetched = await fetch_sdist_metadata(upstream.client, sdist.url, sdist.filename)
            except NoPkgInfo as exc:
                raise _Unreadable(f"cannot read PKG-INFO of {sdist.filename}: {exc}") from exc
            except RemoteZipError as exc:
                raise UpstreamError(f"cannot read PKG-INFO of {sdist.filename}: {exc}") from exc
        self._metrics.upstream_request("sdist", count=fetched.requests, nbytes=fetched.bytes_received)
        return fetched.metadata
