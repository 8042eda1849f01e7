"""The on-disk form of a cached page: version 2 round-trips, version 1 still reads, damage is a miss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proxy.cache.page_file import StoredPage, dump_page, load_page
from proxy.cache.store import CacheStore, PageKey
from proxy.index.parse import is_utf8_json, parse_project_page
from proxy.service.pages import PageEntry, PageService

BODY = b'{"meta":{"api-version":"1.1"},"name":"demo","files":[]}\n'
PAGE = StoredPage("project", "https://up.example/simple/demo/", 1700000000.5, '"e\\n1"', None, BODY)


@pytest.mark.parametrize(
    "page",
    [
        PAGE,
        StoredPage("list", "https://up.example/simple/", 1.0, None, "Thu, 16 Jan 2025 08:00:00 GMT", b"{}"),
        StoredPage("project", "u", 2.0, None, None, b"line one\nline two\n\x00\xff"),
    ],
)
def test_version_2_round_trips(page: StoredPage) -> None:
    raw = dump_page(page)
    assert raw.startswith(b"wheelmeld-page 2\n")
    assert raw.endswith(page.body), "the body is stored as it is"
    assert load_page(raw) == page


def test_version_1_documents_still_read() -> None:
    doc = {
        "kind": "project",
        "url": PAGE.url,
        "fetched_at": PAGE.fetched_at,
        "etag": PAGE.etag,
        "last_modified": None,
        "body": BODY.decode(),
    }
    assert load_page(json.dumps(doc).encode()) == PAGE


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"wheelmeld-page 2\n",
        b"wheelmeld-page 2\n{not json}\nbody",
        b'wheelmeld-page 2\n["a list"]\nbody',
        b'wheelmeld-page 2\n{"kind": "other", "url": "u", "fetched_at": 1}\nbody',
        b'wheelmeld-page 2\n{"kind": "project", "url": 3, "fetched_at": 1}\nbody',
        b'wheelmeld-page 2\n{"kind": "project", "url": "u", "fetched_at": "soon"}\nbody',
        b'wheelmeld-page 2\n{"kind": "project", "url": "u", "fetched_at": true}\nbody',
        b'wheelmeld-page 2\n{"kind": "project", "url": "u", "fetched_at": 1, "etag": 5}\nbody',
        b'{"kind": "project", "url": "u", "fetched_at": 1}',
        b'{"kind": "project", "url": "u", "fetched_at": 1, "body": 7}',
        b"[1, 2]",
        b"\xff\xfe garbage",
    ],
)
def test_a_damaged_page_file_is_a_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError):
        load_page(raw)


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/vnd.pypi.simple.v1+json", True),
        ("application/vnd.pypi.simple.v1+json; charset=utf-8", True),
        ("application/vnd.pypi.simple.latest+json; charset=UTF8", True),
        ("application/json", True),
        ("application/vnd.pypi.simple.v1+json; charset=latin-1", False),
        ("application/vnd.pypi.simple.v2+json", False),
        ("application/vnd.pypi.simple.v1+html", False),
        ("text/html; charset=utf-8", False),
        ("", False),
        ("not a type", False),
    ],
)
def test_which_upstream_bodies_are_kept_as_they_are(content_type: str, expected: bool) -> None:
    assert is_utf8_json(content_type) is expected


def test_a_body_that_is_not_utf8_is_stored_as_our_rendering(tmp_path: Path) -> None:
    # The disk copy is read back as UTF-8 JSON: upstream bytes in another encoding would come back
    # with replacement characters, so the page is rendered (as UTF-8 JSON) instead.
    latin = '{"name": "demo", "files": [{"filename": "demo-1.0.tar.gz", "url": "https://up.example/d.tgz", '
    latin += '"hashes": {}, "yanked": "caf\u00e9"}]}'
    body = latin.encode("latin-1")
    url = "https://up.example/simple/demo/"
    page = parse_project_page(body, "application/json; charset=latin-1", url)
    store = CacheStore(tmp_path)
    store.prepare()
    service = PageService(store, offline=False)
    key = PageKey("r", ("demo",))
    entry = PageEntry(key=key, kind="project", page=page, listing=None, fetched_at=1.0, url=url)
    entry.disk_body = body
    service._save(entry)
    read = service._read(key)
    assert read is not None
    loaded = service._parse(key, *read)
    assert loaded is not None and loaded.page == page
    assert loaded.page.files[0].yanked == "caf\u00e9"
