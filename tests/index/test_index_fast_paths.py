"""Every short path the page parsers and renderers take for the common case gives what the general
path gives, on generated inputs (odd ones included): same value, or the same exception type."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urldefrag, urljoin, urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.index._values import (
    core_metadata_value,
    hashes_from_fragment,
    hashes_from_pairs,
    resolve_http_url,
    upload_time_value,
)
from proxy.index.parse_json import _hashes


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
