"""PEP 503 HTML simple pages -> the page model, with the quirks real indexes (PyTorch's) have.

Uses the stdlib ``html.parser`` as pip does, which unescapes entities in attributes and text.
Handles relative, root-relative and absolute hrefs, ``<base href>``, ``%2B`` in hrefs, hash
fragments, PEP 592/658/714 ``data-*`` attributes, PEP 629 / 708 / 792 ``<meta>`` tags, and PyTorch's
non-standard ``data-upload-time`` (kept as PEP 700 ``upload_time``). Anchors that are not
files (``../``, home pages, another file's sidecars) are ignored; files of any kind are kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import unescape
from urllib.parse import unquote, urljoin, urlsplit

from packaging.utils import canonicalize_name

from ._values import (
    core_metadata_value,
    hashes_from_fragment,
    is_plain_filename,
    major_version,
    plus_in_path,
    resolve_http_url,
    size_value,
    upload_time_value,
    yanked_value,
)
from .errors import NoProjectName, PageParseError
from .html_scan import PlainParser, scan_plain
from .model import DistFile, ProjectList, ProjectPage, versions_from_files

__all__ = ["parse_html_project_list", "parse_html_project_page", "project_name_from_url"]

# An anchor of a project page is a file of the project (PEP 503) when its name has an extension,
# known or not: a file the proxy does not understand (a PEP 825 ``variants.json``, a format of the
# future) is listed and served as it is, never dropped. Not files of their own: sidecars of another
# file (its ``.metadata``, its GPG ``.asc``, which the proxy serves or drops itself, and ``.sha256``,
# which names the cache's own record of a file's hash), ``../`` and home-page links.
_SIDECAR_SUFFIXES = (".metadata", ".asc", ".sha256")


@dataclass(slots=True)
class _Anchor:
    attrs: dict[str, str | None]
    text: list[str] = field(default_factory=list)


class _SimpleParser(PlainParser):
    """Collects anchors, the first ``<base href>`` and the ``pypi:*`` meta tags of one page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[_Anchor] = []
        self.base: str | None = None
        self.meta: dict[str, list[str]] = {}
        self._open: _Anchor | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            # An unclosed <a> ends where the next one starts, as browsers treat it.
            self._open = _Anchor(dict(attrs))
            self.anchors.append(self._open)
        elif tag == "base" and self.base is None:
            href = dict(attrs).get("href")
            if href:
                self.base = href  # Only the first <base href> counts (HTML spec).
        elif tag == "meta":
            values = dict(attrs)
            name, content = values.get("name"), values.get("content")
            if name and name.startswith("pypi:") and content is not None:
                self.meta.setdefault(name, []).append(content)

    def handle_element(self, tag: str, attrs: list[tuple[str, str | None]], text: str) -> None:
        if tag == "a":
            self.anchors.append(_Anchor(dict(attrs), [text] if text else []))
            self._open = None
        else:
            super().handle_element(tag, attrs, text)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag == "a":
            self._open = None

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open.text.append(data)


def _run(text: str, page_url: str) -> tuple[_SimpleParser, str]:
    parser = _SimpleParser()
    if not scan_plain(text, parser):
        try:
            parser.feed(text)
            parser.close()
        except (AssertionError, ValueError) as exc:  # html.parser's own failures on hopeless markup
            raise PageParseError(f"unreadable HTML page {page_url!r}: {exc}") from exc
    _check_repository_version(parser.meta.get("pypi:repository-version", []), page_url)
    base = urljoin(page_url, parser.base) if parser.base else page_url
    return parser, base


def _check_repository_version(values: list[str], page_url: str) -> None:
    """PEP 629: refuse a major version we do not speak; any 1.x is fine."""
    for value in values:
        major = major_version(value)
        if major is None:
            raise PageParseError(f"bad pypi:repository-version {value[:40]!r} on {page_url!r}")
        if major != 1:
            raise PageParseError(f"unsupported pypi:repository-version {value!r} on {page_url!r}")


def _is_dist_name(name: str) -> bool:
    stem, dot, suffix = name.rpartition(".")
    return (
        is_plain_filename(name)
        and bool(dot and stem and suffix)
        and not name.lower().endswith(_SIDECAR_SUFFIXES)
    )


def _dist_file(anchor: _Anchor, base: str) -> DistFile | None:
    attrs = anchor.attrs
    href = attrs.get("href")
    if not href:
        return None
    resolved = resolve_http_url(base, href.strip())
    # A link to a directory is a project or a folder (a project list's ``cal.exe/``), never a file.
    if resolved is None or resolved[2].endswith("/"):
        return None
    url, fragment, path = resolved
    text = "".join(anchor.text).strip()
    # PEP 503 says the text is the file name; PyTorch's text has '+' where its href has %2B.
    if not _is_dist_name(text):
        text = unquote(path.rpartition("/")[2])
        if not _is_dist_name(text):
            return None
    filename = text
    # PEP 714: the new attribute wins; the PEP 658 spelling is only a fallback.
    metadata_attr = (
        "data-core-metadata"
        if "data-core-metadata" in attrs
        else "data-dist-info-metadata"
        if "data-dist-info-metadata" in attrs
        else None
    )
    gpg = attrs.get("data-gpg-sig")
    size = attrs.get("data-size")  # Not standard: written by our own renderer, kept across proxies.
    return DistFile(
        filename=filename,
        url=plus_in_path(url),
        hashes=hashes_from_fragment(fragment),
        requires_python=attrs.get("data-requires-python") or None,
        yanked=yanked_value(attrs["data-yanked"] or "") if "data-yanked" in attrs else False,
        # A bare or empty attribute still says "a .metadata file exists": True.
        core_metadata=core_metadata_value(attrs[metadata_attr] or "true") if metadata_attr else False,
        size=size_value(size),
        upload_time=upload_time_value(attrs.get("data-upload-time")),
        gpg_sig=None if gpg is None else gpg.strip().lower() == "true",
    )


def project_name_from_url(page_url: str) -> str:
    """The canonical project name a project page URL ends with (``.../simple/Foo_Bar/`` -> ``foo-bar``)."""
    segments = [unquote(s) for s in urlsplit(page_url).path.split("/") if s]
    if not segments:
        raise NoProjectName(f"no project name in page URL {page_url!r}")
    return canonicalize_name(segments[-1])


def parse_html_project_page(text: str, page_url: str) -> ProjectPage:
    """Parse a decoded PEP 503 project page fetched from ``page_url``."""
    parser, base = _run(text, page_url)
    files = tuple(f for f in (_dist_file(a, base) for a in parser.anchors) if f is not None)
    status = parser.meta.get("pypi:project-status")
    reason = parser.meta.get("pypi:project-status-reason")
    return ProjectPage(
        name=project_name_from_url(page_url),
        files=files,
        versions=versions_from_files(f.filename for f in files),
        status=status[0].strip() if status else None,
        status_reason=reason[0] if reason and status else None,  # PEP 792: a reason needs a status
        tracks=tuple(parser.meta.get("pypi:tracks", ())),
        alternate_locations=tuple(parser.meta.get("pypi:alternate-locations", ())),
    )


# A project list is nothing but anchors, and the public index's has 700,000 of them: html.parser took
# 37 s over it, these expressions under half a second. Only the anchors' text and ``href`` are read
# (PEP 503: "the text of the anchor tag MUST match the final path component of the URL").
_LIST_ANCHOR = re.compile(r"<a(?=[\s>])([^>]*)>([^<]*)", re.IGNORECASE)
_HREF = re.compile(r"""\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.IGNORECASE)
_HEAD_END = re.compile(r"<a[\s>]|</head\s*>", re.IGNORECASE)


def parse_html_project_list(text: str, page_url: str) -> ProjectList:
    """Parse a decoded PEP 503 root page: one anchor per project, its text the project name
    (the last segment of its ``href`` when the text is empty)."""
    head = _HEAD_END.search(text)
    # The head, before the first anchor, goes through html.parser: PEP 629's version check, <base>.
    _parser, base = _run(text[: head.start() if head else len(text)], page_url)
    names: list[str] = []
    for match in _LIST_ANCHOR.finditer(text):
        name = unescape(match[2]).strip()
        if not name:
            href = _HREF.search(match[1])
            if href is None:
                continue
            target = unescape(next(g for g in href.groups() if g is not None))
            name = unquote(urlsplit(urljoin(base, target)).path.rstrip("/").rpartition("/")[2])
        if name:
            names.append(name)
    return ProjectList(projects=tuple(names))
