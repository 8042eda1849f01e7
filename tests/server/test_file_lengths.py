"""Files whose upstream states no length, or states one it then does not deliver.

A file is committed only when its length matches every length upstream stated (the page's ``size``,
Content-Length); one it hashed itself is advertised only when a stated length checked out. A body
that ends early breaks every client's connection, and nothing partial stays in the cache.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from proxy.cache.store import CacheStore
from proxy.cache.verify import verify
from proxy.server.files import stated_lengths
from tests.support.fake_index import FakeIndex
from tests.support.stack import JSON, MakeStack, anchors, sha256, wait_until, wheel
from tests.support.upstream import Fault

NAME = "big-1.0-py3-none-any.whl"


def _index(size: int = 2 * 1024 * 1024) -> FakeIndex:
    return FakeIndex.from_files({"big": [wheel(NAME, ["idna"], payload_size=size)]})


def _committed(cache_dir: Path) -> list[Path]:
    return [p for p in (cache_dir / "v1").rglob(NAME) if p.is_file()]


def _partials(cache_dir: Path) -> list[Path]:
    return list((cache_dir / "tmp").glob("part-*"))


@pytest.mark.parametrize("page_format", ["json", "html"])
def test_a_cold_file_without_length_is_streamed_chunked(make_stack: MakeStack, page_format: str) -> None:
    index = _index()
    content = index.file(NAME).content
    stack = make_stack(index, hashes=False, format=page_format)
    stack.upstream.inject_fault("/" + NAME, Fault(no_length=True))
    with stack.client.stream("GET", stack.file("big", NAME)) as response:
        body = response.read()
        assert response.status_code == 200
        assert "content-length" not in response.headers, "never content-length: 0"
        assert response.headers.get("transfer-encoding") == "chunked"
    assert body == content
    wait_until(lambda: _committed(stack.cache_dir), "the file is committed")
    assert stack.client.get(stack.file("big", NAME)).content == content


def test_a_body_that_ends_before_the_pages_size_is_an_error_and_not_kept(make_stack: MakeStack) -> None:
    # JSON pages state each file's size; this upstream gives no hash and ends the body cleanly early.
    index = _index()
    content = index.file(NAME).content
    assert content is not None
    stack = make_stack(index, hashes=False, format="json")
    stack.upstream.inject_fault("/" + NAME, Fault(no_length=True, truncate_to=500_000, times=1))
    with pytest.raises(httpx.RemoteProtocolError):
        stack.client.get(stack.file("big", NAME))  # a broken chunked body, never a clean end
    wait_until(lambda: not _partials(stack.cache_dir), "the partial file is removed")
    assert _committed(stack.cache_dir) == []
    listed = stack.json_page("big")["files"][0]
    assert listed["hashes"] == {}, "no hash of a file the proxy does not hold"
    assert stack.client.get(stack.file("big", NAME)).content == content, "the next try is whole"
    wait_until(lambda: _committed(stack.cache_dir), "the good file is committed")
    assert stack.json_page("big")["files"][0]["hashes"] == {"sha256": sha256(content)}


def test_a_self_hashed_file_with_no_stated_length_is_not_vouched_for(make_stack: MakeStack) -> None:
    # An HTML page without hashes states no size; a chunked body states no length either.
    index = _index(1000)
    content = index.file(NAME).content
    assert content is not None
    stack = make_stack(index, hashes=False, format="html")
    stack.upstream.inject_fault("/" + NAME, Fault(no_length=True))
    assert stack.client.get(stack.file("big", NAME)).content == content
    wait_until(lambda: _committed(stack.cache_dir), "the file is committed")
    served = stack.client.get(stack.file("big", NAME))
    assert served.content == content
    assert served.headers["etag"].strip('"') != sha256(content), "the server's own ETag, not a hash"
    page = stack.client.get(stack.page("big"), headers={"Accept": "text/html"}).text
    assert [a["href"] for a in anchors(page)] == [NAME], "no #sha256= for an unchecked file"
    report = verify(CacheStore(stack.cache_dir), drop=False)
    assert [b.path.name for b in report.bad] == [NAME]


def test_a_length_checked_self_hashed_file_is_advertised(make_stack: MakeStack) -> None:
    index = _index(1000)
    content = index.file(NAME).content
    assert content is not None
    stack = make_stack(index, hashes=False, format="html")  # the upstream's Content-Length is stated
    assert stack.client.get(stack.file("big", NAME)).content == content
    wait_until(lambda: _committed(stack.cache_dir), "the file is committed")
    page = stack.client.get(stack.page("big"), headers={"Accept": JSON}).json()
    assert page["files"][0]["hashes"] == {"sha256": sha256(content)}
    assert verify(CacheStore(stack.cache_dir), drop=False).bad == ()


@pytest.mark.parametrize(
    ("size", "headers", "expected"),
    [
        (None, {}, ()),
        (10, {}, (10,)),
        (None, {"content-length": "12"}, (12,)),
        (10, {"content-length": "12"}, (10, 12)),
        (None, {"content-length": "x"}, ()),
        (None, {"content-range": "bytes 0-9/10"}, (10,)),
        (None, {"content-range": "bytes 0-9/*"}, ()),
    ],
)
def test_stated_lengths(size: int | None, headers: dict[str, str], expected: tuple[int, ...]) -> None:
    assert stated_lengths(size, httpx.Headers(headers)) == expected
