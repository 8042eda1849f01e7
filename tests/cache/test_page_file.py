"""The on-disk form of a cached page: version 2 round-trips, version 1 still reads, damage is a miss."""

from __future__ import annotations

import json

import pytest

from proxy.cache.page_file import StoredPage, dump_page, load_page

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
