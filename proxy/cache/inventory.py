"""What the cache holds: every entry of the ``v1/`` layout, classified by kind and route.

Used by ``wheelmeld cache stats``, by eviction (which only ever considers ``file`` entries) and by
``wheelmeld cache verify``. The kind of an entry follows from its name and its parent folder alone
(see ``proxy.cache.store`` for the layout), so a scan needs one ``stat`` per entry and no parsing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Literal

__all__ = ["KINDS", "Entry", "Kind", "KindTotals", "Summary", "classify", "scan", "summarize"]

Kind = Literal["page", "file", "hash", "metadata", "meld", "other"]
KINDS: tuple[Kind, ...] = ("page", "file", "hash", "metadata", "meld", "other")


def classify(relative: PurePath) -> Kind:
    """The kind of an entry from its path below ``v1/<route>/`` (pure; table-tested).

    The name is checked before the folder, so a project that happens to be called ``files`` or
    ``metadata`` still has its ``page.json`` counted as a page.
    """
    name, parent = relative.name, relative.parent.name
    if name == "page.json" or (name == "page.html" and len(relative.parts) == 1):
        return "page"
    if parent == "files" and len(relative.parts) >= 2:
        return "hash" if name.endswith(".sha256") else "file"
    if parent == "metadata" and name.endswith(".metadata"):
        return "metadata"
    if parent == "meld" and name.endswith(".json"):
        return "meld"
    return "other"


@dataclass(frozen=True, slots=True)
class Entry:
    """One cached object on disk. ``last_used`` is its access time: serving a file refreshes it."""

    path: Path
    route: str
    kind: Kind
    size: int
    last_used: float


def scan(data_root: Path) -> Iterator[Entry]:
    """Every entry under ``data_root`` (the store's ``v1/``); blocking: run it in a thread."""
    if not data_root.is_dir():
        return
    for route_dir in sorted(p for p in data_root.iterdir() if p.is_dir()):
        for dirpath, _dirnames, filenames in os.walk(route_dir):
            folder = Path(dirpath)
            for name in filenames:
                path = folder / name
                try:
                    st = path.stat()
                except OSError:
                    continue  # removed while we walked (eviction in another worker)
                kind = classify(path.relative_to(route_dir))
                yield Entry(path, route_dir.name, kind, st.st_size, st.st_atime)


@dataclass(slots=True)
class KindTotals:
    count: int = 0
    size: int = 0


@dataclass(frozen=True, slots=True)
class Summary:
    """Entries and bytes per route and kind."""

    routes: Mapping[str, Mapping[Kind, KindTotals]] = field(default_factory=dict)

    def total(self, kind: Kind | None = None) -> KindTotals:
        out = KindTotals()
        for kinds in self.routes.values():
            for name, totals in kinds.items():
                if kind is None or name == kind:
                    out.count += totals.count
                    out.size += totals.size
        return out


def summarize(entries: Iterable[Entry]) -> Summary:
    routes: dict[str, dict[Kind, KindTotals]] = {}
    for entry in entries:
        totals = routes.setdefault(entry.route, {k: KindTotals() for k in KINDS})[entry.kind]
        totals.count += 1
        totals.size += entry.size
    return Summary(routes)
