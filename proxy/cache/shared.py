"""The fleet's shared tier: one bucket holds the immutable objects, each replica's disk caches it.

With ``[cache] backend = "s3"`` the bucket is the durable, shared home of everything that never
changes under its name: distribution files (with their sha256), original core metadata and melds.
Each replica's ``CacheStore`` stays what it is with the local backend, a read-through and
write-through working cache in front of the bucket (as Artifactory's cache-fs sits over S3):

- **read-through**: after a local miss, *under the object's ``CacheStore.lock``*, the service
  looks here before it goes upstream (``pull``, ``open_file``); what it finds is verified and kept
  on the local disk the way an upstream answer is. Checking only after the lock is taken is what
  lets a replica that waited on another's fetch serve the object that one committed.
- **write-through**: after every local commit, still under the lock, the object is uploaded whole
  (``publish``, ``publish_file``), so the lock is released only once the fleet can see it. The
  client's answer does not wait for that: the upload finishes in a task that holds the lock
  (``proxy.service.uploads``; a file's download is such a task already).

Why not the bucket alone (no local disk): the serving paths (sendfile, Range, eviction by atime,
pages re-rendered from ``page.json``) stay the ones the local backend has and tests; a warm replica
answers without a round trip to the bucket; and a bucket that is down degrades a replica to
today's single-node proxy instead of taking it down (every bucket error here is logged, counted
and treated as a miss; nothing a client asked for fails because the bucket did).

Pages (``page.json``, project lists, ``revalidated/``) stay per replica: they are short-lived and
revalidated upstream with their validators, so sharing them would need freshness coordination
(that is the leases' part, ``fleet-lease``), while each replica fetching its own costs one
conditional request per ``page_ttl``.
The metadata of sdists stays per replica too: it is read only to make the meld of a release whose
wheels disagree, and that meld is shared.

Layout: an object's key is its path below the cache root (``v1/<route>/<path…>/files/<file>``, the
same relative layout as the local disk), under the store's prefix; keys are made here and only
here. Every object has a ``<key>.sha256`` beside it, uploaded *after* the object: a sidecar is
the commit mark. An object without one (a replica killed between the two PUTs) is never served,
and every pull is checked against the sidecar, so wrong bytes under a key are never served as
verified (a file that fails is deleted from the bucket so the next request refetches upstream).
Distribution files are published only when the local cache vouched for their hash (a sidecar of
its own): a file upstream gave neither a hash nor a length for stays per replica.

Duplicates: without leases two replicas may fetch one object at once; the second to publish finds
the first's sidecar, uploads nothing and counts ``duplicates[kind]`` (``/metrics``). With leases,
an object whose miss was seen under its own lease is published without asking again
(``seen_missing``): a duplicate there is possible only when the lease was not held (engine
unreachable, lease lost, both counted in ``wheelmeld_lease_total``), and it rewrites the same
bytes uncounted. A meld's siblings are looked for under the meld's lease, not their own, so they are
always asked for and their duplicates counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path, PurePath

from proxy.cache.inventory import Kind, classify
from proxy.cache.object_store import (
    BodyMismatch,
    Expected,
    ObjectMissing,
    ObjectStore,
    ObjectStoreError,
    verified,
)

__all__ = ["SharedCounts", "SharedFile", "SharedKind", "SharedTier"]

log = logging.getLogger("wheelmeld")

_READ_PIECE = 1024 * 1024  # a local file read for its upload, one piece per thread hop
_KNOWN_MAX = 200_000  # keys remembered as committed in the bucket; forgotten all at once past it


class SharedKind(enum.Enum):
    """What an object is, by the folder it lives in (the ``kind`` label in ``/metrics``)."""

    FILE = "files"
    METADATA = "metadata"
    MELD = "meld"


_SHARED_KINDS: dict[Kind, SharedKind] = {
    "file": SharedKind.FILE,
    "metadata": SharedKind.METADATA,
    "meld": SharedKind.MELD,
}


@dataclass(slots=True)
class SharedCounts:
    """The shared tier's counters, by kind; ``proxy.observe.Metrics`` holds one."""

    hits: Counter[SharedKind] = field(default_factory=Counter)
    misses: Counter[SharedKind] = field(default_factory=Counter)
    uploads: Counter[SharedKind] = field(default_factory=Counter)
    unasked: Counter[SharedKind] = field(default_factory=Counter)  # uploads sent without the HEAD
    duplicates: Counter[SharedKind] = field(default_factory=Counter)
    errors: Counter[SharedKind] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class SharedFile:
    """A file the bucket holds, committed: its size and sha256, and its bytes as they arrive.

    ``chunks`` raises ``BodyMismatch`` instead of ending when the bytes are not that file.
    """

    size: int
    sha256: str
    chunks: AsyncIterator[bytes]


class SharedTier:
    """The bucket behind one replica's ``CacheStore``: paths in, keys made here, errors as misses."""

    def __init__(self, root: Path, objects: ObjectStore, counts: SharedCounts) -> None:
        self._root = root
        self.objects = objects
        self.counts = counts
        # Keys this replica saw committed (it published or pulled them): published again, they would
        # cost a HEAD and count as a duplicate each time a sibling is re-kept.
        self._known: set[str] = set()

    # -- keys -------------------------------------------------------------------------------------
    def key(self, path: Path) -> str:
        """The object key of a path of the cache (``v1/…``); ``ValueError`` for any other path."""
        return path.relative_to(self._root).as_posix()

    @staticmethod
    def kind(path: Path) -> SharedKind:
        """What ``path`` holds, by the rule ``cache stats`` counts with (``inventory.classify``: a
        project named ``meld`` keeps its ``page.json`` a page); ``ValueError`` for what the bucket
        does not keep (pages, lists, hashes)."""
        found = _SHARED_KINDS.get(classify(PurePath(path.parent.name, path.name)))
        if found is None:
            raise ValueError(f"not an object the shared bucket keeps: {path.name}")
        return found

    def _remember(self, key: str) -> None:
        if len(self._known) >= _KNOWN_MAX:
            self._known.clear()
        self._known.add(key)

    @contextlib.contextmanager
    def _failing_softly(self, kind: SharedKind, what: str) -> Iterator[None]:
        """A bucket error logged and counted; the caller goes on as if the bucket had nothing."""
        try:
            yield
        except ObjectStoreError as exc:
            self.counts.errors[kind] += 1
            log.warning("shared cache: %s: %s", what, exc)

    # -- small objects: metadata, melds -----------------------------------------------------------
    async def pull(self, path: Path) -> bytes | None:
        """The committed object for ``path`` checked against its sidecar, or ``None`` (a miss)."""
        kind, key = self.kind(path), self.key(path)
        with self._failing_softly(kind, f"reading {key}"):
            try:
                # The mark first, alone: a miss (every object's first, fleet-wide) costs one request.
                digest = await self.objects.get(key + ".sha256")
                data = await self.objects.get(key)
            except ObjectMissing:
                self.counts.misses[kind] += 1
                return None
            if _sha256(data) != digest.decode().strip():
                await self.discard(path, "its bytes do not match its sha256")
                raise BodyMismatch(f"{key} does not match its sha256")
            self.counts.hits[kind] += 1
            self._remember(key)
            return data
        return None

    async def publish(self, path: Path, data: bytes, *, seen_missing: bool = False) -> None:
        """Upload ``data`` as ``path``'s object, then its sidecar; never raises (a bucket error is
        logged: the object stays this replica's).

        ``seen_missing``: the caller found no sidecar under the fleet lease on this object that it
        still holds, so no replica can have committed it since: it is not asked again (two
        requests, not three). Without that lease the sidecar is asked for, beside the put, and a
        second writer counts as a duplicate."""
        kind, key = self.kind(path), self.key(path)
        if key in self._known:
            return
        with self._failing_softly(kind, f"uploading {key}"):
            if seen_missing:
                await self.objects.put(key, data)
            else:
                # Asked and written at once (a small object rewritten with its own bytes is
                # harmless): two round trips, not three.
                there, _ = await asyncio.gather(self._already_there(kind, key), self.objects.put(key, data))
                if there:
                    return
            await self.objects.put(key + ".sha256", _sha256(data).encode())
            self.counts.uploads[kind] += 1
            self.counts.unasked[kind] += seen_missing
            self._remember(key)

    async def _already_there(self, kind: SharedKind, key: str) -> bool:
        if await self.objects.exists(key + ".sha256"):
            self.counts.duplicates[kind] += 1
            self._remember(key)
            return True
        return False

    # -- distribution files -----------------------------------------------------------------------
    async def open_file(self, final: Path) -> SharedFile | None:
        """The committed file for ``final`` to stream (verified as it goes), or ``None``."""
        kind, key = SharedKind.FILE, self.key(final)
        with self._failing_softly(kind, f"reading {key}"):
            try:
                digest = (await self.objects.get(key + ".sha256")).decode().strip()
            except ObjectMissing:
                self.counts.misses[kind] += 1
                return None
            info = await self.objects.head(key)
            if info is None:
                self.counts.misses[kind] += 1
                return None
            chunks = verified(self.objects.stream(key), Expected(info.size, digest))
            self.counts.hits[kind] += 1
            return SharedFile(info.size, digest, chunks)
        return None

    def pulled(self, final: Path) -> None:
        """``final`` came whole from the bucket and checked out: it is committed there."""
        self._remember(self.key(final))

    async def discard(self, path: Path, reason: str) -> None:
        """Remove an object whose bytes failed their sidecar, so the next request refetches it."""
        key = self.key(path)
        log.warning("shared cache: removing %s from the bucket: %s", key, reason)
        self._known.discard(key)
        with self._failing_softly(self.kind(path), f"removing {key}"):
            await self.objects.delete(key + ".sha256")  # first: without its mark the object is gone
            await self.objects.delete(key)

    async def publish_file(self, final: Path, hash_path: Path, *, seen_missing: bool = False) -> None:
        """Upload the committed local file whole (checked against its verified hash as it is read),
        then its sidecar; a file without a verified hash, or gone already, is not published.
        ``seen_missing`` as for ``publish``."""
        key = self.key(final)
        if key in self._known:
            return
        try:
            digest = (await asyncio.to_thread(hash_path.read_text)).strip()
            size = (await asyncio.to_thread(final.stat)).st_size
        except OSError:
            return
        with self._failing_softly(SharedKind.FILE, f"uploading {key}"):
            if not seen_missing and await self._already_there(SharedKind.FILE, key):
                return
            await self.objects.put_stream(key, _read_file(final), Expected(size, digest))
            await self.objects.put(key + ".sha256", digest.encode())
            self.counts.uploads[SharedKind.FILE] += 1
            self.counts.unasked[SharedKind.FILE] += seen_missing
            self._remember(key)

    async def holds_file(self, final: Path) -> bool:
        """Whether the bucket holds the file committed (its sidecar is there), asked each time, not
        remembered: ``cache prune`` may have removed it meanwhile."""
        key = self.key(final)
        with self._failing_softly(SharedKind.FILE, f"looking for {key}"):
            return await self.objects.exists(key + ".sha256")
        return False

    async def presigned_file_url(self, final: Path, expires_in: timedelta) -> str | None:
        """A URL to GET the committed, verified file from the bucket, or ``None`` if it is not there
        (a client sent to a missing object would get the store's 404 instead of the file)."""
        if not await self.holds_file(final):
            return None
        key = self.key(final)
        with self._failing_softly(SharedKind.FILE, f"presigning {key}"):
            return await self.objects.presigned_get_url(key, expires_in)
        return None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _read_file(path: Path) -> AsyncIterator[bytes]:
    """A local file's bytes, read in a thread one piece at a time (it may be gigabytes)."""
    with path.open("rb") as fh:
        while piece := await asyncio.to_thread(fh.read, _READ_PIECE):
            yield piece
