"""The on-disk form of one cached page (``page.json``): a one-line JSON header, then the page's bytes.

Version 2, written now, is ``wheelmeld-page 2\\n`` + the header (kind, URL, validators, fetch time)
as one line of JSON + ``\\n`` + the body, a PEP 691 JSON page stored as it is. Version 1 kept the
body as a string inside one JSON document, which cost a 7 MB page 43 ms of escaping on every save
and a second 27 ms JSON parse on every load (the page body is parsed anyway). Version 1 files are
still read, so caches and bundles made before stay good.

Anything malformed is a ``ValueError``: the caller treats the entry as a miss, never as an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["StoredPage", "dump_page", "load_header", "load_page"]

_MAGIC = b"wheelmeld-page 2\n"
_KINDS = frozenset({"project", "list"})


@dataclass(frozen=True, slots=True)
class StoredPage:
    kind: str  # "project" or "list"
    url: str  # the final upstream URL the page came from (relative links resolve against it)
    fetched_at: float  # wall clock of the last 200 or 304
    etag: str | None
    last_modified: str | None
    body: bytes  # the page as PEP 691 JSON


def dump_page(page: StoredPage) -> bytes:
    header = {
        "kind": page.kind,
        "url": page.url,
        "fetched_at": page.fetched_at,
        "etag": page.etag,
        "last_modified": page.last_modified,
    }
    # json.dumps escapes newlines, so the header is one line whatever the validators hold.
    return b"".join((_MAGIC, json.dumps(header).encode(), b"\n", page.body))


def load_page(raw: bytes) -> StoredPage:
    if raw.startswith(_MAGIC):
        line_end = raw.find(b"\n", len(_MAGIC))
        if line_end < 0:
            raise ValueError("page file without a header line")
        header = json.loads(raw[len(_MAGIC) : line_end])
        body = raw[line_end + 1 :]
    else:
        header = json.loads(raw)  # version 1: the body is a string in the document
        if not isinstance(header, dict) or not isinstance(header.get("body"), str):
            raise ValueError("page file without a body")
        body = header["body"].encode()
    return _checked(header, body)


def load_header(head: bytes) -> tuple[StoredPage, int]:
    """A version 2 page file's header from its first bytes, without its body (``body`` is empty),
    and the offset its body starts at: a big page can then be streamed from the file as it is."""
    line_end = head.find(b"\n", len(_MAGIC)) if head.startswith(_MAGIC) else -1
    if line_end < 0:
        raise ValueError("not a version 2 page file, or its header line is longer than was read")
    return _checked(json.loads(head[len(_MAGIC) : line_end]), b""), line_end + 1


def _checked(header: Any, body: bytes) -> StoredPage:
    if not isinstance(header, dict):
        raise ValueError("page header is not an object")
    kind, url, fetched_at = header.get("kind"), header.get("url"), header.get("fetched_at")
    etag, last_modified = header.get("etag"), header.get("last_modified")
    if kind not in _KINDS or not isinstance(url, str):
        raise ValueError(f"page header has no valid kind and url: {kind!r}, {url!r}")
    if not isinstance(fetched_at, int | float) or isinstance(fetched_at, bool):
        raise ValueError(f"page header has no valid fetched_at: {fetched_at!r}")
    for value in (etag, last_modified):
        if value is not None and not isinstance(value, str):
            raise ValueError(f"page header has a validator that is not a string: {value!r}")
    return StoredPage(kind, url, float(fetched_at), etag, last_modified, body)
