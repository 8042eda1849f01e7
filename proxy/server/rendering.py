"""A cached page as this proxy serves it: links to us, the hashes of what we serve, rendered bytes.

A page entry keeps its renderings by content type and the revisions its advertised hashes depend on
(a meld, a committed file, a metadata file read), so a change re-renders that page and no other.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import replace
from urllib.parse import quote

from proxy.index.model import ProjectPage
from proxy.index.negotiate import JSON_V1
from proxy.index.render import render_list_html, render_list_json, render_project_html, render_project_json
from proxy.network.upstream import Upstream
from proxy.server.state import AppState
from proxy.service.pages import PageEntry, RenderKey

__all__ = ["ready_bytes", "render_ahead"]

# Pages with more entries than this render in a thread (the PyTorch index has 20,000-file pages).
_RENDER_ON_LOOP_MAX = 2000
# What urllib.parse.quote leaves as it is.
_URL_SAFE_NAME = re.compile(r"[A-Za-z0-9_.~-]+")


def _served_page(state: AppState, entry: PageEntry, upstream: Upstream) -> ProjectPage:
    """Upstream's page as we serve it: links to us, metadata hashes of what *we* serve."""
    assert entry.page is not None
    groups = entry.release_groups()
    # Upstream gave no hash (PyTorch nightlies): once we hold the verified file, we know it.
    known: dict[str, str] | None = None
    rewritten = []
    for dist in entry.page.files:
        hashes = dist.hashes
        if not hashes.get("sha256"):
            if known is None:
                known = state.store.file_hashes(entry.key)
            if dist.filename in known:
                hashes = {**hashes, "sha256": known[dist.filename]}
        release = groups.get(dist.filename) if dist.filename.endswith(".whl") else None
        core: bool | Mapping[str, str]
        if release is not None:
            digest = state.metadata.advertised_hash(entry.key, release, dist, upstream.route.meld)
            core = {"sha256": digest} if digest else True
        else:
            # In no release (an sdist, a PEP 825 variant wheel, a name packaging cannot read): what
            # upstream says of its metadata, passed through.
            core = dist.core_metadata if dist.filename.endswith(".whl") else False
        served = entry.served_files.get(dist.filename)
        if served is None or served.hashes != hashes or served.core_metadata != core:
            # Most file names need no quoting at all.
            url = dist.filename if _URL_SAFE_NAME.fullmatch(dist.filename) else quote(dist.filename)
            served = dist.served_as(url, hashes, core)
            entry.served_files[dist.filename] = served
        rewritten.append(served)
    return replace(entry.page, files=tuple(rewritten))


def _render(
    state: AppState, entry: PageEntry, upstream: Upstream, content_type: str, cache_key: RenderKey
) -> bytes:
    if entry.kind == "list":
        assert entry.listing is not None
        json_out = content_type == JSON_V1
        body = render_list_json(entry.listing) if json_out else render_list_html(entry.listing)
    else:
        page = _served_page(state, entry, upstream)
        body = render_project_json(page) if content_type == JSON_V1 else render_project_html(page)
    if len(entry.rendered) > 4:
        entry.rendered.clear()
    entry.rendered[cache_key] = body
    return body


async def render_ahead(state: AppState, entry: PageEntry) -> None:
    """Render a page loaded ahead as uv and pip ask for it (PEP 691 JSON), before they do."""
    upstream = next((u for u in state.upstreams.values() if u.route.name == entry.key.route), None)
    if upstream is not None:
        await ready_bytes(state, entry, upstream, JSON_V1)


async def ready_bytes(state: AppState, entry: PageEntry, upstream: Upstream, content_type: str) -> bytes:
    """The page as bytes: ready ones when nothing changed, else rendered (big pages off the loop)."""
    # A change to this page's advertised hashes (a meld, a committed file, a metadata file read)
    # re-renders it, no other page; a new PageEntry starts with nothing rendered.
    cache_key = (content_type, state.revisions(entry.key))
    body = entry.rendered.get(cache_key)
    if body is not None:
        return body
    size = len(entry.page.files) if entry.page is not None else len(entry.listing.projects)  # type: ignore[union-attr]
    if size < _RENDER_ON_LOOP_MAX:
        return _render(state, entry, upstream, content_type, cache_key)
    # A 20,000-file page takes tens of ms to render: other requests must not wait behind it.
    return await asyncio.to_thread(_render, state, entry, upstream, content_type, cache_key)
