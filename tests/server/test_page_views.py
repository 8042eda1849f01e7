"""A page as served (``proxy/service/page_views.py``): the bytes of the served copies, and re-renders.

The served files are rendered from each upstream ``DistFile`` with our link, hashes and metadata
advertisement, without building a served copy; the bytes are the copy's all the same. A re-render
where no file's served form moved is a join of the fragments kept from the view before.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from proxy.cache.store import CacheStore, PageKey
from proxy.index import HTML_V1, JSON_V1, DistFile, ProjectPage, render_project_html, render_project_json
from proxy.observe import MeldLog, Metrics
from proxy.service import page_views
from proxy.service.files import FileService
from proxy.service.page_views import PageView, PageViews, served_url
from proxy.service.pages import PageEntry, PageService
from proxy.service.served_metadata import MetadataService

URL = "https://upstream.example/simple/demo/"
KEY = PageKey("pypi", ("demo",))
SHA = "ab" * 32
META = "cd" * 32


def _file(name: str, core: bool | dict[str, str], **more: object) -> DistFile:
    url = f"https://files.upstream.example/p/{name}"
    return DistFile(name, url, {"sha256": SHA}, ">=3.8", False, core, 123, "2024-01-02T03:04:05Z", **more)  # type: ignore[arg-type]


PAGE = ProjectPage(
    name="demo",
    files=(
        _file("demo-1.0-cp312-cp312-manylinux_2_17_x86_64.whl", {"sha256": META}),
        _file("demo-1.0-cp312-cp312-win_amd64.whl", True, gpg_sig=False),
        _file("demo-1.0+local-py3-none-any.whl", False),
        _file("demo-1.0.tar.gz", {"sha256": META}),
    ),
    versions=("1.0",),
)


@pytest.fixture
def served(tmp_path: Path) -> tuple[PageViews, MetadataService, PageEntry]:
    store = CacheStore(tmp_path)
    store.prepare()
    metrics = Metrics()
    pages = PageService(store, offline=False)
    metadata = MetadataService(store, metrics, MeldLog(), offline=False)
    views = PageViews(pages, store, metadata, FileService(store, metrics, offline=False))
    entry = PageEntry(KEY, "project", PAGE, None, time.time(), url=URL)
    pages._serve(entry)
    return views, metadata, entry


def _served_copy(core: Callable[[DistFile], bool | dict[str, str]]) -> ProjectPage:
    # What the views built before: one served DistFile per file, rendered by the page renderers.
    files = tuple(
        dataclasses.replace(f, url=served_url(f.filename), core_metadata=core(f)) for f in PAGE.files
    )
    return dataclasses.replace(PAGE, files=files)


def _upstream_core(f: DistFile) -> bool | dict[str, str]:
    # A wheel's metadata is served whatever upstream says: with upstream's hash, else unhashed.
    if not f.filename.endswith(".whl"):
        return False
    return f.core_metadata if isinstance(f.core_metadata, dict) else True


def test_the_bytes_are_the_served_copies(served: tuple[PageViews, MetadataService, PageEntry]) -> None:
    views, _, entry = served
    view = views.view_of(entry)
    expected = _served_copy(_upstream_core)
    assert views._render(view, False, JSON_V1) == render_project_json(expected)
    assert views._render(view, False, HTML_V1) == render_project_html(expected)


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    for name in ("file_json", "file_html"):
        real = getattr(page_views, name)

        def counted(f: DistFile, *args: object, real: Callable[..., str] = real) -> str:
            calls.append(f.filename)
            return real(f, *args)

        monkeypatch.setattr(page_views, name, counted)
    return calls


def test_a_re_render_joins_the_kept_fragments(
    served: tuple[PageViews, MetadataService, PageEntry], monkeypatch: pytest.MonkeyPatch
) -> None:
    views, metadata, entry = served
    first = views.view_of(entry)
    bodies = [views._render(first, False, kind) for kind in (JSON_V1, HTML_V1)]
    kept = dict(first.served_files)
    calls = _counting(monkeypatch)
    # A revision moves for a file the page does not list: every served form stays as it was.
    metadata._remember(KEY, "other-1.0-py3-none-any.whl", b"Metadata-Version: 2.1\n")
    second = views.view_of(entry)
    assert second is not first and not first.live
    assert [views._render(second, False, kind) for kind in (JSON_V1, HTML_V1)] == bodies
    assert calls == []
    assert all(second.served_files[name] is kept[name] for name in kept)


def test_a_moved_advertisement_renders_that_file_again(
    served: tuple[PageViews, MetadataService, PageEntry], monkeypatch: pytest.MonkeyPatch
) -> None:
    views, metadata, entry = served
    view: PageView = views.view_of(entry)
    views._render(view, False, JSON_V1)
    calls = _counting(monkeypatch)
    win = PAGE.files[1].filename
    metadata._remember(KEY, win, b"Metadata-Version: 2.1\nName: demo\n")  # we now know its hash
    digest = hashlib.sha256(b"Metadata-Version: 2.1\nName: demo\n").hexdigest()
    body = views._render(views.view_of(entry), False, JSON_V1)
    assert calls == [win]

    def core(f: DistFile) -> bool | dict[str, str]:
        return {"sha256": digest} if f.filename == win else _upstream_core(f)

    assert body == render_project_json(_served_copy(core))
