"""The cache's size limit (``cache.max_size``): drop least-recently-used distribution files.

Only ``file`` entries count and only they are evicted: pages, original metadata and melds are small
and are what keeps an index (and an air-gapped copy) answering; a file can always be fetched again.
"Recently used" is the file's access time, which ``FileService`` sets each time it serves the file
(an explicit ``utime`` works whatever the mount's ``relatime`` / ``noatime`` options).

Eviction runs after a commit pushed the total over the limit (in a thread) and from
``wheelmeld cache prune``. One evictor at a time across processes (a non-blocking flock: a second
one has nothing to add), and never a file the caller says is in use.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence, Set
from dataclasses import dataclass
from pathlib import Path

from proxy.cache.inventory import Entry, scan
from proxy.cache.store import CacheStore

__all__ = ["EvictionResult", "choose_victims", "evict"]


@dataclass(frozen=True, slots=True)
class EvictionResult:
    removed: tuple[Path, ...] = ()
    freed: int = 0
    remaining: int = 0  # bytes of files left in the cache
    skipped: bool = False  # another process was evicting already


def choose_victims(files: Sequence[Entry], max_size: int, protected: Set[Path] = frozenset()) -> list[Entry]:
    """Least recently used first, until the files that stay fit in ``max_size`` (pure).

    Protected files are never chosen, even when the rest cannot make room: a file being streamed or
    just committed must stay whole.
    """
    total = sum(f.size for f in files)
    victims: list[Entry] = []
    # Ties (same access time) fall back to the path, so the choice never depends on scan order.
    for entry in sorted(files, key=lambda f: (f.last_used, str(f.path))):
        if total <= max_size:
            break
        if entry.path in protected:
            continue
        victims.append(entry)
        total -= entry.size
    return victims


def evict(store: CacheStore, max_size: int, protected: Set[Path] = frozenset()) -> EvictionResult:
    """Bring the files of ``store`` under ``max_size`` bytes (blocking: call it in a thread)."""
    with store.try_lock("evict") as acquired:
        if not acquired:
            return EvictionResult(skipped=True)
        files = [e for e in scan(store.data_root) if e.kind == "file"]
        victims = choose_victims(files, max_size, protected)
        removed: list[Path] = []
        freed = 0
        for victim in victims:
            # The file first: a hash left without its file is harmless (``cache verify`` drops it),
            # a file left without its hash would look unverified.
            try:
                victim.path.unlink()
            except FileNotFoundError:
                continue  # another process removed it meanwhile
            with contextlib.suppress(FileNotFoundError):
                victim.path.with_name(victim.path.name + ".sha256").unlink()
            removed.append(victim.path)
            freed += victim.size
        remaining = sum(f.size for f in files) - freed
        return EvictionResult(tuple(removed), freed, remaining)
