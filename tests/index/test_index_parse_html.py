"""PEP 503 HTML pages, with the quirks PyTorch's static index has, parsed into the page model."""

from __future__ import annotations

import pytest

from proxy.index import DistFile, PageParseError, parse_project_list, parse_project_page

PAGE = "https://upstream.example/whl/nightly/cu126/torch/"
TORCH = "torch-2.7.0.dev20250116+cu126-cp312-cp312-manylinux_2_28_x86_64.whl"
TORCH_HREF = "/whl/nightly/cu126/torch-2.7.0.dev20250116%2Bcu126-cp312-cp312-manylinux_2_28_x86_64.whl"
SHA = "0123456789abcdef" * 4


def _one(anchor: str, page_url: str = PAGE, head: str = "") -> DistFile:
    body = f"<!DOCTYPE html><html><head>{head}</head><body>{anchor}<br/></body></html>".encode()
    page = parse_project_page(body, "text/html", page_url)
    assert len(page.files) == 1, page.files
    return page.files[0]


PYTORCH_PAGE = f"""<!DOCTYPE html>
<html>
  <body>
    <h1>Links for torch</h1>
    <a href="{TORCH_HREF}" data-upload-time="2025-01-16T08:12:03">{TORCH}</a><br/>
    <a href="/whl/nightly/cu126/torch-2.7.0.dev20250116%2Bcu126-cp311-cp311-linux_aarch64.whl">torch-2.7.0.dev20250116+cu126-cp311-cp311-linux_aarch64.whl</a><br/>
    <a href="https://r2.upstream.example/whl/cu126/torch-2.5.1%2Bcu126-cp312-cp312-win_amd64.whl#sha256={SHA}">torch-2.5.1+cu126-cp312-cp312-win_amd64.whl</a><br/>
  </body>
</html>
"""  # noqa: E501


def test_pytorch_page() -> None:
    page = parse_project_page(PYTORCH_PAGE.encode(), "text/html", PAGE)
    assert page.name == "torch"
    assert [f.filename for f in page.files] == [
        TORCH,
        "torch-2.7.0.dev20250116+cu126-cp311-cp311-linux_aarch64.whl",
        "torch-2.5.1+cu126-cp312-cp312-win_amd64.whl",
    ]
    first, second, third = page.files
    assert first == DistFile(
        filename=TORCH,
        url="https://upstream.example" + TORCH_HREF,
        hashes={},
        requires_python=None,
        yanked=False,
        core_metadata=False,
        upload_time="2025-01-16T08:12:03Z",
    )
    assert second.hashes == {} and second.upload_time is None
    assert third.url == "https://r2.upstream.example/whl/cu126/torch-2.5.1%2Bcu126-cp312-cp312-win_amd64.whl"
    assert third.hashes == {"sha256": SHA}
    # PEP 700 versions derived from the file names, ascending.
    assert page.versions == ("2.5.1+cu126", "2.7.0.dev20250116+cu126")


@pytest.mark.parametrize(
    ("href", "page_url", "url"),
    [
        ("torch-1.0-py3-none-any.whl", PAGE, PAGE + "torch-1.0-py3-none-any.whl"),
        (
            "../../torch-1.0-py3-none-any.whl",
            PAGE,
            "https://upstream.example/whl/nightly/torch-1.0-py3-none-any.whl",
        ),
        (
            "/files/torch-1.0-py3-none-any.whl",
            PAGE,
            "https://upstream.example/files/torch-1.0-py3-none-any.whl",
        ),
        (
            "//cdn.example/t/torch-1.0-py3-none-any.whl",
            PAGE,
            "https://cdn.example/t/torch-1.0-py3-none-any.whl",
        ),
        (
            "http://other.example/torch-1.0-py3-none-any.whl",
            PAGE,
            "http://other.example/torch-1.0-py3-none-any.whl",
        ),
        # No trailing slash on the page URL: relative links resolve against its parent.
        ("x/torch-1.0-py3-none-any.whl", "https://upstream.example/simple/torch", None),
        # A literal '+' in a path is written %2B; in a query it is left alone.
        ("torch-1.0+cpu-py3-none-any.whl", PAGE, PAGE + "torch-1.0%2Bcpu-py3-none-any.whl"),
        ("torch-1.0-py3-none-any.whl?a=b+c", PAGE, PAGE + "torch-1.0-py3-none-any.whl?a=b+c"),
    ],
)
def test_href_resolution(href: str, page_url: str, url: str | None) -> None:
    f = _one(f'<a href="{href}">torch-1.0-py3-none-any.whl</a>', page_url)
    assert f.url == (url or "https://upstream.example/simple/x/torch-1.0-py3-none-any.whl")


def test_base_href() -> None:
    # Only the first <base href> counts, it resolves against the page URL, and applies to
    # anchors before it too.
    body = b"""<html><head></head><body>
      <a href="a-1.0.tar.gz">a-1.0.tar.gz</a>
      <base href="/mirror/files/"><base href="https://ignored.example/">
      <a href="a-2.0.tar.gz">a-2.0.tar.gz</a></body></html>"""
    page = parse_project_page(body, "text/html", "https://upstream.example/simple/a/")
    assert [f.url for f in page.files] == [
        "https://upstream.example/mirror/files/a-1.0.tar.gz",
        "https://upstream.example/mirror/files/a-2.0.tar.gz",
    ]


@pytest.mark.parametrize(
    ("anchor", "filename"),
    [
        # The anchor text names the file (PEP 503); PyTorch's text has '+' where its href has %2B.
        (f'<a href="{TORCH_HREF}">{TORCH}</a>', TORCH),
        # No text: the unquoted last path segment.
        (f'<a href="{TORCH_HREF}"></a>', TORCH),
        (f'<a href="{TORCH_HREF}"/>', TORCH),
        # Text that is no file name (a label): the path segment again.
        (f'<a href="{TORCH_HREF}">download</a>', TORCH),
        # Entities and surrounding whitespace in the text.
        ('<a href="x/a%26b-1.0.tar.gz">\n  a&amp;b-1.0.tar.gz </a>', "a&b-1.0.tar.gz"),
        # Mixed case kept as listed.
        (
            '<a href="Jinja2-3.1.4-py3-none-any.whl">Jinja2-3.1.4-py3-none-any.whl</a>',
            "Jinja2-3.1.4-py3-none-any.whl",
        ),
        ('<a href="X-1.0.ZIP">X-1.0.ZIP</a>', "X-1.0.ZIP"),
        # An unclosed anchor ends at the next one.
        ('<a href="b-1.0.tar.gz">b-1.0.tar.gz', "b-1.0.tar.gz"),
    ],
)
def test_filename(anchor: str, filename: str) -> None:
    assert _one(anchor).filename == filename


@pytest.mark.parametrize(
    "anchor",
    [
        '<a href="../">parent</a>',
        "<a>no href</a>",
        '<a href="">empty</a>',
        '<a href="https://upstream.example/">home</a>',
        '<a href="torch-1.0-py3-none-any.whl.metadata">torch-1.0-py3-none-any.whl.metadata</a>',
        '<a href="torch-1.0.tar.gz.asc">torch-1.0.tar.gz.asc</a>',
        '<a href="javascript:alert(1)">torch-1.0.tar.gz</a>',
        '<a href="mailto:x@upstream.example">x-1.0.tar.gz</a>',
        '<a href="x/..%2F..%2Fetc-1.0.tar.gz">../../etc-1.0.tar.gz</a>',
        '<a name="anchor-only">torch-1.0.tar.gz</a>',
    ],
)
def test_non_distribution_anchors_are_ignored(anchor: str) -> None:
    body = f"<html><body>{anchor}</body></html>".encode()
    assert parse_project_page(body, "text/html", PAGE).files == ()


@pytest.mark.parametrize(
    ("attrs", "field", "value"),
    [
        ('href="x-1.0.tar.gz#sha256=ABCDEF"', "hashes", {"sha256": "abcdef"}),
        ('href="x-1.0.tar.gz#md5=00ff"', "hashes", {"md5": "00ff"}),
        ('href="x-1.0.tar.gz#sha512=aa&amp;egg=x"', "hashes", {"sha512": "aa"}),
        ('href="x-1.0.tar.gz#sha256=nothex"', "hashes", {}),
        ('href="x-1.0.tar.gz#frobnicate=00"', "hashes", {}),
        ('href="x-1.0.tar.gz" data-requires-python="&gt;=3.8, &lt;4"', "requires_python", ">=3.8, <4"),
        ('href="x-1.0.tar.gz" data-requires-python=">=3.8"', "requires_python", ">=3.8"),
        ('href="x-1.0.tar.gz" data-requires-python=""', "requires_python", None),
        ('href="x-1.0.tar.gz"', "yanked", False),
        ('href="x-1.0.tar.gz" data-yanked', "yanked", True),
        ('href="x-1.0.tar.gz" data-yanked=""', "yanked", True),
        ('href="x-1.0.tar.gz" data-yanked="broken &amp; bad"', "yanked", "broken & bad"),
        ('href="x-1.0.tar.gz"', "core_metadata", False),
        ('href="x-1.0.tar.gz" data-core-metadata="true"', "core_metadata", True),
        ('href="x-1.0.tar.gz" data-core-metadata', "core_metadata", True),
        ('href="x-1.0.tar.gz" data-core-metadata="sha256=AB12"', "core_metadata", {"sha256": "ab12"}),
        ('href="x-1.0.tar.gz" data-core-metadata="weird"', "core_metadata", True),
        ('href="x-1.0.tar.gz" data-core-metadata="false"', "core_metadata", False),
        ('href="x-1.0.tar.gz" data-dist-info-metadata="sha256=cd"', "core_metadata", {"sha256": "cd"}),
        ('href="x-1.0.tar.gz" data-dist-info-metadata="true"', "core_metadata", True),
        # PEP 714: the new name wins whichever order they come in.
        (
            'href="x-1.0.tar.gz" data-dist-info-metadata="sha256=aa" data-core-metadata="sha256=bb"',
            "core_metadata",
            {"sha256": "bb"},
        ),
        (
            'href="x-1.0.tar.gz" data-core-metadata="true" data-dist-info-metadata="sha256=aa"',
            "core_metadata",
            True,
        ),
        ('href="x-1.0.tar.gz"', "gpg_sig", None),
        ('href="x-1.0.tar.gz" data-gpg-sig="true"', "gpg_sig", True),
        ('href="x-1.0.tar.gz" data-gpg-sig="false"', "gpg_sig", False),
        ('href="x-1.0.tar.gz" data-size="1234"', "size", 1234),
        ('href="x-1.0.tar.gz" data-size="-3"', "size", None),
        ('href="x-1.0.tar.gz" data-size="\u00b2"', "size", None),
        # PyTorch's data-upload-time, normalized to PEP 700 form in UTC.
        (
            'href="x-1.0.tar.gz" data-upload-time="2025-01-16T08:12:03Z"',
            "upload_time",
            "2025-01-16T08:12:03Z",
        ),
        ('href="x-1.0.tar.gz" data-upload-time="2025-01-16T08:12:03"', "upload_time", "2025-01-16T08:12:03Z"),
        (
            'href="x-1.0.tar.gz" data-upload-time="2025-01-16T09:12:03.5+01:00"',
            "upload_time",
            "2025-01-16T08:12:03.500000Z",
        ),
        (
            'href="x-1.0.tar.gz" data-upload-time="2025-01-16 08:12:03+00:00"',
            "upload_time",
            "2025-01-16T08:12:03Z",
        ),
        ('href="x-1.0.tar.gz" data-upload-time="1737015123"', "upload_time", "2025-01-16T08:12:03Z"),
        ('href="x-1.0.tar.gz" data-upload-time="2025-01-16"', "upload_time", "2025-01-16T00:00:00Z"),
        ('href="x-1.0.tar.gz" data-upload-time="yesterday"', "upload_time", None),
        ('href="x-1.0.tar.gz" data-upload-time="2025-13-45T99:00:00Z"', "upload_time", None),
        ('href="x-1.0.tar.gz" data-upload-time=""', "upload_time", None),
    ],
)
def test_attributes(attrs: str, field: str, value: object) -> None:
    assert getattr(_one(f"<a {attrs}>x-1.0.tar.gz</a>"), field) == value


def test_non_utf8_bytes_do_not_crash() -> None:
    body = (
        b'<a href="caf\xe9-1.0.tar.gz">caf\xe9-1.0.tar.gz</a><a href="b-1.0.tar.gz">b\xff\xfe-1.0.tar.gz</a>'
    )
    # Declared charset honoured.
    page = parse_project_page(body, "text/html; charset=ISO-8859-1", PAGE)
    assert page.files[0].filename == "café-1.0.tar.gz"
    # Undeclared or unknown: UTF-8 with replacement characters.
    for content_type in ("text/html", "text/html; charset=no-such-codec"):
        page = parse_project_page(body, content_type, PAGE)
        assert page.files[0].filename == "caf\ufffd-1.0.tar.gz"
        assert page.files[1].filename == "b\ufffd\ufffd-1.0.tar.gz"


def test_pep_503_658_714_page() -> None:
    body = f"""<!DOCTYPE html><html><head>
      <meta name="pypi:repository-version" content="1.1">
      <meta name="pypi:project-status" content="archived">
      <meta name="pypi:project-status-reason" content="use newthing">
      <meta name="pypi:tracks" content="https://other.example/simple/demo/">
      <meta name="pypi:alternate-locations" content="https://a.example/simple/demo/">
      <meta name="pypi:alternate-locations" content="https://b.example/simple/demo/">
      <title>Links for Demo</title></head><body><h1>Links for Demo</h1>
      <a href="https://files.example/d/demo-1.0-py3-none-any.whl#sha256={SHA}"
         data-requires-python="&gt;=3.9" data-core-metadata="sha256={SHA}"
         data-dist-info-metadata="sha256={SHA}" data-gpg-sig="false">demo-1.0-py3-none-any.whl</a><br/>
      <a href="https://files.example/d/demo-1.0.tar.gz#sha256={SHA}" data-yanked="">demo-1.0.tar.gz</a><br/>
      <a href="https://files.example/d/demo-0.9.zip">demo-0.9.zip</a><br/>
    </body></html>""".encode()
    page = parse_project_page(
        body, "application/vnd.pypi.simple.v1+html", "https://upstream.example/simple/Demo/"
    )
    assert page.name == "demo"
    assert page.versions == ("0.9", "1.0")
    assert page.status == "archived" and page.status_reason == "use newthing"
    assert page.tracks == ("https://other.example/simple/demo/",)
    assert page.alternate_locations == ("https://a.example/simple/demo/", "https://b.example/simple/demo/")
    wheel, sdist, old = page.files
    assert wheel.core_metadata == {"sha256": SHA} and wheel.gpg_sig is False
    assert wheel.requires_python == ">=3.9"
    assert sdist.yanked is True and sdist.core_metadata is False
    assert old.hashes == {}


@pytest.mark.parametrize(
    ("page_url", "name"),
    [
        ("https://upstream.example/simple/Foo_Bar/", "foo-bar"),
        ("https://upstream.example/simple/foo.bar", "foo-bar"),
        ("https://upstream.example/whl/nightly/cu126/Jinja2/", "jinja2"),
    ],
)
def test_project_name_from_page_url(page_url: str, name: str) -> None:
    assert parse_project_page(b"<html></html>", "text/html", page_url).name == name


@pytest.mark.parametrize(
    ("body", "content_type", "page_url", "reason"),
    [
        (b'<meta name="pypi:repository-version" content="2.0">', "text/html", PAGE, "repository-version"),
        (b'<meta name="pypi:repository-version" content="x">', "text/html", PAGE, "repository-version"),
        (b"<html></html>", "application/vnd.pypi.simple.v2+html", PAGE, "unsupported page type"),
        (b"<html></html>", "text/html", "https://upstream.example/", "no project name"),
    ],
)
def test_bad_html(body: bytes, content_type: str, page_url: str, reason: str) -> None:
    with pytest.raises(PageParseError) as info:
        parse_project_page(body, content_type, page_url)
    assert reason in str(info.value)
    assert "\n" not in str(info.value)


def test_project_list_html() -> None:
    body = b"""<!DOCTYPE html><html><body>
      <a href="/simple/jinja2/">Jinja2</a>
      <a href="torch/">torch</a>
      <a href="Foo_Bar/"> </a>
      <a href="/simple/a%2Bb/"></a>
      <a>nameless</a>
    </body></html>"""
    lst = parse_project_list(body, "text/html", "https://upstream.example/simple/")
    assert lst.projects == ("Jinja2", "torch", "Foo_Bar", "a+b", "nameless")
