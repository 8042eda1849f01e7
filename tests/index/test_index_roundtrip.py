"""parse -> render -> parse gives the same model, for both renderers (examples and a property)."""

from __future__ import annotations

import dataclasses
import json
import string
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.index import (
    HTML_TEXT,
    HTML_V1,
    JSON_V1,
    DistFile,
    ProjectList,
    ProjectPage,
    parse_project_list,
    parse_project_page,
    render_list_html,
    render_list_json,
    render_project_html,
    render_project_json,
    versions_from_files,
)
from proxy.index.render import file_html, file_json, join_project_html, join_project_json

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "pytorch-nightly-cu126.json"

# --- generated values in the form the parsers produce ------------------------------------------

_HEX = st.text("0123456789abcdef", min_size=1, max_size=64)
_NAME_CHARS = string.ascii_letters + string.digits + "._+!~&<>'\"=;%" + "éß"
_SUFFIXES = (".whl", ".tar.gz", ".zip", ".tar.bz2", ".egg")


@st.composite
def _filenames(draw: st.DrawFn) -> str:
    name = draw(st.text(_NAME_CHARS, min_size=1, max_size=20))
    middle = draw(st.text(_NAME_CHARS + " -", max_size=20))
    return f"{name}{middle}{draw(st.sampled_from(_SUFFIXES))}"


@st.composite
def _urls(draw: st.DrawFn, filename: str) -> str:
    host = draw(
        st.sampled_from(["http://127.0.0.1:8000", "https://upstream.example", "https://r2.example:8443"])
    )
    segments = draw(st.lists(st.text(string.ascii_letters + string.digits + "_-~+", min_size=1), max_size=3))
    return "/".join([host, *(quote(s, safe="") for s in [*segments, filename])])


_TIMES = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if d.microsecond else "%Y-%m-%dT%H:%M:%SZ"))
_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=30)
_NONBLANK = _TEXT.filter(lambda s: bool(s.strip()))


@st.composite
def dist_files(draw: st.DrawFn, json_only: bool = False) -> DistFile:
    filename = draw(_filenames())
    one_hash = st.one_of(st.just({}), st.builds(lambda h: {"sha256": h}, _HEX))
    many = st.dictionaries(st.sampled_from(["sha256", "sha512", "md5", "sha1", "blake2b"]), _HEX, max_size=3)
    return DistFile(
        filename=filename,
        url=draw(_urls(filename)),
        hashes=draw(many if json_only else one_hash),
        requires_python=draw(st.one_of(st.none(), _NONBLANK)),
        yanked=draw(st.one_of(st.booleans(), _NONBLANK)),
        core_metadata=draw(
            st.one_of(
                st.booleans(),
                st.builds(lambda h: {"sha256": h}, _HEX),
                *([many.filter(bool)] if json_only else []),
            )
        ),
        size=draw(st.one_of(st.none(), st.integers(min_value=0, max_value=2**53))),
        upload_time=draw(st.one_of(st.none(), _TIMES)),
        gpg_sig=draw(st.one_of(st.none(), st.booleans())),
    )


_PROJECT = st.from_regex(r"[a-z0-9]([a-z0-9]|-[a-z0-9]){0,12}", fullmatch=True)
_STATUS = st.one_of(
    st.tuples(st.none(), st.none()),
    st.tuples(
        st.sampled_from(["active", "archived", "quarantined", "deprecated"]), st.one_of(st.none(), _TEXT)
    ),
)


@st.composite
def project_pages(draw: st.DrawFn, json_only: bool = False) -> ProjectPage:
    files = tuple(draw(st.lists(dist_files(json_only), max_size=6)))
    status, reason = draw(_STATUS)
    return ProjectPage(
        name=draw(_PROJECT),
        files=files,
        versions=tuple(draw(st.lists(_TEXT)))
        if json_only
        else versions_from_files(f.filename for f in files),
        status=status,
        status_reason=reason,
        tracks=tuple(draw(st.lists(_TEXT, max_size=2))),
        alternate_locations=tuple(draw(st.lists(_TEXT, max_size=2))),
    )


def _page_url(page: ProjectPage) -> str:
    return f"https://mirror.example/simple/{page.name}/"


@settings(max_examples=150, deadline=None)
@given(project_pages())
def test_html_round_trip(page: ProjectPage) -> None:
    assert parse_project_page(render_project_html(page), HTML_TEXT, _page_url(page)) == page


@settings(max_examples=150, deadline=None)
@given(project_pages(json_only=True))
def test_json_round_trip(page: ProjectPage) -> None:
    assert parse_project_page(render_project_json(page), JSON_V1, _page_url(page)) == page


@settings(max_examples=60, deadline=None)
@given(project_pages())
def test_html_and_json_agree(page: ProjectPage) -> None:
    url = _page_url(page)
    from_html = parse_project_page(render_project_html(page), HTML_V1, url)
    from_json = parse_project_page(render_project_json(page), JSON_V1, url)
    assert from_html == from_json


@given(st.lists(st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zs")), min_size=1), max_size=8))
def test_project_list_round_trip(names: list[str]) -> None:
    lst = ProjectList(projects=tuple(names))
    url = "https://mirror.example/simple/"
    assert parse_project_list(render_list_json(lst), JSON_V1, url) == lst
    assert parse_project_list(render_list_html(lst), HTML_TEXT, url) == lst


# --- the PyTorch nightly index of the seed, as PyTorch's HTML writes it --------------------------


def _pytorch_html(project: str, filenames: list[str]) -> bytes:
    anchors = "".join(
        f'    <a href="/whl/nightly/cu126/{quote(name)}" data-upload-time="2025-01-16T0{i % 10}:00:00">'
        f"{name}</a><br/>\n"
        for i, name in enumerate(filenames)
    )
    head = f"<!DOCTYPE html>\n<html>\n  <body>\n    <h1>Links for {project}</h1>\n"
    return f"{head}{anchors}  </body>\n</html>\n".encode()


def _fixture_projects() -> dict[str, list[str]]:
    data = json.loads(FIXTURE.read_text())
    return {name: [w["filename"] for w in wheels] for name, wheels in data["projects"].items()}


def test_pytorch_fixture_pages_round_trip() -> None:
    for project, filenames in _fixture_projects().items():
        page_url = f"https://upstream.example/whl/nightly/cu126/{project.lower()}/"
        page = parse_project_page(_pytorch_html(project, filenames), "text/html", page_url)
        assert [f.filename for f in page.files] == filenames
        assert all("%2B" in f.url for f in page.files if "+" in f.filename)
        assert all(f.hashes == {} and f.upload_time and f.upload_time.endswith("Z") for f in page.files)
        for render, kind in ((render_project_html, HTML_TEXT), (render_project_json, JSON_V1)):
            again = parse_project_page(render(page), kind, "https://mirror.example/whl/nightly/cu126/x/")
            assert again == dataclasses.replace(page, name=again.name)
            assert again.name == ("x" if kind == HTML_TEXT else page.name)


_SERVED_HASHES = st.one_of(st.just({}), st.builds(lambda h: {"sha256": h}, _HEX))
_SERVED_CORE = st.one_of(st.booleans(), st.builds(lambda h: {"sha256": h}, _HEX))


@settings(max_examples=150, deadline=None)
@given(project_pages(json_only=True), st.data())
def test_file_fragments_render_as_the_served_copy(page: ProjectPage, data: st.DataObject) -> None:
    # How page_views serves a page (fragments of upstream's files with our link, hashes and
    # advertisement) against how it did (a copy of each with those, rendered): the same bytes.
    files = page.files
    served = [
        (quote(f.filename), data.draw(st.one_of(st.just(f.hashes), _SERVED_HASHES)), data.draw(_SERVED_CORE))
        for f in files
    ]
    pairs = list(zip(files, served, strict=True))
    copies = (dataclasses.replace(f, url=url, hashes=h, core_metadata=c) for f, (url, h, c) in pairs)
    copy = dataclasses.replace(page, files=tuple(copies))
    assert join_project_json(page, [file_json(f, *s) for f, s in pairs]) == render_project_json(copy)
    assert join_project_html(page, [file_html(f, *s) for f, s in pairs]) == render_project_html(copy)
