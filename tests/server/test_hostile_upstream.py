"""A hostile upstream, through the real proxy: values the parsers and the HTTP client cannot take.

Each is answered like any upstream failure: the last good page, stale (with a header that encodes
safely), or a one-line 502 — never a 500, never another document served in the page's place.
"""

from __future__ import annotations

import json

import pytest

from tests.support.fake_index import FakeIndex
from tests.support.stack import JSON, MakeStack, Stack, single_line, wheel
from tests.support.upstream import Fault

FAR = "far-1.0-py3-none-any.whl"
HUGE = "9" * 5000  # past Python's int-string limit (4300 digits)
HTML = "text/html; charset=utf-8"


def _index() -> FakeIndex:
    return FakeIndex.from_files({"far": [wheel(FAR, ["idna"])]})


def _html(anchor: str, head: str = "") -> bytes:
    return f"<html><head>{head}</head><body>{anchor}</body></html>".encode()


# (page body, its content type): each made the proxy answer 500 on every request before.
_HOSTILE = {
    "href": (_html(f'<a href="http://[x/{FAR}">{FAR}</a>'), HTML),
    "base-href": (_html(f'<a href="{FAR}">{FAR}</a>', '<base href="http://[x">'), HTML),
    "repository-version": (
        _html(f'<a href="{FAR}">{FAR}</a>', f'<meta name="pypi:repository-version" content="{HUGE}">'),
        HTML,
    ),
    "api-version": (json.dumps({"meta": {"api-version": HUGE}, "files": []}).encode(), JSON),
    "non-latin-1 reason": (json.dumps({"meta": {"api-version": "€.0"}, "files": []}).encode(), JSON),
    "version in file name": (
        json.dumps({"files": [{"filename": f"far-{HUGE}-py3-none-any.whl", "url": FAR}]}).encode(),
        JSON,
    ),
}


def _stack(make_stack: MakeStack) -> Stack:
    return make_stack(_index(), route={"page_ttl": 0.0})


@pytest.mark.parametrize("hostile", list(_HOSTILE))
def test_a_hostile_page_leaves_the_last_good_page_in_service(make_stack: MakeStack, hostile: str) -> None:
    stack = _stack(make_stack)
    good = stack.client.get(stack.page("far"))
    assert good.status_code == 200 and good.headers["x-wheelmeld-cache"] == "fresh"
    body, content_type = _HOSTILE[hostile]
    stack.upstream.inject_fault("/far/", Fault(body=body, content_type=content_type))
    stale = stack.client.get(stack.page("far"))
    assert stale.status_code == 200, stale.text
    assert stale.headers["x-wheelmeld-cache"] == "stale"
    assert stale.text == good.text, "the last good page, not whatever the hostile one parsed as"
    reason = stale.headers["x-wheelmeld-stale"]
    assert reason.isascii() and reason.isprintable() and "unreadable" in reason, reason


@pytest.mark.parametrize("hostile", list(_HOSTILE))
def test_a_hostile_page_never_cached_is_a_one_line_502(make_stack: MakeStack, hostile: str) -> None:
    stack = _stack(make_stack)
    body, content_type = _HOSTILE[hostile]
    stack.upstream.inject_fault("/far/", Fault(body=body, content_type=content_type))
    response = stack.client.get(stack.page("far"))
    assert response.status_code == 502, response.text
    assert single_line(response.text), response.text
    assert response.text.isprintable() or response.text.endswith("\n")


def test_an_unreadable_optional_value_is_dropped_and_the_page_served(make_stack: MakeStack) -> None:
    # The parsers' rule for optional fields: an odd value is dropped, the file stays installable.
    stack = _stack(make_stack)
    body = _html(f'<a href="{FAR}" data-size="{HUGE}" data-upload-time="{HUGE}">{FAR}</a>')
    stack.upstream.inject_fault("/far/", Fault(body=body, content_type=HTML))
    response = stack.client.get(stack.page("far"), headers={"Accept": JSON})
    assert response.status_code == 200, response.text
    assert response.headers["x-wheelmeld-cache"] == "fresh"
    (entry,) = response.json()["files"]
    assert entry["filename"] == FAR and "size" not in entry and "upload-time" not in entry


def test_a_project_page_with_a_bad_link_is_not_served_as_a_project_list(make_stack: MakeStack) -> None:
    # An HTML project page the page parser refuses once fell back to the list parser, which reads
    # only anchor texts: the proxy then served (and cached) the page as a list of "projects".
    stack = _stack(make_stack)
    body, content_type = _HOSTILE["href"]
    stack.upstream.inject_fault("/far/", Fault(body=body, content_type=content_type))
    response = stack.client.get(stack.page("far"), headers={"Accept": JSON})
    assert response.status_code == 502, response.text


@pytest.mark.parametrize(
    "href",
    [
        # The fragment swallows the path: the file URL is the origin alone, its .metadata URL
        # "http://127.0.0.1:PORT.metadata" has a port httpx refuses (httpx.InvalidURL).
        "{origin}#@upstream.example/" + FAR,
        "http://xn--a.example/" + FAR,  # an IDNA label the idna codec refuses (a UnicodeError)
        "{origin}/" + "a" * 70000 + "/" + FAR,  # "URL too long"
    ],
)
def test_file_links_the_http_client_cannot_use_are_502(make_stack: MakeStack, href: str) -> None:
    stack = make_stack(_index(), route={"page_ttl": 3600.0})
    link = href.format(origin=stack.upstream.url, FAR=FAR)
    body = _html(f'<a href="{link}">{FAR}</a>')
    stack.upstream.inject_fault("/far/", Fault(body=body, content_type=HTML))
    assert stack.client.get(stack.page("far")).status_code == 200
    for suffix in (".metadata", ""):
        response = stack.client.get(stack.file("far", FAR, suffix))
        assert response.status_code == 502, (suffix, response.text)
        assert single_line(response.text), response.text
