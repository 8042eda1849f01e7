"""Rendering a fake simple index's pages (PEP 503 HTML, PEP 691 JSON, PEP 658/700/714 fields).

Pure functions used by ``tests.support.upstream``: byte ranges (RFC 9110), PEP 691 content
negotiation, conditional requests, and the four page renderers.
"""

from __future__ import annotations

import contextlib
import html
import json
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any, Literal, Protocol
from urllib.parse import quote

from packaging.utils import canonicalize_name, parse_wheel_filename

from tests.support.fake_index import FakeFile

__all__ = [
    "HTML_V1",
    "JSON",
    "LAST_MODIFIED",
    "TEXT_HTML",
    "PageOptions",
    "negotiate",
    "not_modified",
    "parse_range",
    "project_html",
    "project_json",
    "root_html",
    "root_json",
]

JSON = "application/vnd.pypi.simple.v1+json"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
TEXT_HTML = "text/html"
# The advertised hashes of a file (the server computes and caches them).
_Hashes = Callable[[FakeFile], dict[str, str]]
# Pages never change while a test runs, so one fixed date is an honest Last-Modified.
LAST_MODIFIED = parsedate_to_datetime("Thu, 16 Jan 2025 08:00:00 GMT")


class PageOptions(Protocol):
    """The knobs a renderer reads (``UpstreamOptions`` has them)."""

    @property
    def hashes(self) -> bool: ...
    @property
    def pep658(self) -> bool: ...
    @property
    def advertise_pep658(self) -> bool: ...
    @property
    def upload_time_attr(self) -> bool: ...


def parse_range(value: str | None, size: int) -> tuple[int, int] | Literal["unsatisfiable"] | None:
    """(first, last) byte of a single ``bytes=`` range; ``None`` to ignore it (RFC 9110 §14.2)."""
    if not value or not value.startswith("bytes=") or "," in value:
        return None
    first, sep, last = value[len("bytes=") :].strip().partition("-")
    if not sep or not (first or last) or not (first + last).isdigit():
        return None
    if not first:  # suffix range: the last N bytes
        count = int(last)
        if count == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - count), size - 1
    start = int(first)
    end = size - 1 if not last else min(int(last), size - 1)
    if last and int(last) < start:
        return None
    if start >= size:
        return "unsatisfiable"
    return start, end


def negotiate(accept: str) -> str:
    """PEP 691 content negotiation with q-values; ``text/html`` when nothing matches."""
    # Ties (``*/*``) go to plain HTML: what a client that asks for nothing in particular expects.
    offers = (TEXT_HTML, HTML_V1, JSON)
    aliases = {
        "application/vnd.pypi.simple.latest+json": JSON,
        "application/vnd.pypi.simple.latest+html": HTML_V1,
    }
    best, best_q = TEXT_HTML, 0.0
    for item in accept.split(","):
        media, *params = (p.strip() for p in item.split(";"))
        q = 1.0
        for param in params:
            key, _, val = param.partition("=")
            if key.strip() == "q":
                try:
                    q = float(val)
                except ValueError:
                    q = 0.0
        media = aliases.get(media.lower(), media.lower())
        matches = [
            o for o in offers if media in (o, "*/*") or (media.endswith("/*") and o.startswith(media[:-1]))
        ]
        if matches and q > best_q:
            best, best_q = matches[0], q
    return best


def not_modified(headers: Mapping[str, str], etag: str) -> bool:
    if "if-none-match" in headers:
        tags = [t.strip().removeprefix("W/") for t in headers["if-none-match"].split(",")]
        return "*" in tags or etag in tags
    since = headers.get("if-modified-since")
    if since:
        try:
            return parsedate_to_datetime(since) >= LAST_MODIFIED
        except (TypeError, ValueError):
            return False
    return False


# --- pure helpers: rendering -------------------------------------------------------------------------


def root_html(names: list[str]) -> bytes:
    links = "".join(f'    <a href="{quote(n)}/">{html.escape(n)}</a><br/>\n' for n in names)
    return f"<!DOCTYPE html>\n<html>\n  <body>\n{links}  </body>\n</html>\n".encode()


def root_json(names: list[str]) -> bytes:
    payload = {"meta": {"api-version": "1.1"}, "projects": [{"name": n} for n in names]}
    return json.dumps(payload, indent=1).encode()


def project_html(
    project: str, links: list[tuple[FakeFile, str]], options: PageOptions, hashes: _Hashes
) -> bytes:
    rows = []
    for file, href in links:
        advertised = hashes(file) if options.hashes else {}
        fragment = f"#sha256={advertised['sha256']}" if "sha256" in advertised else ""
        attrs = [f'href="{html.escape(href + fragment)}"']
        if file.requires_python:
            attrs.append(f'data-requires-python="{html.escape(file.requires_python)}"')
        meta_hash = file.metadata_sha256() if options.pep658 and options.advertise_pep658 else None
        if meta_hash:
            attrs.append(f'data-dist-info-metadata="sha256={meta_hash}"')
            attrs.append(f'data-core-metadata="sha256={meta_hash}"')
        if file.yanked is not False:
            reason = "" if file.yanked is True else str(file.yanked)
            attrs.append(f'data-yanked="{html.escape(reason)}"')
        if options.upload_time_attr and file.upload_time:
            attrs.append(f'data-upload-time="{html.escape(file.upload_time)}"')
        rows.append(f"    <a {' '.join(attrs)}>{html.escape(file.filename)}</a><br/>\n")
    title = html.escape(project)
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        '    <meta name="pypi:repository-version" content="1.0">\n'
        f"    <title>Links for {title}</title>\n  </head>\n  <body>\n"
        f"    <h1>Links for {title}</h1>\n{''.join(rows)}  </body>\n</html>\n"
    ).encode()


def project_json(
    project: str, links: list[tuple[FakeFile, str]], options: PageOptions, hashes: _Hashes
) -> bytes:
    files: list[dict[str, Any]] = []
    versions: set[str] = set()
    for file, href in links:
        with contextlib.suppress(ValueError):
            versions.add(str(parse_wheel_filename(file.filename)[1]))
        entry: dict[str, Any] = {
            "filename": file.filename,
            "url": href,
            "hashes": hashes(file) if options.hashes else {},
            "size": file.size if file.size is not None else file.body_size,
        }
        if file.requires_python:
            entry["requires-python"] = file.requires_python
        meta_hash = file.metadata_sha256() if options.pep658 and options.advertise_pep658 else None
        if meta_hash:
            entry["core-metadata"] = entry["dist-info-metadata"] = {"sha256": meta_hash}
        if file.upload_time:
            entry["upload-time"] = file.upload_time
        if file.yanked is not False:
            entry["yanked"] = file.yanked
        files.append(entry)
    payload = {
        "meta": {"api-version": "1.1"},
        "name": canonicalize_name(project),
        "versions": sorted(versions),
        "files": files,
    }
    return json.dumps(payload, indent=1).encode()
