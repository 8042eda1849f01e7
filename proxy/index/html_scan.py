"""``html.parser``'s handler calls for a plain HTML page, at a fraction of its cost.

Simple pages are plain markup: a doctype, a few kinds of tags with double-quoted attributes, and
text. ``html.parser`` spent two thirds of parsing a 20,000-file page finding that out tag by tag; a
page that is plain from its first byte to its last is tokenized here with one expression and the
same handlers are called, with the same arguments, in the same order (``tests/index`` compares the
two on generated pages). Anything else (a comment, an unquoted or single-quoted attribute, an
upper-case name, a script, a tag outside ``_TAGS``, any white space but ASCII's) makes
``scan_plain`` give up before calling any handler, and the caller feeds ``html.parser`` instead.
"""

from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser

__all__ = ["PlainParser", "scan_plain"]

# Tags whose content html.parser reads as markup in every version: not script or style (raw
# text), not textarea or title (raw in newer versions; a title is scanned as one token instead).
_TAGS = frozenset({"a", "base", "body", "br", "h1", "head", "html", "meta"})
_SPACE = "[ \t\n\r\f]"
_ATTRS = f'((?:{_SPACE}+[a-z][a-z0-9-]*(?:="[^"<>]*")?)*){_SPACE}*'
_TOKEN = re.compile(
    rf"""([^<]+)
    |<a{_ATTRS}>([^<]*)</a{_SPACE}*>
    |<title>([^<]*)</title>
    |<([a-z][a-z0-9]*){_ATTRS}(/?)>
    |</([a-z][a-z0-9]*){_SPACE}*>
    |<!(DOCTYPE\ html)>""",
    re.VERBOSE,
)
_ATTR = re.compile(r'([a-z][a-z0-9-]*)(="[^"<>]*")?')


def _plain(text: str) -> list[re.Match[str]] | None:
    tokens = []
    end = 0
    for token in _TOKEN.finditer(text):
        if token.start() != end:
            return None
        tag = token[5] or token[7]
        if tag is not None and tag not in _TAGS:
            return None
        tokens.append(token)
        end = token.end()
    return tokens if end == len(text) else None


def _attrs(raw: str) -> list[tuple[str, str | None]]:
    # As html.parser gives them: value None when there is no '=', unescaped when not empty.
    if not raw:
        return []
    return [(name, unescape(value[2:-1]) if value else None) for name, value in _ATTR.findall(raw)]


class PlainParser(HTMLParser):
    """An ``HTMLParser`` that ``scan_plain`` can feed, with one more handler."""

    def handle_element(self, tag: str, attrs: list[tuple[str, str | None]], text: str) -> None:
        """``<tag attrs>text</tag>``: what ``html.parser`` calls for it, which a subclass may do in
        one step (a page is 20,000 anchors)."""
        self.handle_starttag(tag, attrs)
        if text:
            self.handle_data(text)
        self.handle_endtag(tag)


def scan_plain(text: str, parser: PlainParser) -> bool:
    """Call ``parser``'s handlers for ``text`` as ``feed`` + ``close`` would; False, having called
    none, when ``text`` is not plain markup."""
    tokens = _plain(text)
    if tokens is None:
        return False
    for token in tokens:
        data, a_attrs, a_text, title, tag, attrs, slash, end, decl = token.groups()
        if data is not None:
            parser.handle_data(unescape(data))
        elif a_attrs is not None:
            parser.handle_element("a", _attrs(a_attrs), unescape(a_text))
        elif tag is not None:
            if slash:
                parser.handle_startendtag(tag, _attrs(attrs))
            else:
                parser.handle_starttag(tag, _attrs(attrs))
        elif end is not None:
            parser.handle_endtag(end)
        elif title is not None:
            parser.handle_element("title", [], unescape(title))
        else:
            parser.handle_decl(decl)
    return True
