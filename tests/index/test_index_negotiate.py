"""Accept / ?format= negotiation for simple pages (PEP 691), as a table."""

from __future__ import annotations

import pytest

from proxy.index.negotiate import HTML_TEXT, HTML_V1, JSON_V1, NoAcceptableFormat, choose_content_type

UV_ACCEPT = f"{JSON_V1}, {HTML_V1};q=0.2, {HTML_TEXT};q=0.01"
PIP_ACCEPT = f"{JSON_V1}, {HTML_V1}; q=0.1, {HTML_TEXT}; q=0.01"


@pytest.mark.parametrize(
    ("accept", "fmt", "expected"),
    [
        # Nothing asked: HTML.
        (None, None, HTML_TEXT),
        ("", None, HTML_TEXT),
        ("   ", None, HTML_TEXT),
        ("*/*", None, HTML_TEXT),
        ("*", None, HTML_TEXT),
        ("garbage-without-slash", None, HTML_TEXT),
        # Real installers.
        (UV_ACCEPT, None, JSON_V1),
        (PIP_ACCEPT, None, JSON_V1),
        # Exact types.
        (JSON_V1, None, JSON_V1),
        (HTML_V1, None, HTML_V1),
        (HTML_TEXT, None, HTML_TEXT),
        ("TEXT/HTML", None, HTML_TEXT),
        ("application/vnd.pypi.simple.latest+json", None, JSON_V1),
        ("application/vnd.pypi.simple.latest+html", None, HTML_V1),
        # q-values decide.
        (f"{JSON_V1};q=0.5, {HTML_TEXT}", None, HTML_TEXT),
        (f"{JSON_V1};q=0.5, {HTML_V1};q=0.6", None, HTML_V1),
        (f"{HTML_TEXT};q=0.1, {JSON_V1};q=0.2", None, JSON_V1),
        # Equal q, both named: JSON v1 > HTML v1 > text/html.
        (f"{HTML_TEXT}, {JSON_V1}", None, JSON_V1),
        (f"{HTML_TEXT}, {HTML_V1}", None, HTML_V1),
        (f"{HTML_TEXT};q=0.5, {HTML_V1};q=0.5, {JSON_V1};q=0.5", None, JSON_V1),
        # Equal q, one named and others by wildcard: the named one.
        (f"{HTML_TEXT}, */*", None, HTML_TEXT),
        (f"{JSON_V1}, */*", None, JSON_V1),
        (f"{HTML_V1}, */*", None, HTML_V1),
        # Wildcards only: the default order.
        ("application/*", None, HTML_V1),
        ("text/*", None, HTML_TEXT),
        ("text/*;q=0.3, application/*;q=0.4", None, HTML_V1),
        # Most specific range wins over a wildcard's q.
        (f"*/*;q=0.9, {HTML_TEXT};q=0.1", None, HTML_V1),
        (f"application/*;q=0, {JSON_V1}", None, JSON_V1),
        (f"*/*, {HTML_TEXT};q=0, {HTML_V1};q=0", None, JSON_V1),
        # Odd but readable headers.
        (f"{JSON_V1} ; q=1.0 ; level=1", None, JSON_V1),
        (f"{JSON_V1};q=abc, {HTML_TEXT};q=0.1", None, HTML_TEXT),
        (f"{JSON_V1};q=2, {HTML_TEXT};q=0.1", None, HTML_TEXT),
        # ?format= overrides the header.
        (HTML_TEXT, JSON_V1, JSON_V1),
        (UV_ACCEPT, HTML_TEXT, HTML_TEXT),
        ("image/png", HTML_V1, HTML_V1),
        (None, "application/vnd.pypi.simple.latest+json", JSON_V1),
        (None, "", HTML_TEXT),
    ],
)
def test_choose_content_type(accept: str | None, fmt: str | None, expected: str) -> None:
    assert choose_content_type(accept, fmt) == expected


@pytest.mark.parametrize(
    ("accept", "fmt"),
    [
        ("image/png", None),
        ("application/json", None),
        (f"{JSON_V1};q=0, {HTML_V1};q=0, {HTML_TEXT};q=0", None),
        ("*/*;q=0", None),
        ("text/plain, application/xml", None),
        (None, "json"),
        (HTML_TEXT, "application/vnd.pypi.simple.v2+json"),
    ],
)
def test_not_acceptable(accept: str | None, fmt: str | None) -> None:
    with pytest.raises(NoAcceptableFormat) as info:
        choose_content_type(accept, fmt)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)
