"""The ``.metadata`` we serve: each file's original core metadata, and each release's meld.

Original metadata comes cheapest first (docs/meld-contract.md): the local file when the cache has the wheel,
upstream's PEP 658 file when advertised (or, while probing pays off, even when not: PyPI as reachable
here has the files but does not say so), else ``METADATA`` read out of the remote wheel with range
requests, else a full download (the remote-zip reader falls back by itself). It is immutable: fetched
once, ever, and kept on disk.

A release's meld is keyed by its exact sibling set and its sdist (file names and what identifies
their bytes), so a new wheel or a re-uploaded sdist upstream makes a new meld while old answers stay
consistent with old pages. The sdist's metadata (``sdists``) is read only for releases whose wheels
disagree: it decides the environments no wheel covers, and agreeing wheels leave nothing to decide.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from proxy.cache.errors import CacheWriteError
from proxy.cache.shared import SharedTier
from proxy.cache.store import CacheStore, PageKey
from proxy.errors import NotFound, OfflineMiss, WheelmeldError
from proxy.index.filenames import FileKind, parse_file_name
from proxy.index.model import DistFile
from proxy.index.releases import Release, release_of
from proxy.meld import MeldLimits, MeldReport, MeldResult, WheelInput, meld_release
from proxy.meld.reading import Read, read_metadata
from proxy.network.metadata_fetch import Fetched, MetadataFetcher
from proxy.network.upstream import Upstream
from proxy.network.zip_format import read_local_metadata
from proxy.observe import MeldLog, Metrics, not_cached
from proxy.service.background import background_slot, running_ahead
from proxy.service.flights import Flights
from proxy.service.meld_records import MeldRecord, load_meld, meld_bytes, stored_melds
from proxy.service.meld_state import LeftOut, MeldKind, MeldState
from proxy.service.sdists import SdistMetadata
from proxy.service.sibling_reads import read_siblings
from proxy.service.uploads import Pending, Uploads

__all__ = ["MetadataService", "ServedMetadata"]


@dataclass(frozen=True, slots=True)
class ServedMetadata:
    body: bytes
    sha256: str
    meld: MeldState
    conflicts: tuple[str, ...] = ()
    # The meld changed this wheel's metadata, so what is served depends on the client (``own``).
    varies_by_client: bool = False


class MetadataService:
    def __init__(
        self,
        store: CacheStore,
        metrics: Metrics,
        meld_log: MeldLog,
        *,
        offline: bool,
        limits: MeldLimits | None = None,
        incomplete_retry: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        shared: SharedTier | None = None,
    ) -> None:
        self._store = store
        self._shared = shared  # the fleet's bucket: looked in before upstream, written after a commit
        self._uploads = Uploads(shared, leased=store.leases is not None)
        self._metrics = metrics
        self._meld_log = meld_log
        self._offline = offline
        self._limits = limits or MeldLimits()
        # An incomplete meld is never cached (contract item 7), but uv asks for every wheel of a
        # release: without this, each request would redo the meld under its lock. It is kept in
        # memory only, for ``incomplete_retry`` seconds (0: not at all), then tried again, since what
        # kept a sibling out may pass (a read that failed, a limit raised by a restart elsewhere).
        self._incomplete: dict[tuple[PageKey, str], tuple[MeldRecord, float]] = {}
        self._incomplete_retry = incomplete_retry
        self._clock = clock
        self._fetcher = MetadataFetcher(metrics, clock)
        self._melds: dict[tuple[PageKey, str], MeldRecord] = {}
        # Melds being made: the tasks of this process asking for one join it rather than its lock,
        # which stays held until the meld's upload to the fleet's bucket is done.
        self._making: Flights[tuple[PageKey, str], MeldRecord] = Flights()
        # sha256 of original metadata this process has read: pages advertise it for unmelded wheels.
        self._original_hashes: dict[tuple[PageKey, str], str] = {}
        # Per page, bumped whenever an advertised hash becomes known there: that page re-renders,
        # no other does (a process-wide counter made every meld re-render every 5 MB page).
        self._revisions: Counter[PageKey] = Counter()
        # (page, file name or release key) that only running ahead has learned: kept and used, but
        # not advertised until a client asks for it, so a page is the same bytes either way.
        self._unasked: set[tuple[PageKey, str]] = set()
        self._sdists = SdistMetadata(store, metrics, offline=offline, limits=self._limits)
        # Told the first sibling metadata a meld fetched (``proxy.service.ahead``); it must not raise.
        self.on_first_metadata: Callable[[PageKey, Release, bytes, Upstream], None] | None = None

    def revision(self, key: PageKey) -> int:
        return self._revisions.get(key, 0)  # .get: no Counter.__missing__ call per warm request

    def _remember(self, key: PageKey, filename: str, data: bytes) -> bytes:
        if (key, filename) not in self._original_hashes:
            self._original_hashes[(key, filename)] = hashlib.sha256(data).hexdigest()
            self._learned(key, filename)
        elif self._unasked:
            self._advertise(key, (filename,))
        return data

    def _learned(self, key: PageKey, name: str) -> None:
        """``name`` (a file's original metadata, a release key's meld) became known on ``key``'s page:
        it re-renders, unless only running ahead knows it yet (``_advertise``)."""
        if running_ahead():
            self._unasked.add((key, name))
        else:
            self._revisions[key] += 1

    def _advertise(self, key: PageKey, names: Iterable[str]) -> None:
        """A client asks for ``names``: what running ahead learned of them is advertised from now on,
        as it would be had the client's own request learned it (pages never differ by it)."""
        if running_ahead() or not self._unasked:
            return
        found = [(key, name) for name in names if (key, name) in self._unasked]
        if found:
            self._unasked.difference_update(found)
            self._revisions[key] += 1

    # -- original metadata of one file ------------------------------------------------------------
    async def original(self, key: PageKey, dist: DistFile, upstream: Upstream) -> bytes:
        """``dist``'s own core metadata, from the cache or fetched once and kept forever.

        For one file a client asked for; a meld reads its siblings itself (``_meld``).
        """
        path = self._store.metadata_path(key, dist.filename)
        cached = _as_advertised(dist, await asyncio.to_thread(self._store.read, path))
        if cached is not None:
            return self._remember(key, dist.filename, cached)
        async with contextlib.AsyncExitStack() as held:
            await held.enter_async_context(self._store.lock("meta:" + str(path), fleet=True))
            cached = _as_advertised(dist, await asyncio.to_thread(self._store.read, path))
            if cached is not None:
                return self._remember(key, dist.filename, cached)
            fetched, missed = await self._fetch_original(key, dist, upstream, may_probe=True, sibling=False)
            await self._keep(dist.filename, self._store.write_atomic, path, fetched.data)
            pending = Pending()
            pending.add({path: fetched.data}, seen_missing=missed)
            await self._uploads.finish(held, pending)  # the lock goes once the fleet can see it
            return self._remember(key, dist.filename, fetched.data)

    async def aclose(self) -> None:
        """At shutdown: the uploads to the fleet's bucket still under way end (``Uploads.aclose``)."""
        await self._uploads.aclose()

    async def _keep(self, what: str, write: Callable[..., None], *args: object) -> None:
        """A cache write in a thread; one the disk refuses leaves the answer served, uncached."""
        try:
            await asyncio.to_thread(write, *args)
        except CacheWriteError as exc:
            not_cached(self._metrics, "metadata", what, exc)

    async def _fetch_original(
        self, key: PageKey, dist: DistFile, upstream: Upstream, *, may_probe: bool, sibling: bool
    ) -> tuple[Fetched, bool]:
        """From the wheel the cache holds, else the fleet's bucket, else upstream
        (``MetadataFetcher.fetch``); and whether the bucket was asked and had none."""
        local = self._store.file_path(key, dist.filename)
        if local.exists():
            data = await asyncio.to_thread(read_local_metadata, local, dist.filename)
            if data is not None:
                return Fetched(data), False
        if self._shared is not None:
            shared = _as_advertised(
                dist, await self._shared.pull(self._store.metadata_path(key, dist.filename))
            )
            if shared is not None:
                return Fetched(shared), False
        if self._offline:
            raise OfflineMiss(f"offline, and the cache holds no metadata for {dist.filename}")
        # Work run ahead waits for its own few slots, and fetches like a sibling: nobody waits on it
        # yet, so it sends no range read beside an unadvertised probe (a client's own wheel does).
        sibling = sibling or running_ahead()
        async with background_slot():
            fetched = await self._fetcher.fetch(key, dist, upstream, may_probe=may_probe, sibling=sibling)
        return fetched, self._shared is not None

    # -- what we serve ----------------------------------------------------------------------------
    def advertised_hash(self, key: PageKey, release: Release, dist: DistFile, meld: bool) -> str | None:
        """The sha256 of what we would serve for ``dist`` right now, if known without any I/O."""
        if not meld or not release.needs_meld:
            advertised = dist.core_metadata
            if not isinstance(advertised, bool) and advertised.get("sha256"):
                return advertised["sha256"]
            if self._unasked and (key, dist.filename) in self._unasked:
                return None
            return self._original_hashes.get((key, dist.filename))
        record = self._melds.get((key, release.key))
        if self._unasked and (key, release.key) in self._unasked:
            record = None
        if record is None or dist.filename in record.changed:
            # A rewritten file is served as the meld to most clients but as the wheel's own to
            # those that check it against the wheel (``serve``'s ``own``), so no one hash is true of
            # it: it is advertised as present, without a hash (PEP 714's ``true``).
            return None
        return record.hashes.get(dist.filename)

    async def serve(self, key: PageKey, release: Release | None, dist: DistFile,
                    upstream: Upstream, *, own: bool = False) -> ServedMetadata:  # fmt: skip
        """``dist``'s served metadata; ``release`` is its release on the page (``release_groups``).

        ``own``: the client resolves for one environment and refuses a metadata file that differs
        from its wheel's (pip): it gets the wheel's own metadata even where the meld rewrote it, which
        is what the meld gives in that wheel's environments anyway (contract item 2)."""
        kind = parse_file_name(dist.filename).kind if release is None else FileKind.WHEEL
        if kind not in (FileKind.WHEEL, FileKind.VARIANT_WHEEL):
            raise NotFound(f"no core metadata is served for {dist.filename!r} (not a wheel)")
        if not upstream.route.meld or release is None or not release.needs_meld:
            single = release is None or len(release.wheels) <= 1
            state = (
                MeldKind.OFF if not upstream.route.meld else (MeldKind.SINGLE if single else MeldKind.AGREE)
            )
            if kind is FileKind.VARIANT_WHEEL and upstream.route.meld:
                state = MeldKind.VARIANT
            body = await self.original(key, dist, upstream)
            return ServedMetadata(body, hashlib.sha256(body).hexdigest(), MeldState(state))
        release_key = release.key
        record = self._known_meld(key, release_key) or await self._load_meld(key, release_key)
        if record is None:
            try:
                making = functools.partial(self._meld_locked, key, release, dist, upstream)
                record = await self._making.join((key, release_key), making)
            except WheelmeldError as exc:
                # Never worse than no proxy: the wheel's own metadata, said so, not cached.
                self._metrics.meld_unavailable()
                body = await self.original(key, dist, upstream)
                unavailable = MeldState(MeldKind.UNAVAILABLE, reason=exc.reason)
                return ServedMetadata(body, hashlib.sha256(body).hexdigest(), unavailable)
        self._advertise(key, itertools.chain((release_key,), (d.filename for d in release.wheels)))
        changed = record.changed.get(dist.filename)
        if changed is not None and own:
            body = await self.original(key, dist, upstream)
            own_state = MeldState(MeldKind.OWN)
            return ServedMetadata(body, hashlib.sha256(body).hexdigest(), own_state, varies_by_client=True)
        body = await self.original(key, dist, upstream) if changed is None else changed
        report = record.report
        # Some sibling could not take part (corrupt metadata, wrong name): say so, every time.
        meld = MeldState(
            MeldKind.MELDED if report.disagreed else MeldKind.AGREE, left_out=LeftOut.of(report.problems)
        )
        return ServedMetadata(
            body, record.hashes[dist.filename], meld, report.conflicts, varies_by_client=changed is not None
        )

    async def _meld_locked(
        self, key: PageKey, release: Release, dist: DistFile, upstream: Upstream
    ) -> MeldRecord:
        """The release's meld, made under its lock unless another task, worker or replica made it
        meanwhile; what it committed is uploaded to the fleet's bucket before the lock goes."""
        async with contextlib.AsyncExitStack() as held:
            await held.enter_async_context(self._store.lock(f"meld:{key.label}:{release.key}", fleet=True))
            # Under the lock the fleet's bucket too: a meld another replica just made is there.
            record = self._known_meld(key, release.key) or await self._load_meld(
                key, release.key, shared=True
            )
            if record is not None:
                return record
            pending = Pending()
            try:
                record = await self._make_meld(key, release, dist, upstream, pending)
            except WheelmeldError:
                await self._uploads.finish(held, pending)  # the siblings read for it are kept locally
                raise
            await self._uploads.finish(held, pending)
            return record

    def knows(self, key: PageKey, release: Release) -> bool:
        """Whether serving ``release`` needs no upstream request this process knows of: its meld is
        in memory, or (nothing to meld) its first wheel's metadata has been read."""
        if release.needs_meld:
            return self._known_meld(key, release.key) is not None
        return (key, release.wheels[0].filename) in self._original_hashes

    def _known_meld(self, key: PageKey, release_key: str) -> MeldRecord | None:
        """The meld this process holds for the release: complete, or incomplete and recent."""
        record = self._melds.get((key, release_key))
        if record is None:
            held = self._incomplete.get((key, release_key))
            if held is not None and held[1] > self._clock():
                record = held[0]
        return record

    def _hold_incomplete(self, key: PageKey, release_key: str, record: MeldRecord) -> None:
        if self._incomplete_retry <= 0:
            return
        now = self._clock()
        if len(self._incomplete) >= 1024:
            self._incomplete = {k: v for k, v in self._incomplete.items() if v[1] > now}
        self._incomplete[(key, release_key)] = (record, now + self._incomplete_retry)

    async def _make_meld(self, key: PageKey, group: Release, asked: DistFile,
                         upstream: Upstream, pending: Pending) -> MeldRecord:  # fmt: skip
        # The page grouped wheels by their name's head (``release_groups``); melds take only
        # names packaging reads as wheels of the asked one's release.
        release = release_of(asked.filename)
        siblings = [d for d in group.wheels if d is asked or release_of(d.filename) == release]
        # The caller holds this release's meld lock, so no other task or worker reads these files
        # for it meanwhile: the cache is read and written once per meld rather than with three
        # thread hops and a file lock per sibling (~1.6 ms of CPU each, ~600 in a cold lock).
        cached = await asyncio.to_thread(self._read_cached, key, siblings)
        fetched: dict[str, bytes] = {}

        async def one(dist: DistFile, may_probe: bool = True) -> Fetched:
            data = cached.get(dist.filename)
            if data is not None:
                return Fetched(self._remember(key, dist.filename, data))
            # Network fetches wait on a route-wide gate inside.
            # A sibling's miss in the bucket is not seen under its own lock: its upload asks again.
            got, _ = await self._fetch_original(
                key, dist, upstream, may_probe=may_probe, sibling=dist is not asked
            )
            if not fetched and self.on_first_metadata is not None:
                # The meld reads its other siblings for a while yet: what one wheel requires is
                # most of what the release requires, and running ahead may start from it now.
                self.on_first_metadata(key, group, got.data, upstream)
            fetched[dist.filename] = got.data
            self._remember(key, dist.filename, got.data)
            return got

        try:
            read = await read_siblings(self._fetcher, key, siblings, asked, upstream, one)
        except BaseException:
            # Kept when another sibling failed: what was read is immutable, and a retry needs it.
            await self._keep_siblings(asked, key, fetched, None, pending)
            raise
        # Sorted, so the served bytes never depend on which wheel a client happened to ask for first.
        inputs = sorted(
            (WheelInput(d.filename, read[d.filename]) for d in siblings), key=lambda wheel: wheel.filename
        )
        result = await self.meld_inputs(key, group, inputs, upstream)
        await self._keep_siblings(asked, key, fetched, result.report.problems, pending)
        return await self._record(key, group, siblings[0].filename, result, inputs, pending)

    async def _record(self, key: PageKey, group: Release, first: str, result: MeldResult,
                      inputs: list[WheelInput], pending: Pending) -> MeldRecord:  # fmt: skip
        """``result``'s record: cached when complete, else held in memory a while; counted, logged."""
        report, record = result.report, MeldRecord.of(result, inputs)
        if report.complete:
            path, data = self._store.meld_path(key, group.key), meld_bytes(record)
            await self._keep(f"the meld of {first}'s release", self._store.write_atomic, path, data)
            # Looked for in the bucket under this meld's lock (``_meld_locked``), and not there.
            pending.add({path: data}, seen_missing=True)
            self._melds[(key, group.key)] = record
            self._learned(key, group.key)
        else:  # some sibling's metadata is unusable (contract item 7): serve this answer, cache none of it
            self._hold_incomplete(key, group.key, record)
        self._metrics.meld_done(disagreed=report.disagreed, conflicts=len(report.conflicts))
        if report.disagreed:
            self._meld_log.add(key.label, first, report)
        return record

    async def meld_inputs(
        self, key: PageKey, group: Release, inputs: list[WheelInput], upstream: Upstream
    ) -> MeldResult:
        """``group``'s meld of ``inputs``, the sdist's metadata read only when the wheels disagree
        (agreeing siblings cost no sdist fetch: they leave no environment to decide)."""
        meld = functools.partial(meld_release, inputs, limits=self._limits)
        if not isinstance(group.sdist, DistFile):
            return await asyncio.to_thread(meld, group.sdist)
        # Whether the wheels disagree first, without melding: only then is the sdist worth a fetch,
        # and only the meld with it is kept.
        result: MeldResult = await asyncio.to_thread(meld, None, meld_if_disagreed=False)
        if result.report.disagreed:
            async with background_slot():
                sdist = await self._sdists.input(key, group.sdist, upstream)
            result = await asyncio.to_thread(meld, sdist)
        return result

    async def _keep_siblings(self, asked: DistFile, key: PageKey, fetched: Mapping[str, bytes],
                             left_out: Mapping[str, str] | None, pending: Pending) -> None:  # fmt: skip
        """The siblings' fetched original metadata into the cache, and into ``pending`` for the
        fleet's bucket."""
        if not fetched:
            return
        kept = await asyncio.to_thread(self._keepable, key, fetched, left_out)
        if kept:
            await self._keep(f"metadata of {asked.filename}'s siblings", self._store.write_many, kept.items())
            pending.add(kept)

    def _keepable(
        self, key: PageKey, fetched: Mapping[str, bytes], left_out: Mapping[str, str] | None
    ) -> dict[Path, bytes]:
        """Of the siblings' fetched original metadata, what the cache may keep (blocking: CPU),
        never what could not take part in the meld: a corrupt file cached would be served and melded
        as it is for good. ``left_out``: the meld's problems; None when no meld ran (each is read)."""
        limits = self._limits
        return {
            self._store.metadata_path(key, name): data
            for name, data in fetched.items()
            if (
                name not in left_out
                if left_out is not None
                else isinstance(read_metadata(data, limits.max_metadata_bytes, limits.max_requirements), Read)
            )
        }

    def _read_cached(self, key: PageKey, wheels: Sequence[DistFile]) -> dict[str, bytes]:
        """The original metadata the cache holds for ``wheels`` (blocking: run it in a thread)."""
        found = {}
        for dist in wheels:
            data = _as_advertised(dist, self._store.read(self._store.metadata_path(key, dist.filename)))
            if data is not None:
                found[dist.filename] = data
        return found

    async def _load_meld(self, key: PageKey, release_key: str, *, shared: bool = False) -> MeldRecord | None:
        path = self._store.meld_path(key, release_key)
        local = raw = await asyncio.to_thread(self._store.read, path)
        if local is None and shared and self._shared is not None:
            raw = await self._shared.pull(path)
        record = None if raw is None else load_meld(raw)
        if record is not None and local is None:  # pulled from the bucket: kept on this disk too
            await self._keep("a meld from the shared cache", self._store.write_atomic, path, raw)
        if record is not None:
            self._melds[(key, release_key)] = record
            self._learned(key, release_key)
        return record

    def stored_melds(self, key: PageKey) -> list[tuple[tuple[str, ...], MeldReport]]:
        """Every meld the cache holds for ``key``'s page, newest first (blocking: ``stored_melds``)."""
        return stored_melds(self._store, key)


def _as_advertised(dist: DistFile, cached: bytes | None) -> bytes | None:
    """Cached original metadata, or None when the page now advertises another sha256 for it: the
    cache knows files by name, and a wheel re-uploaded under its name has other metadata."""
    advertised = dist.core_metadata
    expected = advertised.get("sha256") if isinstance(advertised, dict) else None
    if cached is None or not expected or hashlib.sha256(cached).hexdigest() == expected.lower():
        return cached
    return None
