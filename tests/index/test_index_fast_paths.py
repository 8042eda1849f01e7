"""Every short path the page parsers and renderers take for the common case gives what the general
path gives, on generated inputs (odd ones included): same value, or the same exception type."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urldefrag, urljoin, urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.index._values import resolve_http_url


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
