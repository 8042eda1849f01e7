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
import base64
import functools
import hashlib
import json
import time
import zipfile
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from proxy.cache.errors import CacheWriteError
from proxy.cache.store import CacheStore, ProjectKey
from proxy.errors import NotFound, OfflineMiss, UpstreamError, WheelmeldError
from proxy.index.filenames import FileKind, parse_file_name, wheel_identity
from proxy.index.model import DistFile
from proxy.meld import NO_SDIST, MeldLimits, MeldResult, NoSdist, WheelInput, meld_release
from proxy.meld.environments import platform_facts
from proxy.meld.reading import Read, read_metadata
from proxy.network.remote_zip import METADATA_SIZE_CAP, RemoteZipError, ZipLayout, fetch_wheel_metadata
from proxy.server.observability import MeldLog, Metrics, not_cached, upstream_time
from proxy.server.sdists import SdistMetadata
from proxy.server.upstream import Upstream

__all__ = [
    "MetadataService",
    "Release",
    "ServedMetadata",
    "release_groups",
    "siblings_agree_by_hash",
]

# After this many PEP 658 probes that all missed on one route, stop probing it (the PyTorch index).
_PROBE_GIVE_UP = 8


@dataclass(frozen=True, slots=True)
class ServedMetadata:
    body: bytes
    sha256: str
    meld_state: str  # "agree", "melded", "single", "off", "unavailable: <reason>"
    conflicts: tuple[str, ...] = ()
    # The meld changed this wheel's metadata, so what is served depends on the client (``own``).
    varies_by_client: bool = False


@dataclass(slots=True)
class _ProbeStats:
    hits: int = 0
    misses: int = 0

    @property
    def worth_it(self) -> bool:
        return self.hits > 0 or self.misses < _PROBE_GIVE_UP


@dataclass(slots=True)
class _MeldRecord:
    hashes: dict[str, str]  # filename -> sha256 of what we serve
    changed: dict[str, bytes]  # filename -> melded bytes, only where they differ from the original
    report: dict[str, object] = field(default_factory=dict)


def _release_of(filename: str) -> tuple[str, Version] | None:
    try:
        name, version, _build, _tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return None
    return canonicalize_name(name), version


@dataclass(frozen=True, slots=True)
class Release:
    """The wheels of one release on one page, and what serving asks of them, computed once.

    A page of the PyTorch index holds up to 20,000 files in releases of a hundred wheels: asking
    these per wheel and per render (as the code once did) cost 270 ms per re-render of one page.
    """

    wheels: tuple[DistFile, ...]
    key: str  # identity of the sibling set and the sdist (``_release_key``): a meld is cached under it
    agree_by_hash: bool  # upstream's own hashes say every sibling's metadata is the same bytes
    # The release's sdist on the page; NO_SDIST: the page lists none; None: it may, in a form
    # ``packaging`` does not read (a legacy archive), so nobody knows.
    sdist: DistFile | NoSdist | None = NO_SDIST

    @classmethod
    def of(cls, wheels: tuple[DistFile, ...], sdist: DistFile | NoSdist | None = NO_SDIST) -> Release:
        return cls(wheels, _release_key(wheels, sdist), siblings_agree_by_hash(wheels), sdist)

    @property
    def needs_meld(self) -> bool:
        return len(self.wheels) > 1 and not self.agree_by_hash


def _wheel_head(filename: str) -> str:
    """``name-version-`` of a wheel file name: a memo key for its release, never the answer."""
    return filename[: filename.find("-", filename.find("-") + 1) + 1]


def release_groups(files: Sequence[DistFile]) -> dict[str, Release]:
    """Each wheel's file name -> its release on this page (local label included), in one pass.

    A wheel name escapes ``-`` inside the project name, so wheels sharing a ``name-version-`` head
    are of one release and ``packaging`` parses only the first of them: parsing all 15,000 names of
    a big page cost 230 ms, a third of its cold serving. A name sharing a valid head but otherwise
    malformed joins the group here; a meld drops it before it fetches anything.
    """
    groups: dict[tuple[str, Version], list[DistFile]] = {}
    by_head: dict[str, tuple[str, Version]] = {}
    for dist in files:
        if dist.filename.endswith(".whl"):
            if dist.filename.count("-") > 4 and _is_variant(dist.filename):
                continue  # in no release: see ``_is_variant``
            head = _wheel_head(dist.filename)
            release = by_head.get(head)
            if release is None:
                release = _release_of(dist.filename)
                if release is None:
                    continue
                if head:
                    by_head[head] = release
            groups.setdefault(release, []).append(dist)
    sdists, unknown_sources = _sdists_of(files)
    by_name: dict[str, Release] = {}
    for identity, group in groups.items():
        sdist = sdists.get(identity) or (None if unknown_sources else NO_SDIST)
        found = Release.of(tuple(group), sdist)
        by_name.update(dict.fromkeys((d.filename for d in group), found))
    return by_name


def _sdists_of(files: Sequence[DistFile]) -> tuple[dict[tuple[str, Version], DistFile], bool]:
    """Each release's sdist on the page, and whether the page holds files ``packaging`` cannot
    read (a legacy ``.tar.bz2`` may be a release's sdist: then no release is known to have none)."""
    sdists: dict[tuple[str, Version], DistFile] = {}
    unknown_sources = False
    for dist in files:
        if dist.filename.endswith(".whl"):
            continue
        parsed = parse_file_name(dist.filename)
        if parsed.kind is FileKind.SDIST:
            assert parsed.name is not None and parsed.version is not None
            # Where a release has both, installers take the .tar.gz (the current standard's).
            if dist.filename.endswith(".tar.gz") or (parsed.name, parsed.version) not in sdists:
                sdists[(parsed.name, parsed.version)] = dist
        elif parsed.kind is FileKind.OTHER:
            unknown_sources = True
    return sdists, unknown_sources


def _is_variant(filename: str) -> bool:
    """A PEP 825 variant wheel takes no part in its release's meld: it serves its own metadata.

    Variants of one platform differ by properties (GPU, CPU level, BLAS) that no marker can tell
    apart, and an installer picks among them (or the ordinary wheels) by rules outside markers: a
    meld across them could only be a conflict on every cell (contract item 6), and grouping them
    by label would still leave the choice of label to the installer. Served as they are, they give
    what they give without the proxy, and the meld of the ordinary wheels never changes because a
    variant appeared. Only names with more than four '-' (build-tagged wheels, variants) get here.
    """
    return parse_file_name(filename).kind is FileKind.VARIANT_WHEEL


@functools.lru_cache(maxsize=4096)
def _layout_family(filename: str) -> str:
    """Wheels whose zips one tool most likely wrote: each platform's builds pass through their own
    repair tool (auditwheel, delocate, delvewheel), and numpy's Linux wheels keep METADATA at the
    end where its macOS and Windows wheels keep it at the start."""
    try:
        tags = parse_wheel_filename(filename)[3]
    except InvalidWheelFilename:
        return ""
    return min(str(platform_facts(tag.platform).sys_platform) for tag in tags)


def _layout_key(key: ProjectKey, dist: DistFile) -> tuple[ProjectKey, str]:
    return key, _layout_family(dist.filename)


def _release_key(siblings: Sequence[DistFile], sdist: DistFile | NoSdist | None) -> str:
    """Identity of a sibling set and its sdist: names plus upstream's hash (or URL when upstream
    gives none); whether the page lists no sdist or one we cannot read counts too (the meld differs)."""
    parts = sorted(f"{f.filename}\0{f.hashes.get('sha256') or f.url}" for f in siblings)
    if isinstance(sdist, DistFile):
        parts.append(f"sdist\0{sdist.filename}\0{sdist.hashes.get('sha256') or sdist.url}")
    else:
        parts.append("no sdist" if sdist is NO_SDIST else "sdist unknown")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:40]


def _read_local_metadata(path: Path, filename: str) -> bytes | None:
    """``*.dist-info/METADATA`` of a wheel the cache holds (blocking: run in a thread).

    Read under the cap remote reads have: a small wheel can hold a METADATA that inflates to
    gigabytes, and its declared size may lie, so at most one byte past the cap is ever inflated.
    """
    identity = wheel_identity(filename)
    if identity is None:
        return None
    name, version = identity
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                parts = info.filename.split("/")
                if len(parts) == 2 and parts[1] == "METADATA" and parts[0].endswith(".dist-info"):
                    dist, _, ver = parts[0][: -len(".dist-info")].partition("-")
                    if canonicalize_name(dist) == name and Version(ver) == version:
                        data = b""
                        if info.file_size <= METADATA_SIZE_CAP:
                            with zf.open(info) as member:
                                data = member.read(METADATA_SIZE_CAP + 1)
                        if info.file_size > METADATA_SIZE_CAP or len(data) > METADATA_SIZE_CAP:
                            raise UpstreamError(
                                f"METADATA of {filename} is over the {METADATA_SIZE_CAP} byte cap"
                            )
                        return data
    except (OSError, zipfile.BadZipFile, ValueError, NotImplementedError, EOFError, zlib.error):
        return None
    return None


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
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._meld_log = meld_log
        self._offline = offline
        self._limits = limits or MeldLimits()
        # An incomplete meld is never cached (contract item 7), but uv asks for every wheel of a
        # release: without this, each request would redo the meld under its lock. It is kept in
        # memory only, for ``incomplete_retry`` seconds (0: not at all), then tried again, since what
        # kept a sibling out may pass (a read that failed, a limit raised by a restart elsewhere).
        self._incomplete: dict[tuple[ProjectKey, str], tuple[_MeldRecord, float]] = {}
        self._incomplete_retry = incomplete_retry
        self._clock = clock
        self._probes: dict[str, _ProbeStats] = {}
        # Outcome of the last unadvertised PEP 658 probe per file, read by a meld that sent one
        # sibling ahead to learn whether the rest of its release has the files.
        self._probed: dict[tuple[ProjectKey, str], bool] = {}
        self._melds: dict[tuple[ProjectKey, str], _MeldRecord] = {}
        # sha256 of original metadata this process has read: pages advertise it for unmelded wheels.
        self._original_hashes: dict[tuple[ProjectKey, str], str] = {}
        # Per page, bumped whenever an advertised hash becomes known there: that page re-renders,
        # no other does (a process-wide counter made every meld re-render every 5 MB page).
        self._revisions: Counter[ProjectKey] = Counter()
        # Per page and platform, where the last wheel read with ranges kept METADATA: such
        # siblings are laid out alike, so with it each one's read is one request, not two or three.
        self._layouts: dict[tuple[ProjectKey, str], ZipLayout] = {}
        # Pages where a read without a layout took more than one request: there, a platform's first
        # wheel is read ahead of the others (small wheels, or METADATA just before a small
        # directory, read in one request anyway; waiting for a teacher would only add a round trip).
        self._costly: set[ProjectKey] = set()
        self._sdists = SdistMetadata(store, metrics, offline=offline, limits=self._limits)

    def revision(self, key: ProjectKey) -> int:
        return self._revisions.get(key, 0)  # .get: no Counter.__missing__ call per warm request

    def _remember(self, key: ProjectKey, filename: str, data: bytes) -> bytes:
        if (key, filename) not in self._original_hashes:
            self._original_hashes[(key, filename)] = hashlib.sha256(data).hexdigest()
            self._revisions[key] += 1
        return data

    # -- original metadata of one file ------------------------------------------------------------
    async def original(self, key: ProjectKey, dist: DistFile, upstream: Upstream) -> bytes:
        """``dist``'s own core metadata, from the cache or fetched once and kept forever.

        For one file a client asked for; a meld reads its siblings itself (``_meld``).
        """
        path = self._store.metadata_path(key, dist.filename)
        cached = _as_advertised(dist, await asyncio.to_thread(self._store.read, path))
        if cached is not None:
            return self._remember(key, dist.filename, cached)
        async with self._store.lock("meta:" + str(path)):
            cached = _as_advertised(dist, await asyncio.to_thread(self._store.read, path))
            if cached is not None:
                return self._remember(key, dist.filename, cached)
            data = await self._fetch_original(key, dist, upstream, may_probe=True, sibling=False)
            await self._keep(dist.filename, self._store.write_atomic, path, data)
            return self._remember(key, dist.filename, data)

    async def _keep(self, what: str, write: Callable[..., None], *args: object) -> None:
        """A cache write in a thread; one the disk refuses leaves the answer served, uncached."""
        try:
            await asyncio.to_thread(write, *args)
        except CacheWriteError as exc:
            not_cached(self._metrics, "metadata", what, exc)

    async def _fetch_original(
        self, key: ProjectKey, dist: DistFile, upstream: Upstream, *, may_probe: bool, sibling: bool
    ) -> bytes:
        """``sibling``: fetched for a meld rather than asked for by a client; such fetches queue behind
        the route's sibling gate, so a client's own wheel never waits behind a large meld."""
        local = self._store.file_path(key, dist.filename)
        if local.exists():
            data = await asyncio.to_thread(_read_local_metadata, local, dist.filename)
            if data is not None:
                return data
        if self._offline:
            raise OfflineMiss(f"offline, and the cache holds no metadata for {dist.filename}")
        async with upstream.sibling_gate if sibling else upstream.direct_gate:
            return await self._fetch_remote(key, dist, upstream, may_probe, sibling)

    async def _fetch_remote(
        self, key: ProjectKey, dist: DistFile, upstream: Upstream, may_probe: bool, sibling: bool
    ) -> bytes:
        """PEP 658 file when advertised (or while probing pays off), else the remote-zip reader."""
        advertised = dist.core_metadata
        probe = self._probes.setdefault(upstream.route.prefix, _ProbeStats())
        worth_probing = may_probe and probe.worth_it
        if not advertised and not worth_probing:
            return await self._read_ranges(key, dist, upstream)
        ranged: asyncio.Task[bytes] | None = None
        if not advertised and not sibling:
            # A client waits on this one: read the zip while the unadvertised probe is out, so a
            # 404 (slow here: ~160 ms) costs no round trip; a hit costs one cancelled range read.
            ranged = asyncio.ensure_future(self._read_ranges(key, dist, upstream))
            ranged.add_done_callback(_retrieve)
        try:
            data = await upstream.fetch_small(dist.url + ".metadata")
        except BaseException:
            if ranged is not None:
                ranged.cancel()
            raise
        self._metrics.upstream_request("metadata", nbytes=len(data or b""))
        if not advertised:
            self._probed[(key, dist.filename)] = data is not None
            if data is None:
                probe.misses += 1
            else:
                probe.hits += 1
        if data is None:
            return await (ranged or self._read_ranges(key, dist, upstream))
        if ranged is not None:
            ranged.cancel()
        expected = advertised.get("sha256") if isinstance(advertised, dict) else None
        if expected and hashlib.sha256(data).hexdigest() != expected.lower():
            raise UpstreamError(f"upstream metadata of {dist.filename} does not match its sha256")
        return data

    async def _read_ranges(self, key: ProjectKey, dist: DistFile, upstream: Upstream) -> bytes:
        """``METADATA`` out of the remote wheel, starting from where its siblings kept theirs."""
        layout_key = _layout_key(key, dist)
        layout = self._layouts.get(layout_key)
        try:
            with upstream_time():
                async with upstream.deadline(dist.url):  # all the range reads together, not each
                    fetched = await fetch_wheel_metadata(
                        upstream.client, dist.url, dist.filename, layout=layout
                    )
        except RemoteZipError as exc:
            raise UpstreamError(f"cannot read metadata of {dist.filename}: {exc}") from exc
        self._metrics.upstream_request("range", count=fetched.requests, nbytes=fetched.bytes_received)
        if layout is None and fetched.requests > 1:
            self._costly.add(key)
        if fetched.layout is not None:
            self._layouts[layout_key] = fetched.layout
        return fetched.metadata

    # -- what we serve ----------------------------------------------------------------------------
    def advertised_hash(self, key: ProjectKey, release: Release, dist: DistFile, meld: bool) -> str | None:
        """The sha256 of what we would serve for ``dist`` right now, if known without any I/O."""
        if not meld or not release.needs_meld:
            advertised = dist.core_metadata
            if not isinstance(advertised, bool) and advertised.get("sha256"):
                return advertised["sha256"]
            return self._original_hashes.get((key, dist.filename))
        record = self._melds.get((key, release.key))
        if record is None or dist.filename in record.changed:
            # A rewritten file is served as the meld to most clients but as the wheel's own to
            # those that check it against the wheel (``serve``'s ``own``), so no one hash is true of
            # it: it is advertised as present, without a hash (PEP 714's ``true``).
            return None
        return record.hashes.get(dist.filename)

    async def serve(self, key: ProjectKey, release: Release | None, dist: DistFile,
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
            state = "off" if not upstream.route.meld else ("single" if single else "agree")
            if kind is FileKind.VARIANT_WHEEL and upstream.route.meld:
                state = "variant: served as it is, in no meld (PEP 825)"
            body = await self.original(key, dist, upstream)
            return ServedMetadata(body, hashlib.sha256(body).hexdigest(), state)
        release_key = release.key
        record = self._known_meld(key, release_key) or await self._load_meld(key, release_key)
        if record is None:
            async with self._store.lock(f"meld:{key.label}:{release_key}"):
                record = self._known_meld(key, release_key) or await self._load_meld(key, release_key)
                if record is None:
                    try:
                        record = await self._meld(key, release, dist, upstream)
                    except WheelmeldError as exc:
                        # Never worse than no proxy: the wheel's own metadata, said so, not cached.
                        self._metrics.meld_unavailable()
                        body = await self.original(key, dist, upstream)
                        return ServedMetadata(
                            body, hashlib.sha256(body).hexdigest(), f"unavailable: {exc.reason}"
                        )
        changed = record.changed.get(dist.filename)
        if changed is not None and own:
            body = await self.original(key, dist, upstream)
            return ServedMetadata(
                body,
                hashlib.sha256(body).hexdigest(),
                "own (melded for other clients: this one checks .metadata against the wheel)",
                varies_by_client=True,
            )
        body = await self.original(key, dist, upstream) if changed is None else changed
        # The report is JSON read back from the cache: take its fields only in the shapes to_dict writes.
        listed = record.report.get("conflicts")
        conflicts = tuple(str(c) for c in listed) if isinstance(listed, list) else ()
        state = "melded" if record.report.get("disagreed") else "agree"
        problems = record.report.get("problems")
        if isinstance(problems, dict) and problems:
            # Some sibling could not take part (corrupt metadata, wrong name): say so, every time.
            first = next(iter(problems.items()))
            state += f"; incomplete: {len(problems)} wheel(s) left out, e.g. {first[0]}: {first[1]}"
            state = state[:400]
        return ServedMetadata(
            body, record.hashes[dist.filename], state, conflicts, varies_by_client=changed is not None
        )

    def _known_meld(self, key: ProjectKey, release_key: str) -> _MeldRecord | None:
        """The meld this process holds for the release: complete, or incomplete and recent."""
        record = self._melds.get((key, release_key))
        if record is None:
            held = self._incomplete.get((key, release_key))
            if held is not None and held[1] > self._clock():
                record = held[0]
        return record

    def _hold_incomplete(self, key: ProjectKey, release_key: str, record: _MeldRecord) -> None:
        if self._incomplete_retry <= 0:
            return
        now = self._clock()
        if len(self._incomplete) >= 1024:
            self._incomplete = {k: v for k, v in self._incomplete.items() if v[1] > now}
        self._incomplete[(key, release_key)] = (record, now + self._incomplete_retry)

    async def _meld(self, key: ProjectKey, group: Release, asked: DistFile,
                    upstream: Upstream) -> _MeldRecord:  # fmt: skip
        # The page grouped wheels by their name's head (``release_groups``); melds take only
        # names packaging reads as wheels of the asked one's release.
        release = _release_of(asked.filename)
        siblings = [d for d in group.wheels if d is asked or _release_of(d.filename) == release]
        release_key = group.key
        # The caller holds this release's meld lock, so no other task or worker reads these files
        # for it meanwhile: the cache is read and written once per meld rather than with three
        # thread hops and a file lock per sibling (~1.6 ms of CPU each, ~600 in a cold lock).
        cached = await asyncio.to_thread(self._read_cached, key, siblings)
        fetched: dict[str, bytes] = {}

        async def one(dist: DistFile, may_probe: bool = True) -> bytes:
            data = cached.get(dist.filename)
            if data is None:
                # Network fetches wait on a route-wide gate inside.
                data = await self._fetch_original(
                    key, dist, upstream, may_probe=may_probe, sibling=dist is not asked
                )
                fetched[dist.filename] = data
            return self._remember(key, dist.filename, data)

        try:
            read = await self._read_siblings(key, siblings, asked, upstream, one)
        except BaseException:
            # Kept when another sibling failed: what was read is immutable, and a retry needs it.
            await self._keep(
                f"metadata of {asked.filename}'s siblings", self._keep_siblings, key, fetched, None
            )
            raise
        # Sorted, so the served bytes never depend on which wheel a client happened to ask for first.
        inputs = sorted(
            (WheelInput(d.filename, read[d.filename]) for d in siblings), key=lambda wheel: wheel.filename
        )
        result = await self.meld_inputs(key, group, inputs, upstream)
        report = result.report.to_dict()
        await self._keep(
            f"metadata of {asked.filename}'s siblings",
            self._keep_siblings,
            key,
            fetched,
            result.report.problems,
        )
        hashes = {name: hashlib.sha256(data).hexdigest() for name, data in result.outputs.items()}
        by_name = {wheel.filename: wheel.metadata for wheel in inputs}
        changed = {n: d for n, d in result.outputs.items() if d != by_name.get(n)}
        record = _MeldRecord(hashes=hashes, changed=changed, report=report)
        if report.get("complete", True):
            await self._keep(
                f"the meld of {asked.filename}'s release", self._save_meld, key, release_key, record
            )
            self._melds[(key, release_key)] = record
            self._revisions[key] += 1
        else:  # some sibling's metadata is unusable (contract item 7): serve this answer, cache none of it
            self._hold_incomplete(key, release_key, record)
        self._metrics.meld_done(
            disagreed=bool(report.get("disagreed")), conflicts=len(result.report.conflicts)
        )
        if report.get("disagreed"):
            self._meld_log.add(key.label, siblings[0].filename, report)
        return record

    async def meld_inputs(
        self, key: ProjectKey, group: Release, inputs: list[WheelInput], upstream: Upstream
    ) -> MeldResult:
        """``group``'s meld of ``inputs``, the sdist's metadata read only when the wheels disagree
        (agreeing siblings cost no sdist fetch: they leave no environment to decide)."""
        first = NO_SDIST if group.sdist is NO_SDIST else None
        meld = functools.partial(meld_release, inputs, limits=self._limits)
        result: MeldResult = await asyncio.to_thread(meld, first)
        if isinstance(group.sdist, DistFile) and result.report.disagreed:
            sdist = await self._sdists.input(key, group.sdist, upstream)
            result = await asyncio.to_thread(meld, sdist)
        return result

    def _keep_siblings(
        self, key: ProjectKey, fetched: Mapping[str, bytes], left_out: Mapping[str, str] | None
    ) -> None:
        """Write the siblings' fetched original metadata to the cache (blocking: run it in a thread),
        never what could not take part in the meld: a corrupt file cached would be served and melded
        as it is for good. ``left_out``: the meld's problems; None when no meld ran (each is read)."""
        limits = self._limits
        paths = [
            (self._store.metadata_path(key, name), data)
            for name, data in fetched.items()
            if (
                name not in left_out
                if left_out is not None
                else isinstance(read_metadata(data, limits.max_metadata_bytes, limits.max_requirements), Read)
            )
        ]
        if paths:
            self._store.write_many(paths)

    def _read_cached(self, key: ProjectKey, wheels: Sequence[DistFile]) -> dict[str, bytes]:
        """The original metadata the cache holds for ``wheels`` (blocking: run it in a thread)."""
        found = {}
        for dist in wheels:
            data = _as_advertised(dist, self._store.read(self._store.metadata_path(key, dist.filename)))
            if data is not None:
                found[dist.filename] = data
        return found

    async def _read_siblings(
        self,
        key: ProjectKey,
        siblings: Sequence[DistFile],
        asked: DistFile,
        upstream: Upstream,
        one: Callable[..., Awaitable[bytes]],
    ) -> dict[str, bytes]:
        """Every sibling's original metadata, in the order that costs the upstream least."""
        others = [d for d in siblings if d is not asked]
        probing = self._probes.setdefault(upstream.route.prefix, _ProbeStats()).worth_it
        unadvertised = not any(d.core_metadata for d in siblings)
        if unadvertised and (
            probing or (key in self._costly and _layout_key(key, asked) not in self._layouts)
        ):
            # The asked-for wheel goes first: it tells whether this release has unadvertised PEP 658
            # files (uploads before an index's backfill often have none), so the rest send no
            # probe that would 404 one by one; read with ranges, it tells where its platform's
            # wheels keep METADATA.
            read = {asked.filename: await one(asked)}
            found = self._probed.pop((key, asked.filename), True)
            # Teachers pay off only on pages where a read without a layout took several requests.
            teach = not found and key in self._costly
            read |= await self._read_taught(key, others, lambda d: one(d, found), teach=teach)
            return read
        return dict(
            zip((d.filename for d in siblings), await asyncio.gather(*map(one, siblings)), strict=True)
        )

    async def _read_taught(
        self,
        key: ProjectKey,
        wheels: Sequence[DistFile],
        read: Callable[[DistFile], Awaitable[bytes]],
        *,
        teach: bool,
    ) -> dict[str, bytes]:
        """Every wheel's original metadata, read concurrently: with ``teach``, a platform whose zip
        layout is not known yet sends one wheel ahead, so its other wheels read in one request each
        (a cold meld of numpy: 195 range requests -> 118)."""

        async def family(group: list[DistFile]) -> list[bytes]:
            if teach and _layout_key(key, group[0]) not in self._layouts:
                head = await read(group[0])
                return [head, *await asyncio.gather(*map(read, group[1:]))]
            return list(await asyncio.gather(*map(read, group)))

        groups: dict[str, list[DistFile]] = {}
        for dist in wheels:
            groups.setdefault(_layout_family(dist.filename), []).append(dist)
        results = await asyncio.gather(*map(family, groups.values()))
        return {
            dist.filename: data
            for group, datas in zip(groups.values(), results, strict=True)
            for dist, data in zip(group, datas, strict=True)
        }

    def _save_meld(self, key: ProjectKey, release_key: str, record: _MeldRecord) -> None:
        doc = {
            "hashes": record.hashes,
            "changed": {n: base64.b64encode(b).decode() for n, b in record.changed.items()},
            "report": record.report,
        }
        self._store.write_atomic(self._store.meld_path(key, release_key), json.dumps(doc).encode())

    async def _load_meld(self, key: ProjectKey, release_key: str) -> _MeldRecord | None:
        raw = await asyncio.to_thread(self._store.read, self._store.meld_path(key, release_key))
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
            record = _MeldRecord(
                hashes=dict(doc["hashes"]),
                changed={n: base64.b64decode(b) for n, b in doc["changed"].items()},
                report=dict(doc["report"]),
            )
        except (ValueError, KeyError, TypeError):
            return None
        self._melds[(key, release_key)] = record
        self._revisions[key] += 1
        return record

    def stored_melds(self, key: ProjectKey) -> list[tuple[tuple[str, ...], dict[str, object]]]:
        """Every meld the cache holds for ``key``'s page, newest first: (its wheels, its report).

        Read-only, for the status page's per-release view; blocking (run it in a thread).
        """
        directory = self._store.meld_path(key, "x").parent
        try:
            paths = sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        except OSError:
            return []
        found = []
        for path in paths:
            try:
                doc = json.loads(path.read_bytes())
                found.append((tuple(sorted(doc["hashes"])), dict(doc["report"])))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a record being replaced or unreadable: the status page skips it
        return found


def _as_advertised(dist: DistFile, cached: bytes | None) -> bytes | None:
    """Cached original metadata, or None when the page now advertises another sha256 for it: the
    cache knows files by name, and a wheel re-uploaded under its name has other metadata."""
    advertised = dist.core_metadata
    expected = advertised.get("sha256") if isinstance(advertised, dict) else None
    if cached is None or not expected or hashlib.sha256(cached).hexdigest() == expected.lower():
        return cached
    return None


def _retrieve(task: asyncio.Task[bytes]) -> None:
    """Mark a side task's failure as seen: when the probe won, nobody awaits the range read."""
    if not task.cancelled():
        task.exception()


def siblings_agree_by_hash(siblings: Sequence[DistFile]) -> bool:
    """Upstream's own hashes say every sibling's metadata is the same bytes: nothing to meld."""
    hashes = set()
    for dist in siblings:
        advertised = dist.core_metadata
        digest = advertised.get("sha256") if isinstance(advertised, dict) else None
        if not digest:
            return False
        hashes.add(digest.lower())
    return len(hashes) == 1
