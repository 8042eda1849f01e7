"""Every short path a cold page takes (parsing, grouping, serving) for the common case gives what the
general path gives, on generated inputs (odd ones included): same value, or the same exception type."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import quote, urldefrag, urljoin, urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.index import DistFile, ProjectPage, render_project_html
from proxy.index._values import (
    _plain_by_rules,
    core_metadata_value,
    hashes_from_fragment,
    hashes_from_pairs,
    is_plain_filename,
    resolve_http_url,
    upload_time_value,
)
from proxy.index.html_scan import PlainParser, scan_plain
from proxy.index.parse_html import _SimpleParser
from proxy.index.parse_json import _hashes
from proxy.index.releases import release_groups, release_of
from proxy.service.page_views import served_url


def _outcome(call: Callable[[], object]) -> object:
    try:
        return call()
    except ValueError as exc:
        return type(exc)


def _general_http_url(base: str, href: str) -> tuple[str, str, str] | None:
    url, fragment = urldefrag(urljoin(base, href))
    parts = urlsplit(url)
    return (url, fragment, parts.path) if parts.scheme in {"http", "https"} else None


_BASES = st.one_of(
    st.sampled_from(
        [
            "https://upstream.example/whl/torch/",
            "http://127.0.0.1:8000/simple/foo/",
            "HTTPS://Upstream.Example:8443/a/b?q=1#f",
            "https://user:pw@upstream.example/x",
            "https:///no-host/",
            "https://[::1]:8080/whl/",
            "https://[::1/whl/",
            "https://upstream.example",
            "ftp://upstream.example/pub/",
            "file:///srv/simple/foo/",
        ]
    ),
    st.text(st.sampled_from("hts:/.[]@x?#%é"), max_size=24),
)
_HREF_CHARS = st.sampled_from([*"aZ09-_~+%./;?#=:@[]\\ é\t\n\x00\u200b", "%2B", "sha256="])
_HREFS = st.lists(_HREF_CHARS, max_size=16).map(lambda parts: "/" + "".join(parts))


@settings(max_examples=2000, deadline=None)
@given(base=_BASES, href=st.one_of(_HREFS, st.lists(_HREF_CHARS, max_size=12).map("".join)))
def test_resolve_http_url_is_urljoin(base: str, href: str) -> None:
    assert _outcome(lambda: resolve_http_url(base, href)) == _outcome(lambda: _general_http_url(base, href))


_HEXISH = st.text(st.sampled_from("0123456789abcdefABx"), min_size=60, max_size=66)


@settings(max_examples=1000, deadline=None)
@given(
    name=st.sampled_from(["sha256", "SHA256", " sha256", "md5", "sha512", "x"]),
    digest=st.one_of(_HEXISH, st.text(max_size=3)),
    more=st.sampled_from(["", "&md5=00", "&", "=", "#"]),
)
def test_one_sha256_fragment_is_the_general_reading(name: str, digest: str, more: str) -> None:
    fragment = f"{name}={digest}{more}"
    general = hashes_from_pairs(p.partition("=")[::2] for p in fragment.split("&") if "=" in p)
    assert hashes_from_fragment(fragment) == general


@settings(max_examples=1000, deadline=None)
@given(
    advertised=st.dictionaries(
        st.one_of(st.sampled_from(["sha256", "SHA256", "md5"]), st.integers()),
        st.one_of(_HEXISH, st.integers(), st.none()),
        max_size=2,
    )
)
def test_one_sha256_core_metadata_is_the_general_reading(advertised: dict[object, object]) -> None:
    assert (_hashes(advertised) or True) == core_metadata_value(advertised)


def _general_upload_time(raw: str) -> str | None:
    text = raw.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if moment.year < 1000:
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if moment.microsecond else "%Y-%m-%dT%H:%M:%SZ")


_DIGIT_OR_NOT = st.sampled_from("0123456789٣x")
_FIELDS = st.tuples(
    *(
        st.one_of(st.integers(0, 10**width - 1).map(f"{{:0{width}d}}".format), st.text(_DIGIT_OR_NOT))
        for width in (4, 2, 2, 2, 2, 2)
    )
)
_NAIVE_TIMES = st.one_of(
    st.datetimes().map(lambda d: d.isoformat(timespec="seconds")),
    st.builds(lambda f, sep: "{}-{}-{}{sep}{}:{}:{}".format(*f, sep=sep), _FIELDS, st.sampled_from("T t")),
)


@settings(max_examples=2000, deadline=None)
@given(text=_NAIVE_TIMES)
def test_naive_upload_time_is_the_general_reading(text: str) -> None:
    assert upload_time_value(text) == _general_upload_time(text)


class _Recorder(PlainParser):
    """Every handler call, as made."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.calls: list[tuple[object, ...]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.calls.append(("start", tag, attrs))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.calls.append(("startend", tag, attrs))

    def handle_endtag(self, tag: str) -> None:
        self.calls.append(("end", tag))

    def handle_data(self, data: str) -> None:
        self.calls.append(("data", data))

    def handle_decl(self, decl: str) -> None:
        self.calls.append(("decl", decl))

    def handle_comment(self, data: str) -> None:
        self.calls.append(("comment", data))

    def handle_pi(self, data: str) -> None:
        self.calls.append(("pi", data))

    def unknown_decl(self, data: str) -> None:
        self.calls.append(("unknown", data))


_VALUES = st.lists(
    st.sampled_from([*"ab/.:=+ '>#", "&amp;", "&gt;=3.8", "&", "&#x2F;", "\u3000"]), max_size=5
)
_ATTR_NAMES = st.sampled_from(
    ["href", "data-requires-python", "data-core-metadata", "data-dist-info-metadata", "data-yanked", "name"]
)


@st.composite
def _tags(draw: st.DrawFn, plain: bool) -> str:
    """A start tag; ``plain``: one of the forms ``scan_plain`` reads (then maybe its text and end)."""
    tags = ["a", "a", "br", "meta", "base", "h1", "body"] + ([] if plain else ["p", "A", "script"])
    tag = draw(st.sampled_from(tags))
    attrs = ""
    for name in draw(st.lists(_ATTR_NAMES, max_size=3)):
        value = "".join(draw(_VALUES))
        quotes = ['="{}"', ""] + ([] if plain else ["='{}'", "={}", '= "{}"'])
        space = [" ", "  ", "\n", "\t"] + ([] if plain else ["", "\x0b"])
        attrs += draw(st.sampled_from(space)) + name + draw(st.sampled_from(quotes)).format(value)
    close = draw(st.sampled_from([">", "/>", " />", " >"] + ([] if plain else ["/ >"])))
    text = draw(st.sampled_from(["", "torch-2.1.0+cu118-cp310-cp310-linux_x86_64.whl", " x &amp; y ", "&"]))
    end = draw(st.sampled_from(["", f"</{tag}>", f"</{tag} >"]))
    return f"<{tag}{attrs}{close}{text}{end}"


_PIECES = st.one_of(
    _tags(plain=True),
    _tags(plain=True),
    _tags(plain=False),
    st.sampled_from(
        [
            "</a>",
            "</a >",
            "</A>",
            "</h1>",
            "</body>",
            "</html>",
            "<!DOCTYPE html>",
            "<!doctype html>",
            "<title>Links for x &amp; y</title>",
            "<title></title>",
            "<!-- c -->",
            "<?pi?>",
            "<![CDATA[x]]>",
            "<textarea>",
            "</script>",
            "\n    ",
            "  ",
            "\x0b",
            "\u3000",
            "<",
            ">",
            "&",
            "&amp;",
            "&lt;a&gt;",
            "torch-2.1.0+cu118-cp310-cp310-linux_x86_64.whl",
            "x.tar.gz",
            "é",
        ]
    ),
    st.text(st.sampled_from("ab <>/&=\"'!-"), max_size=6),
)
_PLAIN_PIECES = st.one_of(
    _tags(plain=True),
    st.sampled_from(["<br/>", "</a>", "<!DOCTYPE html>", "<title>a &lt; b</title>", "\n    ", "&gt;", "é"]),
)
_DOCUMENTS = st.one_of(
    st.lists(_PIECES, max_size=14).map("".join), st.lists(_PLAIN_PIECES, max_size=14).map("".join)
)


@settings(max_examples=3000, deadline=None)
@given(text=_DOCUMENTS)
def test_scan_plain_calls_what_html_parser_calls(text: str) -> None:
    scanned = _Recorder()
    if not scan_plain(text, scanned):
        assert scanned.calls == []
        return
    fed = _Recorder()
    fed.feed(text)
    fed.close()
    assert scanned.calls == fed.calls


@settings(max_examples=1000, deadline=None)
@given(text=_DOCUMENTS)
def test_simple_parser_collects_the_same_scanned_or_fed(text: str) -> None:
    scanned = _SimpleParser()
    if scan_plain(text, scanned):
        fed = _SimpleParser()
        fed.feed(text)
        fed.close()
        assert (scanned.anchors, scanned.base, scanned.meta) == (fed.anchors, fed.base, fed.meta)


def test_pages_as_indexes_write_them_are_scanned() -> None:
    page = ProjectPage("torch", (DistFile("torch-2.1.0+cu118-cp310-cp310-linux_x86_64.whl",
        "https://upstream.example/whl/cu118/torch-2.1.0%2Bcu118-cp310-cp310-linux_x86_64.whl",
        {"sha256": "0" * 64}, ">=3.8", "bad build", {"sha256": "1" * 64}, 12, "2024-01-01T00:00:00Z",
        True),), ("2.1.0+cu118",), "active", "ok", ("https://upstream.example/x/",))  # fmt: skip
    pytorch = b"""<!DOCTYPE html>\n<html>\n  <body>\n    <h1>Links for torch</h1>
    <a href="/whl/cu118/torch-2.1.0%2Bcu118-cp310-cp310-linux_x86_64.whl#sha256=abc" \
data-requires-python="&gt;=3.8" data-dist-info-metadata="sha256=abc" data-core-metadata="sha256=abc">\
torch-2.1.0+cu118-cp310-cp310-linux_x86_64.whl</a><br/>\n  </body>\n</html>\n"""
    for body in (render_project_html(page), pytorch):
        assert scan_plain(body.decode(), _SimpleParser())


@settings(max_examples=2000, deadline=None)
@given(
    name=st.one_of(
        st.text(st.sampled_from([*"aZ09._+~!-/\\\x00 é\u200b", "\U0001f600"]), max_size=70),
        st.integers(230, 250).map(lambda n: "a" * n),
        st.sampled_from([".", "..", "...", ".a", "-", "~"]),
    )
)
def test_common_file_name_is_plain_by_the_rules(name: str) -> None:
    assert is_plain_filename(name) == _plain_by_rules(name)


_WHEELS = st.builds(
    "{}-{}-{}-none-any.whl".format,
    st.sampled_from(["foo", "Foo", "foo_bar", "Foo.Bar", "foo-bar"]).map(lambda n: n.replace("-", "_")),
    st.sampled_from(["1.0", "1.00", "1.0+cpu", "2", "2.0.0"]),
    st.sampled_from(["py3", "cp312-cp312", "1-py3"]),
)


@settings(max_examples=500, deadline=None)
@given(names=st.lists(st.one_of(_WHEELS, st.sampled_from(["foo-1.0.tar.gz", "x.egg"])), max_size=12))
def test_release_groups_are_the_releases_file_names_name(names: list[str]) -> None:
    files = [
        DistFile(n, f"https://upstream.example/{i}/{n}", {}, None, False, False) for i, n in enumerate(names)
    ]
    expected: dict[object, list[DistFile]] = {}
    for dist in files:
        release = release_of(dist.filename) if dist.filename.endswith(".whl") else None
        if release is not None:
            expected.setdefault(release, []).append(dist)
    groups = release_groups(files)
    assert {n: r.wheels for n, r in groups.items()} == {
        d.filename: tuple(group) for group in expected.values() for d in group
    }


@settings(max_examples=1000, deadline=None)
@given(filename=st.text(st.sampled_from([*"aZ09_.~-+ %/#?é", "\U0001f600"]), min_size=1, max_size=20))
def test_served_url_is_quote(filename: str) -> None:
    assert served_url(filename) == quote(filename)
