"""The housekeeping of the fleet's bucket (backend s3): what ``wheelmeld cache stats|prune|verify``
and ``bundle export|import`` do there, beside what they do on the local disk.

The bucket holds the layout of ``proxy.cache.shared`` (each object's key is its path below the cache
root, with ``<key>.sha256`` beside it as its commit mark), so its entries classify as the local
disk's do (``inventory.classify``), every sidecar as a ``hash``.

- ``entries``: every object, as ``inventory.Entry`` values (``last_used`` is its upload time: a
  bucket keeps no access time), for ``summarize``.
- ``prune``: distribution files only, as on disk: older than ``max_age`` first, then the oldest
  until the rest fit in ``max_size``; the sidecar goes first (without it the object is not
  committed: no replica serves or redirects to it), then the object. Multipart uploads started
  longer ago than ``stale_uploads`` (a replica killed mid-upload) are aborted.
- ``verify``: every committed object re-hashed against its sidecar; a bad one is removed (sidecar
  first) unless told to keep it; an object without a sidecar is uncommitted, counted.
- ``hydrate`` / ``publish_all``: committed objects below some cache folders into the local disk
  (verified), and local immutable objects into the bucket: a bundle is written from, and imported
  into, the local disk, and these carry it across.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath

from proxy.cache.errors import CacheWriteError
from proxy.cache.inventory import Entry, Kind, classify
from proxy.cache.object_store import ObjectInfo, ObjectMissing, ObjectStoreError
from proxy.cache.shared import SharedKind, SharedTier
from proxy.cache.store import CacheStore
from proxy.cache.verify import BadFile, Progress, VerifyReport

__all__ = ["PruneReport", "entries", "hydrate", "prune", "publish_all", "verify"]

_LAYOUT = "v1"


@dataclass(frozen=True, slots=True)
class PruneReport:
    removed: tuple[str, ...]  # keys of the files removed
    freed: int
    remaining: int  # bytes of files left in the bucket
    aborted_uploads: int


def _kind(relative: PurePosixPath) -> Kind:
    return "hash" if relative.name.endswith(".sha256") else classify(relative)


def _entry(info: ObjectInfo) -> Entry | None:
    parts = PurePosixPath(info.key).parts
    if len(parts) < 3 or parts[0] != _LAYOUT:
        return None  # not of this layout: never counted, never pruned
    relative = PurePosixPath(*parts[2:])
    return Entry(Path(info.key), parts[1], _kind(relative), info.size, info.last_modified.timestamp())


async def entries(tier: SharedTier) -> list[Entry]:
    """Every object of the layout in the bucket (``Entry.path`` is its key)."""
    return [e for info in [i async for i in tier.objects.list(_LAYOUT)] if (e := _entry(info)) is not None]


async def _remove(tier: SharedTier, key: str) -> None:
    await tier.objects.delete(key + ".sha256")  # first: without its mark the object is not served
    await tier.objects.delete(key)


async def prune(
    tier: SharedTier,
    *,
    max_size: int | None,
    max_age: timedelta | None,
    stale_uploads: timedelta,
    now: datetime | None = None,
) -> PruneReport:
    """Remove distribution files by age, then by size (oldest first); abort stale uploads."""
    now = now or datetime.now(UTC)
    files = sorted(
        (e for e in await entries(tier) if e.kind == "file"), key=lambda e: (e.last_used, str(e.path))
    )
    total = sum(f.size for f in files)
    removed: list[str] = []
    freed = 0
    for entry in files:
        too_old = max_age is not None and now.timestamp() - entry.last_used > max_age.total_seconds()
        too_big = max_size is not None and total - freed > max_size
        if not (too_old or too_big):
            continue
        await _remove(tier, entry.path.as_posix())
        removed.append(entry.path.as_posix())
        freed += entry.size
    aborted = await tier.objects.abort_uploads(older_than=now - stale_uploads)
    return PruneReport(tuple(removed), freed, total - freed, aborted)


async def _sha256(tier: SharedTier, key: str) -> str:
    digest = hashlib.sha256()
    async for chunk in tier.objects.stream(key):
        digest.update(chunk)
    return digest.hexdigest()


async def verify(
    tier: SharedTier, *, drop: bool = True, progress: Progress | None = None
) -> tuple[VerifyReport, int]:
    """Every committed object against its sidecar; (the report, objects without a sidecar)."""
    found = await entries(tier)
    keys = {e.path.as_posix() for e in found}
    committed = [e for e in found if e.kind != "hash" and e.path.as_posix() + ".sha256" in keys]
    uncommitted = sum(1 for e in found if e.kind != "hash" and e.path.as_posix() + ".sha256" not in keys)
    orphans = [e for e in found if e.kind == "hash" and e.path.as_posix().removesuffix(".sha256") not in keys]
    total_bytes = sum(e.size for e in committed)
    bad: list[BadFile] = []
    done_bytes = 0
    for number, entry in enumerate(committed, 1):
        key = entry.path.as_posix()
        try:
            recorded = (await tier.objects.get(key + ".sha256")).decode().strip().lower()
            actual = await _sha256(tier, key)
        except ObjectMissing:
            continue  # pruned while we walked
        if actual != recorded:
            bad.append(BadFile(entry.path, f"sha256 {actual} does not match its recorded {recorded}"))
            if drop:
                await _remove(tier, key)
        done_bytes += entry.size
        if progress is not None:
            progress(number, len(committed), done_bytes, total_bytes)
    if drop:
        for entry in orphans:
            await tier.objects.delete(entry.path.as_posix())
    return VerifyReport(len(committed), total_bytes, tuple(bad), drop, len(orphans)), uncommitted


async def hydrate(tier: SharedTier, store: CacheStore, folders: Iterable[Path]) -> int:
    """Committed objects below ``folders`` (of the local cache) the local disk lacks, pulled verified
    into it; the number pulled. Files are streamed to a temp file, never held whole in memory."""
    pulled = 0
    for folder in folders:
        prefix = tier.key(folder)
        keys = {info.key async for info in tier.objects.list(prefix)}
        for key in sorted(k for k in keys if k + ".sha256" in keys):
            path = store.root / key
            if path.exists():
                continue
            # ValueError: an object of no kind the cache keeps (put there by hand): not pulled.
            with contextlib.suppress(ObjectStoreError, CacheWriteError, ValueError):
                pulled += await _pull_one(tier, store, path)
    return pulled


async def _pull_one(tier: SharedTier, store: CacheStore, path: Path) -> bool:
    """One committed object into the local disk, verified; ``False`` if the bucket no longer has it."""
    if SharedTier.kind(path) is not SharedKind.FILE:
        data = await tier.pull(path)
        if data is not None:
            await asyncio.to_thread(store.write_atomic, path, data)
        return data is not None
    found = await tier.open_file(path)
    if found is None:
        return False
    with store.open_temp() as (tmp_path, fh):
        async for chunk in found.chunks:  # raises BodyMismatch before the end for wrong bytes
            await asyncio.to_thread(store.append, fh, chunk)
        await asyncio.to_thread(store.sync, fh)
        await asyncio.to_thread(store.write_atomic, store.hash_path(path), found.sha256.encode())
        await asyncio.to_thread(store.commit, tmp_path, path)
    return True


async def publish_all(tier: SharedTier, store: CacheStore, paths: Iterable[Path]) -> int:
    """The immutable objects among ``paths`` (of the local cache) into the bucket; how many."""
    published = 0
    for path in paths:
        try:
            kind = SharedTier.kind(path)
        except ValueError:
            continue  # a page, a list, a hash: per replica, or carried with its file
        if kind is SharedKind.FILE:
            await tier.publish_file(path, store.hash_path(path))
        else:
            data = await asyncio.to_thread(store.read, path)
            if data is not None:
                await tier.publish(path, data)
        published += 1
    return published
