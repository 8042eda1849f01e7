"""The on-disk cache: one directory per project page, atomic writes, locks across processes.

Layout under the cache root (``v1`` so a future layout can live beside it)::

    v1/<route>/<path…>/page.json                   upstream's page (project or list) + validators
    v1/<route>/page.html                           the route's project list as PEP 503 HTML
    v1/<route>/<path…>/files/<file>                verified distribution files (+ <file>.sha256)
    v1/<route>/<path…>/metadata/<file>.metadata    original core metadata (immutable)
    v1/<route>/<path…>/meld/<key>.json             one release's meld, keyed by its sibling set
    v1/<route>/<path…>/revalidated/<file>          files that may change under one name (PEP 825
                                                   variants.json): revalidated like a page
    tmp/                                                 partial writes; leftovers dropped at start
    locks/                                               flock files; a killed holder frees its lock

Every path component comes from ``_safe_component``, so no name a client sends can leave the root.
Every write is temp file + fsync + rename: a reader sees the old entry or the new one, never half.
A write the disk refuses (full, read-only) raises ``CacheWriteError``, nothing else, and leaves no
temp file; reads and locks keep working on a cache that cannot be written.
A temp file is flocked by its writer for as long as it is open, so ``prepare`` (run by every worker
at start, and by ``wheelmeld cache prune``) drops only what a dead process left behind, never the
download a live sibling worker is writing.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from proxy.cache.errors import CacheWriteError
from proxy.cache.leases import Leases
from proxy.errors import BadRequest

__all__ = ["CacheStore", "PageKey", "is_safe_component"]

# Waiting for a lock another process holds: first retry after 5 ms, then back off to 100 ms.
_POLL_FIRST = 0.005
_POLL_MAX = 0.1

# A path component we are willing to create: what index paths, project names and file names use.
_COMPONENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+!-]{0,254}$")


def is_safe_component(value: str) -> bool:
    """Whether the cache would create a file or directory of this name (one segment, no '..')."""
    return bool(_COMPONENT_RE.match(value)) and ".." not in value


def _safe_component(value: str) -> str:
    if not is_safe_component(value):
        raise BadRequest(f"not a valid path component: {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class PageKey:
    """Which page: the route's name and the path segments below it (empty for the route's root).

    A project page is the last segment of its path (``("nightly", "cu126", "torch")``); a project
    list has no files, so it never collides with a project's ``files/`` directory.
    """

    route: str
    path: tuple[str, ...]

    def __post_init__(self) -> None:
        for part in (self.route, *self.path):
            _safe_component(part)

    @property
    def project(self) -> str:
        return self.path[-1] if self.path else ""

    @property
    def label(self) -> str:
        return "/".join((self.route, *self.path))


@dataclass(slots=True)
class _TaskLock:
    """The in-process half of one key's lock, and how many tasks hold or wait on it."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class CacheStore:
    """Owns the cache root; every read and write of the cache goes through it."""

    def __init__(self, root: Path, *, leases: Leases | None = None) -> None:
        self.root = root
        self.leases = leases
        self._data = root / "v1"
        self._tmp = root / "tmp"
        self._locks_dir = root / "locks"
        # In-process half of the lock: flock is per open file description, so two tasks of one
        # process need their own exclusion before they reach it.
        self._task_locks: dict[str, _TaskLock] = {}

    def prepare(self) -> int:
        """Create the layout and drop leftovers of writes a killed process never finished.

        Returns the number of leftovers dropped. A temp file whose writer is alive (its flock is
        held) is kept: with ``--workers N`` a restarted worker must not pull a download from under
        its siblings.
        """
        for folder in (self._data, self._tmp, self._locks_dir):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                # A read-only cache (an air-gapped volume, say) is served as it is: its owner
                # decides what a write refused at start means.
                raise CacheWriteError.of(exc, str(folder)) from exc
        dropped = 0
        for leftover in self._tmp.iterdir():
            with contextlib.suppress(OSError):
                if leftover.is_dir():
                    shutil.rmtree(leftover)
                    dropped += 1
                elif _unlink_if_abandoned(leftover):
                    dropped += 1
        return dropped

    @property
    def data_root(self) -> Path:
        """``v1/``: one directory per route below it."""
        return self._data

    @property
    def tmp_dir(self) -> Path:
        return self._tmp

    # -- layout -------------------------------------------------------------------------------
    def project_dir(self, key: PageKey) -> Path:
        return self._data.joinpath(key.route, *key.path)

    def page_path(self, key: PageKey) -> Path:
        return self.project_dir(key) / "page.json"

    def list_html_path(self, key: PageKey) -> Path:
        """A project list's PEP 503 rendering, beside its ``page.json`` (served as it is)."""
        return self.project_dir(key) / "page.html"

    def file_path(self, key: PageKey, filename: str) -> Path:
        return self.project_dir(key) / "files" / _safe_component(filename)

    def metadata_path(self, key: PageKey, filename: str) -> Path:
        return self.project_dir(key) / "metadata" / (_safe_component(filename) + ".metadata")

    def revalidated_path(self, key: PageKey, filename: str) -> Path:
        return self.project_dir(key) / "revalidated" / _safe_component(filename)

    def meld_path(self, key: PageKey, release_key: str) -> Path:
        return self.project_dir(key) / "meld" / (_safe_component(release_key) + ".json")

    def metadata_and_melds(self, key: PageKey) -> list[Path]:
        """The original metadata files and the melds kept for ``key``'s page (blocking)."""
        found = []
        for sub in ("metadata", "meld"):
            folder = self.project_dir(key) / sub
            if folder.is_dir():
                found += [path for path in sorted(folder.iterdir()) if path.is_file()]
        return found

    def meld_paths(self, key: PageKey) -> list[Path]:
        """Every meld kept for ``key``'s page, newest first (blocking)."""
        try:
            return sorted(
                (self.project_dir(key) / "meld").glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True
            )
        except OSError:
            return []

    # -- files and their verified hashes ------------------------------------------------------
    @staticmethod
    def hash_path(file: Path) -> Path:
        """Where a cached file's verified sha256 is kept: beside it, written just before its commit."""
        return file.with_name(file.name + ".sha256")

    @classmethod
    def file_hash(cls, file: Path) -> str | None:
        """The verified sha256 of a cached file, or ``None`` unless the cache holds the file itself.

        The hash outlives its file for a moment when the file is evicted: a hash is only ever
        advertised for a file we can serve.
        """
        try:
            digest = cls.hash_path(file).read_text().strip()
        except OSError:
            return None
        return digest if digest and file.exists() else None

    def file_hashes(self, key: PageKey) -> dict[str, str]:
        """``file_hash`` of every file the cache holds for ``key``, with one listing.

        Only the files actually cached are read: a page of 20,000 files without upstream hashes
        must not cost 20,000 failed opens per render.
        """
        files_dir = self.project_dir(key) / "files"
        try:
            names = [entry.name for entry in os.scandir(files_dir)]
        except OSError:
            return {}
        found = {}
        for name in names:
            if name.endswith(".sha256"):
                digest = self.file_hash(files_dir / name.removesuffix(".sha256"))
                if digest:
                    found[name.removesuffix(".sha256")] = digest
        return found

    def file_names(self, key: PageKey) -> list[str]:
        """The names of the files the cache holds for ``key`` (blocking: one directory listing)."""
        try:
            return [
                p.name for p in (self.project_dir(key) / "files").iterdir() if not p.name.endswith(".sha256")
            ]
        except FileNotFoundError:
            return []

    # -- reads and writes ---------------------------------------------------------------------
    @staticmethod
    def read(path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def write_atomic(self, path: Path, data: bytes) -> None:
        """Temp file in the same file system, fsync, rename: blocking, call it in a thread."""
        self.write_many(((path, data),))

    def write_many(self, items: Iterable[tuple[Path, bytes]]) -> None:
        """``write_atomic`` for each (path, data), with each directory synced once, not per file.

        A reader still sees each file old or new, never half: every one is its own temp file,
        fsynced, then renamed. Blocking: call it in a thread.
        """
        directories: set[Path] = set()
        for path, data in items:
            with self.open_temp() as (tmp_path, fh):
                self.append(fh, data)
                self.sync(fh)
                self.commit(tmp_path, path, sync=False)
            directories.add(path.parent)
        for directory in directories:
            _fsync_directory(directory)

    @contextlib.contextmanager
    def open_temp(self) -> Iterator[tuple[Path, IO[bytes]]]:
        """A temp file under ``tmp/``; removed on exit unless ``commit`` moved it into place."""
        try:
            self._tmp.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=self._tmp, prefix="part-")
        except OSError as exc:
            raise CacheWriteError.of(exc, "a temp file") from exc
        tmp_path = Path(name)
        fh = os.fdopen(fd, "w+b")
        try:
            # Held until the file is closed: marks it as being written (see ``prepare``).
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            yield tmp_path, fh
        finally:
            with contextlib.suppress(OSError):
                fh.close()  # after a refused write its buffer is refused again: the fd closes anyway
            with contextlib.suppress(FileNotFoundError):
                tmp_path.unlink()

    @staticmethod
    def append(fh: IO[bytes], data: bytes) -> None:
        """Write ``data`` to a temp file of ``open_temp``, flushed: readers open it by path."""
        try:
            fh.write(data)
            fh.flush()
        except OSError as exc:
            raise CacheWriteError.of(exc, "a temp file") from exc

    @staticmethod
    def sync(fh: IO[bytes]) -> None:
        try:
            os.fsync(fh.fileno())
        except OSError as exc:
            raise CacheWriteError.of(exc, "a temp file") from exc

    @staticmethod
    def commit(tmp_path: Path, final: Path, *, sync: bool = True) -> None:
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp_path, final)
        except OSError as exc:
            raise CacheWriteError.of(exc, final.name) from exc
        if sync:
            _fsync_directory(final.parent)

    @staticmethod
    def remove(path: Path) -> None:
        """Drop one entry if it is there (a stale hash beside a file about to be replaced)."""
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise CacheWriteError.of(exc, path.name) from exc

    # -- locks --------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def lock(self, name: str, *, fleet: bool = False) -> AsyncIterator[None]:
        """Exclusive across the tasks of this process, the worker processes sharing the root and,
        with ``leases`` and ``fleet``, the replicas of a fleet (``proxy.cache.leases``).

        ``fleet=True`` only for what the fleet shares (files, original metadata, melds: the
        bucket's objects); on what each replica keeps for itself (pages, sdist metadata) a fleet
        lease would only make the replicas take turns. flock is released by the kernel when its holder dies,
        and a lease expires when its holder stops renewing it, so a ``kill -9`` never wedges a key.
        The local halves come first: at most one task per machine waits on the fleet for a key.
        """
        entry = self._task_locks.setdefault(name, _TaskLock())
        entry.users += 1  # so the entry is dropped only when nobody waits on it
        try:
            async with entry.lock:
                fd = self._open_lock_file(name)
                try:
                    if fd is not None:  # none: the cache cannot be written, so no sibling writes it
                        await _flock_polling(fd)
                    async with self._fleet_lease(name) if fleet else contextlib.nullcontext():
                        yield
                finally:
                    if fd is not None:
                        os.close(fd)  # closing the descriptor releases the flock
        finally:
            entry.users -= 1
            if entry.users == 0:
                self._task_locks.pop(name, None)

    def _fleet_lease(self, name: str) -> contextlib.AbstractAsyncContextManager[None]:
        if self.leases is None:
            return contextlib.nullcontext()
        # A name may hold a path in this cache; replicas have roots of their own, so the fleet
        # knows the entry by its path below the root.
        return self.leases.hold(name.replace(str(self._data) + os.sep, ""))

    @contextlib.contextmanager
    def try_lock(self, name: str) -> Iterator[bool]:
        """A non-blocking, cross-process flock for housekeeping (eviction): ``True`` if we got it.

        Blocking code (a thread or the CLI) uses this one; it never waits for another holder.
        """
        self._locks_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_file(name), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def _open_lock_file(self, name: str) -> int | None:
        try:
            self._locks_dir.mkdir(parents=True, exist_ok=True)
            return os.open(self._lock_file(name), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            with contextlib.suppress(OSError):
                return os.open(self._lock_file(name), os.O_RDONLY)  # flock works on any open file
            return None

    def _lock_file(self, name: str) -> Path:
        return self._locks_dir / (hashlib.sha256(name.encode()).hexdigest()[:32] + ".lock")


def _fsync_directory(directory: Path) -> None:
    """A rename is durable only once the directory entry is on disk too."""
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


async def _flock_polling(fd: int) -> None:
    """Take an exclusive flock without blocking the event loop or parking a thread.

    Another worker may hold a file's lock for the minutes a large download takes; a thread blocked
    in ``flock`` per waiting key would soon fill the default executor (a handful of threads) and
    stall every other ``to_thread`` call of this worker. Polling with backoff costs nothing instead.
    """
    delay = _POLL_FIRST
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            await asyncio.sleep(delay)
            delay = min(delay * 2, _POLL_MAX)


def _unlink_if_abandoned(path: Path) -> bool:
    """Remove a temp file unless a living writer holds its flock (blocking but instant)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live download in another worker
        path.unlink()
        return True
    finally:
        os.close(fd)
