"""A page as this proxy serves it: links to us, the hashes of what we serve, rendered bytes.

What a page advertises depends on the page entry and on two revisions of that page: the metadata
service's (a meld made, a metadata file read) and the file service's (a file committed, an
eviction). ``PageViews`` keeps one ``PageView`` per page, for the entry in service and the
revisions it was built at, and is the one place that compares revisions: a new entry or a moved
revision replaces the view, and what was built from the old one (its rendered bodies, and through
``when_dropped`` the edge's ready answers) goes with it, at once.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

from proxy.cache.store import CacheStore, PageKey
from proxy.index.negotiate import JSON_V1
from proxy.index.render import (
    Advertised,
    file_html,
    file_json,
    join_project_html,
    join_project_json,
    render_list_html,
    render_list_json,
)
from proxy.service.files import FileService
from proxy.service.pages import PageEntry, PageService
from proxy.service.served_metadata import MetadataService

__all__ = ["PageView", "PageViews", "Revisions", "ServedFile", "served_url"]

# (metadata revision, files revision) of one page.
Revisions = tuple[int, int]

# Pages with more entries than this render in a thread (the PyTorch index has 20,000-file pages).
_RENDER_ON_LOOP_MAX = 2000
# Views kept; past this the one a handler least recently built from goes, with its ready answers
# (its page renders again when next asked). A lock touches hundreds of pages, not thousands.
_MAX_VIEWS = 4096
# What urllib.parse.quote leaves as it is; and that with '+', which it writes %2B.
_URL_SAFE_NAME = re.compile(r"[A-Za-z0-9_.~-]+")
_URL_SAFE_BUT_PLUS = re.compile(r"[A-Za-z0-9_.~+-]+")


class ServedFile:
    """What one file of a page is served with, and its rendered fragments once made.

    A plain slotted object, not a served copy of the ``DistFile``: building those (and a page around
    them) was a third of the CPU of serving a cold big page (benchmarks/README.md). The fragments
    depend on the upstream ``DistFile`` too, which is why these are kept only from view to view of
    the same entry (``PageView``).
    """

    __slots__ = ("core_metadata", "hashes", "html", "json")

    def __init__(self, hashes: Mapping[str, str], core_metadata: Advertised) -> None:
        self.hashes = hashes
        self.core_metadata = core_metadata
        self.html: str | None = None
        self.json: str | None = None


@dataclass(slots=True, eq=False, weakref_slot=True)
class PageView:
    """One page entry as served at one pair of revisions, and what was built from it.

    ``rendered`` holds its bodies by content type (three at most). ``served_files`` is the one part
    kept from view to view of the same entry, on purpose: a file's served form depends only on its
    hashes and core-metadata advertisement, which are compared on every render, and a reused
    ``ServedFile`` keeps its rendered fragments, so a meld re-renders a 20,000-file page in ms, not
    50 ms. ``live`` turns false when the view is dropped; a view that never was in ``PageViews``
    (built for an entry already replaced) is not live either, so nothing is kept from it. Weakly
    referable, so a test can see that a dropped view is gone.
    """

    entry: PageEntry
    revisions: Revisions
    served_files: dict[str, ServedFile] = field(default_factory=dict)
    rendered: dict[str, bytes] = field(default_factory=dict)
    live: bool = True


class PageViews:
    """The view in service of each page, at most ``_MAX_VIEWS`` of them."""

    def __init__(
        self, pages: PageService, store: CacheStore, metadata: MetadataService, files: FileService
    ) -> None:
        self._pages = pages
        self._store = store
        self._metadata = metadata
        self._files = files
        self._views: OrderedDict[PageKey, PageView] = OrderedDict()
        self._dropped: list[Callable[[PageView], None]] = []
        pages.when_replaced(self._replaced)

    def when_dropped(self, listener: Callable[[PageView], None]) -> None:
        """Call ``listener`` with every view dropped, so what it keeps of that view goes too."""
        self._dropped.append(listener)

    def view_of(self, entry: PageEntry) -> PageView:
        """``entry`` as served now; read it before building anything meant to be kept with it."""
        key = entry.key
        revisions = self._metadata.revision(key), self._files.revision(key)
        view = self._views.get(key)
        if view is not None and view.entry is entry:
            if view.revisions == revisions:
                self._views.move_to_end(key)
                return view
            served_files = view.served_files
        elif not self._pages.holds(entry):
            return PageView(entry, revisions, live=False)  # replaced while the caller held it
        else:
            served_files = {}
        if view is not None:
            self._drop(view)
        new = self._views[key] = PageView(entry, revisions, served_files)
        if len(self._views) > _MAX_VIEWS:
            self._drop(next(iter(self._views.values())))
        return new

    def serves(self, view: PageView, ttl: float) -> bool:
        """Whether what was built from ``view`` is still true: its entry is still the fresh one in
        service and no revision of its page moved. Read for every warm request: keep it cheap."""
        entry = view.entry
        key = entry.key
        return self._pages.in_service(entry, ttl) and view.revisions == (
            self._metadata.revision(key),
            self._files.revision(key),
        )

    async def body(self, view: PageView, meld: bool, content_type: str) -> bytes:
        """The page as bytes in ``content_type``: rendered once per view (big pages off the loop)."""
        body = view.rendered.get(content_type)
        if body is not None:
            return body
        entry = view.entry
        size = len(entry.page.files) if entry.page is not None else len(entry.listing.projects)  # type: ignore[union-attr]
        if size < _RENDER_ON_LOOP_MAX:
            return self._render(view, meld, content_type)
        # A 20,000-file page takes tens of ms to render: other requests must not wait behind it.
        return await asyncio.to_thread(self._render, view, meld, content_type)

    def _replaced(self, entry: PageEntry) -> None:
        view = self._views.get(entry.key)
        if view is not None and view.entry is entry:
            self._drop(view)

    def _drop(self, view: PageView) -> None:
        del self._views[view.entry.key]
        view.live = False
        for listener in self._dropped:
            listener(view)

    def _render(self, view: PageView, meld: bool, content_type: str) -> bytes:
        entry = view.entry
        if entry.kind == "list":
            assert entry.listing is not None
            json_out = content_type == JSON_V1
            body = render_list_json(entry.listing) if json_out else render_list_html(entry.listing)
        else:
            assert entry.page is not None
            json_out = content_type == JSON_V1
            fragments = self._served_fragments(view, meld, json_out)
            body = (join_project_json if json_out else join_project_html)(entry.page, fragments)
        view.rendered[content_type] = body
        return body

    def _served_fragments(self, view: PageView, meld: bool, json_out: bool) -> list[str]:
        """Upstream's files as we serve them, rendered: links to us, metadata hashes of what *we* serve."""
        entry = view.entry
        assert entry.page is not None
        key, groups, served_files = entry.key, entry.release_groups(), view.served_files
        advertised_hash = self._metadata.advertised_hash
        # Upstream gave no hash (PyTorch nightlies): once we hold the verified file, we know it.
        known: dict[str, str] | None = None
        fragments = []
        for dist in entry.page.files:
            name, hashes = dist.filename, dist.hashes
            if not hashes.get("sha256"):
                if known is None:
                    known = self._store.file_hashes(key)
                if name in known:
                    hashes = {**hashes, "sha256": known[name]}
            release = groups.get(name)  # only wheels are in a release
            core: Advertised
            if release is not None:
                digest = advertised_hash(key, release, dist, meld)
                upstream = dist.core_metadata
                if not digest:
                    core = True
                elif type(upstream) is dict and len(upstream) == 1 and upstream.get("sha256") == digest:
                    core = upstream  # the same mapping: no copy per file (both are read-only)
                else:
                    core = {"sha256": digest}
            else:
                # In no release (an sdist, a PEP 825 variant wheel, a name packaging cannot read):
                # what upstream says of its metadata, passed through.
                core = dist.core_metadata if name.endswith(".whl") else False
            served = served_files.get(name)
            if served is None or served.hashes != hashes or served.core_metadata != core:
                served = served_files[name] = ServedFile(hashes, core)
            fragment = served.json if json_out else served.html
            if fragment is None:
                fragment = (file_json if json_out else file_html)(dist, served_url(name), hashes, core)
                if json_out:
                    served.json = fragment
                else:
                    served.html = fragment
            fragments.append(fragment)
        return fragments


def served_url(filename: str) -> str:
    """``quote(filename)``: the link to a file, relative to its page.

    Most names need no quoting, and a PyTorch name only its '+' (``torch-2.1.0+cu118-...``), for
    which ``quote`` cost a 20,000-file page 80 ms.
    """
    if _URL_SAFE_NAME.fullmatch(filename):
        return filename
    if _URL_SAFE_BUT_PLUS.fullmatch(filename):
        return filename.replace("+", "%2B")
    return quote(filename)
