"""Hostile page values: every field the parsers read, fuzzed; the only failure is ``PageParseError``.

The server answers a ``PageParseError`` like any upstream failure (the last good page, stale, or a
502); any other exception would be a 500 on every request while the upstream stays bad.
"""

from __future__ import annotations

import contextlib
import html
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.index import parse_project_list, parse_project_page
from proxy.index.errors import PageParseError

PAGE_URL = "http://127.0.0.1:8000/simple/far/"
HTML = "text/html; charset=utf-8"
JSON = "application/vnd.pypi.simple.v1+json"
WHEEL = "far-1.0-py3-none-any.whl"
HUGE = "9" * 5000  # past Python's int-string limit (4300 digits)

# Values known to have escaped as other exceptions, plus generated text of every kind.
_NASTY = st.sampled_from(
    [
        HUGE,
        "1." + HUGE,
        HUGE + ".0",
        "²",
        "١",
        "http://[x",
        "http://[x/far-1.0-py3-none-any.whl",
        "https://[::1",
        "http://127.0.0.1:99999999999999999999/f.whl",
        "http://127.0.0.1:8000#@upstream.example/f.whl",
        "\x00",
        "\ud800",
        "sha256=" + "a" * 64,
        "far-" + HUGE + "-py3-none-any.whl",
        "far-1.0-py3-none-any.whl\n",
        "far-1.0-py3-none-any.whl" + "x" * 300 + ".whl",
        "-1",
        "1e400",
        "",
    ]
)
_TEXT = st.one_of(_NASTY, st.text(max_size=40))
_JSON_VALUE = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True),
        _TEXT,
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_TEXT, inner, max_size=3)),
    max_leaves=6,
)

_HTML_ATTRS = (
    "href",
    "data-size",
    "data-requires-python",
    "data-yanked",
    "data-core-metadata",
    "data-dist-info-metadata",
    "data-upload-time",
    "data-gpg-sig",
)
_META_NAMES = (
    "pypi:repository-version",
    "pypi:project-status",
    "pypi:project-status-reason",
    "pypi:tracks",
    "pypi:alternate-locations",
)
_JSON_FILE_KEYS = (
    "filename",
    "url",
    "hashes",
    "size",
    "requires-python",
    "yanked",
    "core-metadata",
    "dist-info-metadata",
    "upload-time",
    "gpg-sig",
)
_JSON_PAGE_KEYS = ("name", "versions", "project-status", "tracks", "alternate-locations", "files", "projects")


def _survives(parse: Callable[[], object]) -> None:
    with contextlib.suppress(PageParseError):
        parse()


def _html_page(attrs: dict[str, str], text: str, base: str | None, meta: dict[str, str]) -> bytes:
    head = "".join(f'<meta name="{n}" content="{html.escape(v)}">' for n, v in meta.items())
    if base is not None:
        head += f'<base href="{html.escape(base)}">'
    link = " ".join(f'{k}="{html.escape(v)}"' for k, v in attrs.items())
    page = f"<html><head>{head}</head><body><a {link}>{html.escape(text)}</a></body></html>"
    return page.encode("utf-8", "surrogatepass")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    attrs=st.dictionaries(st.sampled_from(_HTML_ATTRS), _TEXT, max_size=4),
    text=st.one_of(st.just(WHEEL), _TEXT),
    base=st.one_of(st.none(), _TEXT),
    meta=st.dictionaries(st.sampled_from(_META_NAMES), _TEXT, max_size=2),
)
def test_hostile_html_values_raise_only_page_parse_error(
    attrs: dict[str, str], text: str, base: str | None, meta: dict[str, str]
) -> None:
    attrs.setdefault("href", WHEEL)
    body = _html_page(attrs, text, base, meta)
    _survives(lambda: parse_project_page(body, HTML, PAGE_URL))
    _survives(lambda: parse_project_list(body, HTML, PAGE_URL))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    entry=st.dictionaries(st.sampled_from(_JSON_FILE_KEYS), _JSON_VALUE, max_size=5),
    page=st.dictionaries(st.sampled_from(_JSON_PAGE_KEYS), _JSON_VALUE, max_size=2),
    api_version=_JSON_VALUE,
)
def test_hostile_json_values_raise_only_page_parse_error(
    entry: dict[str, Any], page: dict[str, Any], api_version: object
) -> None:
    entry = {"filename": WHEEL, "url": WHEEL, **entry}
    data = {"files": [entry], **page, "meta": {"api-version": api_version}}
    body = json.dumps(data).encode("utf-8", "surrogatepass")
    _survives(lambda: parse_project_page(body, JSON, PAGE_URL))
    _survives(lambda: parse_project_list(body, JSON, PAGE_URL))


@settings(max_examples=200, deadline=None)
@given(content_type=st.one_of(_TEXT, _TEXT.map(lambda v: f"application/vnd.pypi.simple.v{v}+json")))
def test_hostile_content_types_raise_only_page_parse_error(content_type: str) -> None:
    body = json.dumps({"meta": {"api-version": "1.0"}, "files": []}).encode()
    _survives(lambda: parse_project_page(body, content_type, PAGE_URL))


# -- the values measured escaping, one by one -------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(_html_page({"href": WHEEL, "data-size": HUGE}, WHEEL, None, {}), HTML, id="data-size"),
        pytest.param(_html_page({"href": "http://[x"}, WHEEL, None, {}), HTML, id="href"),
        pytest.param(_html_page({"href": WHEEL}, WHEEL, "http://[x", {}), HTML, id="base-href"),
        pytest.param(
            _html_page({"href": WHEEL}, WHEEL, None, {"pypi:repository-version": HUGE}),
            HTML,
            id="repo-version",
        ),
        pytest.param(json.dumps({"meta": {"api-version": HUGE}}).encode(), JSON, id="api-version"),
        pytest.param(b"{}", f"application/vnd.pypi.simple.v{HUGE}+json", id="content-type-version"),
        pytest.param(
            json.dumps({"files": [{"filename": f"far-{HUGE}-py3-none-any.whl", "url": "f.whl"}]}).encode(),
            JSON,
            id="version-in-file-name",
        ),
    ],
)
def test_measured_hostile_values(body: bytes, content_type: str) -> None:
    _survives(lambda: parse_project_page(body, content_type, PAGE_URL))
