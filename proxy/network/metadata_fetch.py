"""A wheel's core metadata from upstream: its PEP 658 file, else ``METADATA`` out of the remote zip.

One fetcher per worker learns as it goes and keeps what it learned: per project and route, whether
probing for PEP 658 files nobody advertised pays off (``ProbeBook``: a project whose probes all
answered is probed without a range read raced beside; a route whose probes keep missing, as on the
PyTorch index, pauses them and tries again later); per page and platform, where the last wheel
read with ranges kept ``METADATA`` (siblings are laid out alike, so each read is then one request,
not two or three); and which pages took more than one request per read without a layout. Each
fetch returns what it found out about its own file (``Fetched.probe``), so a meld knows whether the
rest of a release has PEP 658 files.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from proxy.cache.store import PageKey
from proxy.errors import UpstreamError
from proxy.index.model import DistFile
from proxy.meld.environments import platform_facts
from proxy.network.probe_book import ProbeBook, ProbePlan
from proxy.network.remote_zip import RemoteZipError, ZipLayout, fetch_wheel_metadata
from proxy.network.upstream import Upstream
from proxy.observe import Metrics, upstream_time

__all__ = ["Fetched", "MetadataFetcher", "layout_family"]


@dataclass(frozen=True, slots=True)
class Fetched:
    data: bytes
    # The unadvertised PEP 658 probe sent for this file: True found, False 404, None none was sent.
    probe: bool | None = None


@functools.lru_cache(maxsize=4096)
def layout_family(filename: str) -> str:
    """Wheels whose zips one tool most likely wrote: each platform's builds pass through their own
    repair tool (auditwheel, delocate, delvewheel), and numpy's Linux wheels keep METADATA at the
    end where its macOS and Windows wheels keep it at the start."""
    try:
        tags = parse_wheel_filename(filename)[3]
    except InvalidWheelFilename:
        return ""
    return min(str(platform_facts(tag.platform).sys_platform) for tag in tags)


class MetadataFetcher:
    def __init__(self, metrics: Metrics, clock: Callable[[], float] = time.monotonic) -> None:
        self._metrics = metrics
        self._probes = ProbeBook(clock)
        self._layouts: dict[tuple[PageKey, str], ZipLayout] = {}  # by page and layout family
        # Pages where a read without a layout took more than one request: there, a platform's first
        # wheel is worth reading ahead of the others (small wheels, or METADATA just before a small
        # directory, read in one request anyway; waiting for a teacher would only add a round trip).
        self._costly: set[PageKey] = set()

    def probing(self, key: PageKey, upstream: Upstream) -> bool:
        """Whether unadvertised PEP 658 files of this project are worth asking for on this route."""
        return self._probes.plan(upstream.route.prefix, key) is not ProbePlan.SKIP

    def probes_doubted(self, upstream: Upstream) -> bool:
        """Whether this route has missed PEP 658 probes and never answered one."""
        return self._probes.doubted(upstream.route.prefix)

    def costly(self, key: PageKey) -> bool:
        """Whether a read without a known layout took more than one request on this page."""
        return key in self._costly

    def knows_layout(self, key: PageKey, dist: DistFile) -> bool:
        return (key, layout_family(dist.filename)) in self._layouts

    async def fetch(
        self, key: PageKey, dist: DistFile, upstream: Upstream, *, may_probe: bool, sibling: bool
    ) -> Fetched:
        """``dist``'s metadata from upstream. ``sibling``: fetched for a meld rather than asked for by
        a client; such fetches queue behind the route's sibling gate, so a client's own wheel never
        waits behind a large meld."""
        async with upstream.sibling_gate if sibling else upstream.direct_gate:
            return await self._fetch(key, dist, upstream, may_probe, sibling)

    async def _fetch(
        self, key: PageKey, dist: DistFile, upstream: Upstream, may_probe: bool, sibling: bool
    ) -> Fetched:
        """PEP 658 file when advertised (or while probing pays off), else the remote-zip reader."""
        advertised = dist.core_metadata
        plan = ProbePlan.EXPECT if advertised else self._probes.plan(upstream.route.prefix, key)
        if plan is ProbePlan.SKIP or not (advertised or may_probe):
            return Fetched(await self._read_ranges(key, dist, upstream))
        ranged: asyncio.Task[bytes] | None = None
        if plan is ProbePlan.TRY and not sibling:
            # A client waits on this one and nothing says whether the probe pays: read the zip while
            # it is out, so a 404 (slow here: ~160 ms) costs no round trip; a hit costs one cancelled
            # range read.
            ranged = asyncio.ensure_future(self._read_ranges(key, dist, upstream))
            ranged.add_done_callback(_retrieve)
        try:
            data = await upstream.fetch_small(dist.url + ".metadata")
        except BaseException:
            if ranged is not None:
                ranged.cancel()
            raise
        self._metrics.upstream_request("metadata", nbytes=len(data or b""))
        found: bool | None = None
        if not advertised:
            found = data is not None
            self._probes.record(upstream.route.prefix, key, found=found)
            self._metrics.probe(found=found)
        if data is None:
            return Fetched(await (ranged or self._read_ranges(key, dist, upstream)), found)
        if ranged is not None:
            ranged.cancel()
        expected = advertised.get("sha256") if isinstance(advertised, dict) else None
        if expected and hashlib.sha256(data).hexdigest() != expected.lower():
            raise UpstreamError(f"upstream metadata of {dist.filename} does not match its sha256")
        return Fetched(data, found)

    async def _read_ranges(self, key: PageKey, dist: DistFile, upstream: Upstream) -> bytes:
        """``METADATA`` out of the remote wheel, starting from where its siblings kept theirs."""
        layout_key = (key, layout_family(dist.filename))
        layout = self._layouts.get(layout_key)
        try:
            # errors(): a hop the policy refuses is a BlockedFetch (counted), as for any other fetch.
            with upstream.errors(dist.url), upstream_time():
                async with upstream.deadline(dist.url):  # all the range reads together, not each
                    fetched = await fetch_wheel_metadata(
                        upstream.reads, dist.url, dist.filename, layout=layout
                    )
        except RemoteZipError as exc:
            raise UpstreamError(f"cannot read metadata of {dist.filename}: {exc}") from exc
        self._metrics.upstream_request("range", count=fetched.requests, nbytes=fetched.bytes_received)
        if layout is None and fetched.requests > 1:
            self._costly.add(key)
        if fetched.layout is not None:
            self._layouts[layout_key] = fetched.layout
        return fetched.metadata


def _retrieve(task: asyncio.Task[bytes]) -> None:
    """Mark a side task's failure as seen: when the probe won, nobody awaits the range read."""
    if not task.cancelled():
        task.exception()
