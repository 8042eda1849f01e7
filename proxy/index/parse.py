"""Parse an upstream simple-index page, HTML (PEP 503) or JSON (PEP 691), chosen by its content type.

The entry points the server calls. The ``Content-Type`` picks the parser and the charset; a
versioned PyPI media type of another major version is refused (PEP 691); an unknown or missing
type is sniffed from the body, since static file hosts often label pages ``application/octet-stream``.

They are also the one boundary for upstream content: whatever a page's values make the parsers (or
the ``urllib`` and ``packaging`` calls under them) raise leaves as ``PageParseError``, so the server
answers it like any upstream failure, never as a 500.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from ._values import decode_body, major_version, media_type
from .errors import PageParseError
from .model import ProjectList, ProjectPage
from .parse_html import parse_html_project_list, parse_html_project_page
from .parse_json import parse_json_project_list, parse_json_project_page

__all__ = ["PageParseError", "is_utf8_json", "parse_project_list", "parse_project_page"]

_PYPI_TYPE = re.compile(r"application/vnd\.pypi\.simple\.(v(?P<major>\d+)|latest)\+(?P<format>json|html)")
_JSON_TYPES = frozenset({"application/json"})
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})


def _is_json(body: str, kind: str, page_url: str) -> bool:
    versioned = _PYPI_TYPE.fullmatch(kind)
    if versioned:
        major = versioned["major"]
        if major is not None and major_version(major) != 1:
            raise PageParseError(f"unsupported page type {kind!r} from {page_url!r}")
        return versioned["format"] == "json"
    if kind in _JSON_TYPES:
        return True
    if kind in _HTML_TYPES:
        return False
    return body.lstrip()[:1] in {"{", "["}


def is_utf8_json(content_type: str) -> bool:
    """The header says PEP 691 JSON (or plain JSON) in UTF-8, or no charset: JSON's own encoding.

    No sniffing, and never raises: a ``False`` only means "not known to be".
    """
    kind, charset = media_type(content_type)
    if charset is not None and charset.lower() not in ("utf-8", "utf8"):
        return False
    versioned = _PYPI_TYPE.fullmatch(kind)
    if versioned:
        return versioned["format"] == "json" and versioned["major"] in (None, "1")
    return kind in _JSON_TYPES


def _decode(body: bytes, content_type: str, page_url: str) -> tuple[str, bool]:
    kind, charset = media_type(content_type)
    text = decode_body(body, charset)
    return text, _is_json(text, kind, page_url)


_Parsed = TypeVar("_Parsed", ProjectPage, ProjectList)


def _parse(
    body: bytes,
    content_type: str,
    page_url: str,
    json_parser: Callable[[str, str], _Parsed],
    html_parser: Callable[[str, str], _Parsed],
) -> _Parsed:
    try:
        text, is_json = _decode(body, content_type, page_url)
        return (json_parser if is_json else html_parser)(text, page_url)
    except PageParseError:
        raise
    except (ValueError, OverflowError, RecursionError) as exc:
        # A value the parsers let through but urllib or packaging refuse (an href of "http://[x",
        # a version past int's digit limit): the page is as unusable as one that fails to parse.
        reason = " ".join(str(exc).split())[:200]
        raise PageParseError(f"unreadable page {page_url!r}: {type(exc).__name__}: {reason}") from exc


def parse_project_page(body: bytes, content_type: str, page_url: str) -> ProjectPage:
    """Parse a project detail page fetched from ``page_url`` (relative links resolve against it)."""
    return _parse(body, content_type, page_url, parse_json_project_page, parse_html_project_page)


def parse_project_list(body: bytes, content_type: str, page_url: str) -> ProjectList:
    """Parse the root project list fetched from ``page_url``."""
    return _parse(body, content_type, page_url, parse_json_project_list, parse_html_project_list)
