"""PEP 691 JSON pages (with PEP 700 / 714 / 592 / 708 / 792 fields) parsed into the page model."""

from __future__ import annotations

import json

import pytest

from proxy.index import DistFile, PageParseError, parse_project_list, parse_project_page

PAGE = "https://upstream.example/simple/demo/"
JSON_V1 = "application/vnd.pypi.simple.v1+json"
SHA = "ab" * 32


def _page(files: list[object], **extra: object) -> bytes:
    return json.dumps({"meta": {"api-version": "1.1"}, "name": "Demo", "files": files, **extra}).encode()


def _file(**fields: object) -> dict[str, object]:
    return {
        "filename": "demo-1.0-py3-none-any.whl",
        "url": "demo-1.0-py3-none-any.whl",
        "hashes": {},
        **fields,
    }


def test_full_page() -> None:
    body = _page(
        [
            {
                "filename": "demo-1.0-py3-none-any.whl",
                "url": "https://files.example/d/demo-1.0-py3-none-any.whl",
                "hashes": {"sha256": SHA.upper(), "md5": "00"},
                "requires-python": ">=3.9",
                "yanked": False,
                "core-metadata": {"sha256": SHA},
                "dist-info-metadata": {"sha256": SHA},
                "size": 1234,
                "upload-time": "2023-10-04T16:53:01.826100Z",
                "gpg-sig": False,
            },
            {
                "filename": "demo-0.9.tar.gz",
                "url": "../../packages/demo-0.9.tar.gz",
                "hashes": {},
                "yanked": "security hole",
            },
        ],
        versions=["0.9", "1.0", "1.1"],
        **{
            "project-status": {"status": "deprecated", "reason": "see demo2"},
            "tracks": ["https://other.example/simple/demo/"],
            "alternate-locations": ["https://a.example/simple/demo/"],
        },
    )
    page = parse_project_page(body, JSON_V1, PAGE)
    assert page.name == "demo"
    assert page.versions == ("0.9", "1.0", "1.1")  # upstream's list wins over derivation
    assert page.status == "deprecated" and page.status_reason == "see demo2"
    assert page.tracks == ("https://other.example/simple/demo/",)
    assert page.alternate_locations == ("https://a.example/simple/demo/",)
    assert page.files == (
        DistFile(
            filename="demo-1.0-py3-none-any.whl",
            url="https://files.example/d/demo-1.0-py3-none-any.whl",
            hashes={"sha256": SHA, "md5": "00"},
            requires_python=">=3.9",
            yanked=False,
            core_metadata={"sha256": SHA},
            size=1234,
            upload_time="2023-10-04T16:53:01.826100Z",
            gpg_sig=False,
        ),
        DistFile(
            filename="demo-0.9.tar.gz",
            url="https://upstream.example/packages/demo-0.9.tar.gz",
            hashes={},
            requires_python=None,
            yanked="security hole",
            core_metadata=False,
        ),
    )


@pytest.mark.parametrize(
    ("fields", "attr", "value"),
    [
        ({"yanked": True}, "yanked", True),
        ({"yanked": ""}, "yanked", True),
        ({"yanked": "why"}, "yanked", "why"),
        ({"yanked": None}, "yanked", False),
        ({}, "core_metadata", False),
        ({"core-metadata": True}, "core_metadata", True),
        ({"core-metadata": False, "dist-info-metadata": True}, "core_metadata", False),
        ({"dist-info-metadata": {"sha256": "CD"}}, "core_metadata", {"sha256": "cd"}),
        (
            {"core-metadata": {"sha256": "aa"}, "dist-info-metadata": {"sha256": "bb"}},
            "core_metadata",
            {"sha256": "aa"},
        ),
        ({"core-metadata": {}}, "core_metadata", True),
        ({"requires-python": None}, "requires_python", None),
        ({"requires-python": ""}, "requires_python", None),
        ({"requires-python": 3}, "requires_python", None),
        ({"size": "12"}, "size", None),
        ({"size": True}, "size", None),
        ({"size": 0}, "size", 0),
        ({"upload-time": "2023-10-04T16:53:01.8261Z"}, "upload_time", "2023-10-04T16:53:01.826100Z"),
        ({"upload-time": "2023-10-04T16:53:01+02:00"}, "upload_time", "2023-10-04T14:53:01Z"),
        # Already canonical: kept as it is, once it is known to be a real moment.
        ({"upload-time": "2023-10-04T16:53:01.826100Z"}, "upload_time", "2023-10-04T16:53:01.826100Z"),
        ({"upload-time": "2023-10-04T16:53:01Z"}, "upload_time", "2023-10-04T16:53:01Z"),
        ({"upload-time": "2023-10-04T16:53:01.000000Z"}, "upload_time", "2023-10-04T16:53:01Z"),
        ({"upload-time": "2023-13-04T16:53:01Z"}, "upload_time", None),
        ({"upload-time": "2023-02-30T16:53:01.826100Z"}, "upload_time", None),
        ({"upload-time": "2023-10-04T24:00:00Z"}, "upload_time", None),
        ({"upload-time": "0999-10-04T16:53:01Z"}, "upload_time", None),
        ({"upload-time": " 2023-10-04T16:53:01Z "}, "upload_time", "2023-10-04T16:53:01Z"),
        ({"upload-time": "not a time"}, "upload_time", None),
        ({"upload-time": 1700000000}, "upload_time", None),
        ({"gpg-sig": "yes"}, "gpg_sig", None),
        ({"hashes": {"sha256": "zz", "unknownhash": "00"}}, "hashes", {}),
        ({"url": "demo-1.0-py3-none-any.whl#sha256=EE"}, "hashes", {"sha256": "ee"}),
        (
            {"url": "HTTPS://upstream.example/demo-1.0-py3-none-any.whl"},
            "url",
            "https://upstream.example/demo-1.0-py3-none-any.whl",
        ),
        ({"url": "demo-1.0-py3-none-any.whl#sha256=EE"}, "url", PAGE + "demo-1.0-py3-none-any.whl"),
        (
            {"url": "/x/demo-1.0+cpu-py3-none-any.whl"},
            "url",
            "https://upstream.example/x/demo-1.0%2Bcpu-py3-none-any.whl",
        ),
    ],
)
def test_fields(fields: dict[str, object], attr: str, value: object) -> None:
    page = parse_project_page(_page([_file(**fields)]), JSON_V1, PAGE)
    assert getattr(page.files[0], attr) == value


@pytest.mark.parametrize(
    ("meta", "ok"),
    [
        ({"api-version": "1.0"}, True),
        ({"api-version": "1.4"}, True),
        ({"api-version": "1.99"}, True),
        ({}, True),
    ],
)
def test_any_1x_api_version(meta: dict[str, str], ok: bool) -> None:
    body = json.dumps({"meta": meta, "name": "demo", "files": []}).encode()
    page = parse_project_page(body, JSON_V1, PAGE)
    assert (page.files, page.versions) == ((), ())


def test_versions_derived_when_absent() -> None:
    files = [
        _file(filename="demo-1.0-py3-none-any.whl"),
        _file(filename="demo-1.0.tar.gz"),
        _file(filename="demo-0.10-cp312-cp312-win_amd64.whl"),
        _file(filename="demo-0.9.zip"),
        _file(filename="demo-legacy.egg"),
    ]
    assert parse_project_page(_page(files), JSON_V1, PAGE).versions == ("0.9", "0.10", "1.0")


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b'{"meta": {"api-version": "1.1"}, "files": [', JSON_V1, "bad JSON"),
        (b"\x00\x01garbage", JSON_V1, "bad JSON"),
        (b"", "application/json", "bad JSON"),
        (b"[1, 2]", JSON_V1, "not an object"),
        (b'"text"', JSON_V1, "not an object"),
        (b'{"meta": {"api-version": "2.0"}, "name": "x", "files": []}', JSON_V1, "unsupported api-version"),
        (b'{"meta": {"api-version": "v1"}, "name": "x", "files": []}', JSON_V1, "bad api-version"),
        (b'{"meta": {"api-version": 1}, "name": "x", "files": []}', JSON_V1, "bad api-version"),
        (b'{"meta": [], "name": "x", "files": []}', JSON_V1, "'meta' is not an object"),
        (b'{"name": "x", "files": {}}', JSON_V1, "'files' is not a list"),
        (b'{"name": "x", "files": [{"url": "x-1.0.tar.gz"}]}', JSON_V1, "files[0] has no 'filename'"),
        (b'{"name": "x", "files": [{"filename": "x-1.0.tar.gz"}]}', JSON_V1, "has no 'url'"),
        (b'{"name": "x", "files": ["x-1.0.tar.gz"]}', JSON_V1, "files[0] is not an object"),
        (
            b'{"name": "x", "files": [{"filename": "a/b.whl", "url": "b.whl"}]}',
            JSON_V1,
            "not a plain file name",
        ),
        (
            b'{"name": "x", "files": [{"filename": "x.whl", "url": "x.whl", "hashes": []}]}',
            JSON_V1,
            "'hashes' is not an object",
        ),
        (
            b'{"name": "x", "files": [{"filename": "x.whl", "url": "file:///etc/x.whl"}]}',
            JSON_V1,
            "not an http",
        ),
        (
            b'{"name": "x", "files": [{"filename": "x.whl", "url": "ftp://host/x.whl"}]}',
            JSON_V1,
            "not an http",
        ),
        (
            b'{"name": "x", "files": [{"filename": "x\\\\y.whl", "url": "y.whl"}]}',
            JSON_V1,
            "not a plain file name",
        ),
        (
            b'{"name": "x", "files": [{"filename": "x\\u0000.whl", "url": "y.whl"}]}',
            JSON_V1,
            "not a plain file name",
        ),
        (b'{"name": "x", "files": [{"filename": "..", "url": "y.whl"}]}', JSON_V1, "not a plain file name"),
        (b'{"files": []}', "application/vnd.pypi.simple.v2+json", "unsupported page type"),
        (b"[" * 100_000, JSON_V1, "bad JSON"),
    ],
)
def test_bad_json(body: bytes, content_type: str, reason: str) -> None:
    with pytest.raises(PageParseError) as info:
        parse_project_page(body, content_type, PAGE)
    message = str(info.value)
    assert reason in message, message
    assert "\n" not in message
    if reason == "bad JSON":  # raised from the decoder's own error
        assert isinstance(info.value.__cause__, ValueError | RecursionError)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/octet-stream", _page([_file()])),
        ("", b"  \n" + _page([_file()])),
        ("application/json; charset=utf-8", _page([_file()])),
        ("application/vnd.pypi.simple.latest+json", _page([_file()])),
        (JSON_V1, b"\xef\xbb\xbf" + _page([_file()])),  # a byte-order mark
    ],
)
def test_json_recognized(content_type: str, body: bytes) -> None:
    assert len(parse_project_page(body, content_type, PAGE).files) == 1


def test_name_falls_back_to_page_url() -> None:
    body = b'{"meta": {"api-version": "1.0"}, "files": []}'
    assert (
        parse_project_page(body, JSON_V1, "https://upstream.example/simple/Some_Thing/").name == "some-thing"
    )


def test_project_list_json() -> None:
    body = json.dumps(
        {
            "meta": {"api-version": "1.0"},
            "projects": [{"name": "Jinja2", "_last-serial": 3}, {"name": "torch"}],
        }
    ).encode()
    assert parse_project_list(body, JSON_V1, "https://upstream.example/simple/").projects == (
        "Jinja2",
        "torch",
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"meta": {"api-version": "1.0"}}', "'projects' is not a list"),
        (b'{"projects": [{"name": ""}]}', "projects[0] has no 'name'"),
        (b'{"projects": ["torch"]}', "projects[0] has no 'name'"),
        (b'{"meta": {"api-version": "3.0"}, "projects": []}', "unsupported api-version"),
    ],
)
def test_bad_project_list(body: bytes, reason: str) -> None:
    with pytest.raises(PageParseError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        parse_project_list(body, JSON_V1, "https://upstream.example/simple/")
