"""Cached pages: fresh for the route's TTL, revalidated with validators (a 304 costs no parse), stale
(header + log + metric) when the upstream fails, and ``--offline`` serving what the cache holds with no
upstream connection at all.
"""

from __future__ import annotations

import asyncio
import json
import logging
import select
import socket
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

import proxy.server.pages as pages_module
from proxy.cache.page_file import load_page
from tests.cache.cachekit import metric
from tests.support.fake_index import FakeIndex
from tests.support.proxy import ProxyServer
from tests.support.stack import MakeStack, Stack, single_line, wheel
from tests.support.upstream import Fault

A = "demo-1.0-py3-none-any.whl"
B = "demo-2.0-py3-none-any.whl"


def _index() -> FakeIndex:
    return FakeIndex.from_files({"demo": [wheel(A, ["idna"]), wheel(B, ["idna>=3"])]})


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every page parse the proxy's page service makes (the proxy runs in this process)."""
    calls: list[str] = []

    def counting(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return real(*args, **kwargs)

        return wrapper

    for name in ("parse_project_page", "parse_project_list"):
        monkeypatch.setattr(pages_module, name, counting(name, getattr(pages_module, name)))
    return calls


def _page_requests(stack: Stack) -> list[int | None]:
    return [r.status for r in stack.upstream.requests_for("/simple/demo/")]


def test_fresh_page_is_served_without_upstream_and_says_its_ttl(make_stack: MakeStack) -> None:
    stack = make_stack(_index(), route={"page_ttl": 120.0})
    first = stack.client.get("/simple/demo/")
    second = stack.client.get("/simple/demo/")
    assert first.status_code == second.status_code == 200
    assert second.content == first.content
    assert second.headers["cache-control"] == "max-age=120"
    assert second.headers["x-wheelmeld-cache"] == "fresh"
    assert _page_requests(stack) == [200], "within the TTL the page comes from the cache"


def test_expired_page_revalidates_and_a_304_costs_no_parse(make_stack: MakeStack, parses: list[str]) -> None:
    stack = make_stack(_index(), route={"page_ttl": 0.0})
    first = stack.client.get("/simple/demo/")
    assert first.status_code == 200
    assert parses, "the first answer had to be parsed (else this test could not fail)"
    parses.clear()
    for _ in range(3):
        again = stack.client.get("/simple/demo/")
        assert again.status_code == 200 and again.content == first.content
    requests = stack.upstream.requests_for("/simple/demo/")
    assert [r.status for r in requests] == [200, 304, 304, 304]
    assert all(r.headers.get("if-none-match") for r in requests[1:])
    assert parses == [], "a 304 must reuse the parsed page, in memory and on disk"


def test_a_changed_page_is_parsed_and_served(make_stack: MakeStack) -> None:
    stack = make_stack(_index(), route={"page_ttl": 0.0})
    assert A in stack.client.get("/simple/demo/").text
    stack.upstream.set_index(FakeIndex.from_files({"demo": [wheel(B, ["idna>=3"])]}))
    text = stack.client.get("/simple/demo/").text
    assert B in text and A not in text
    assert _page_requests(stack) == [200, 200]


_PAGE_FAULTS = {
    "500": Fault(status=500),
    "503": Fault(status=503),
    "reset": Fault(reset_after=20),
    "timeout": None,  # the upstream answers after the proxy's timeout
}


@pytest.mark.parametrize("fault", list(_PAGE_FAULTS.values()), ids=list(_PAGE_FAULTS))
def test_upstream_failure_serves_the_last_good_page_marked_stale(
    make_stack: MakeStack,
    fault: Fault | None,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pages_module, "_STALE_RETRY_SECONDS", 0.0)  # retry upstream on every request
    stack = make_stack(_index(), route={"page_ttl": 0.0}, config={"upstream_timeout": 0.5})
    good = stack.client.get("/simple/demo/")
    assert good.headers["x-wheelmeld-cache"] == "fresh"
    # A full 200 answer (not a body-less 304), so a reset really breaks a body.
    stack.upstream.set_options(validators=False)
    if fault is None:
        stack.upstream.set_options(latency_ms=1500)
    else:
        stack.upstream.inject_fault("/simple/demo/", fault)
    with caplog.at_level(logging.WARNING, logger="wheelmeld"):
        stale = stack.client.get("/simple/demo/")
    assert stale.status_code == 200
    assert stale.content == good.content
    assert stale.headers["x-wheelmeld-cache"] == "stale"
    assert stale.headers["x-wheelmeld-stale"]
    assert any("stale" in r.getMessage() and "/demo/" in r.getMessage() for r in caplog.records)
    metrics = stack.client.get("/metrics").text
    assert metric(metrics, "wheelmeld_cache_total", outcome="stale") == 1
    # The upstream recovers: the next request is fresh again.
    stack.upstream.clear_faults()
    stack.upstream.set_options(latency_ms=0)
    recovered = stack.client.get("/simple/demo/")
    assert recovered.headers["x-wheelmeld-cache"] == "fresh"
    assert recovered.content == good.content


@pytest.mark.parametrize("fault", list(_PAGE_FAULTS.values()), ids=list(_PAGE_FAULTS))
def test_upstream_failure_on_an_uncached_page_is_a_clean_502_then_recovers(
    make_stack: MakeStack, fault: Fault | None
) -> None:
    stack = make_stack(_index(), config={"upstream_timeout": 0.5})
    if fault is None:
        stack.upstream.set_options(latency_ms=1500)
    else:
        stack.upstream.inject_fault("/simple/demo/", fault)
    failed = stack.client.get("/simple/demo/")
    assert failed.status_code == 502
    assert single_line(failed.text), failed.text
    assert not list(stack.cache_dir.rglob("page.json")), "a failed fetch leaves no page entry"
    stack.upstream.clear_faults()
    stack.upstream.set_options(latency_ms=0)
    retried = stack.client.get("/simple/demo/")
    assert retried.status_code == 200 and A in retried.text


@pytest.fixture
def silent_listener() -> Iterator[socket.socket]:
    """A TCP port that accepts nothing: any connection attempt to it stays in its backlog."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        sock.setblocking(False)
        yield sock


def _connection_attempted(listener: socket.socket) -> bool:
    readable, _, _ = select.select([listener], [], [], 0.05)
    return bool(readable)


def test_offline_serves_what_the_cache_holds_and_opens_no_connection(
    make_stack: MakeStack, tmp_path: Path, silent_listener: socket.socket
) -> None:
    online = make_stack(_index(), route={"page_ttl": 0.0})
    warm = {
        path: online.client.get(path).content
        for path in ("/simple/", "/simple/demo/", f"/simple/demo/{A}.metadata", f"/simple/demo/{A}")
    }
    online.proxy.stop()
    port = silent_listener.getsockname()[1]
    config = replace(online.proxy.config, port=0, offline=True)
    config = replace(
        config, routes=tuple(replace(r, upstream=f"http://127.0.0.1:{port}/simple") for r in config.routes)
    )
    online.upstream.log.reset()
    with ProxyServer(config) as offline, httpx.Client(base_url=offline.url, timeout=10) as client:
        for path, body in warm.items():
            response = client.get(path)
            assert response.status_code == 200, (path, response.text)
            assert response.content == body, path
        missing_page = client.get("/simple/absent/")
        missing_file = client.get(f"/simple/demo/{B}")
        assert missing_page.status_code == missing_file.status_code == 404
        for response in (missing_page, missing_file):
            assert "offline" in response.text and single_line(response.text), response.text
    assert not _connection_attempted(silent_listener), "offline must not even connect upstream"
    assert len(online.upstream.log) == 0


def test_cache_headers(make_stack: MakeStack) -> None:
    index = _index()
    stack = make_stack(index, route={"page_ttl": 300.0, "meld": False})
    page = stack.client.get("/simple/demo/")
    assert page.headers["cache-control"] == "max-age=300"
    assert page.headers["vary"] == "Accept"
    for path in (f"/simple/demo/{A}", f"/simple/demo/{A}.metadata"):
        response = stack.client.get(path)
        assert response.status_code == 200
        assert "immutable" in response.headers["cache-control"], path
    cached_file = stack.client.get(f"/simple/demo/{A}")  # now from the cache, not the stream
    assert "immutable" in cached_file.headers["cache-control"]
    assert cached_file.headers["etag"]


def test_melded_metadata_is_not_immutable(make_stack: MakeStack) -> None:
    stack = make_stack(_index(), route={"page_ttl": 300.0})
    response = stack.client.get(f"/simple/demo/{A}.metadata")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "max-age=300", "a new sibling may change a meld"


def test_fifty_clients_of_an_uncached_page_make_one_upstream_request(make_stack: MakeStack) -> None:
    stack = make_stack(_index(), latency_ms=200)  # the fetch is still running when the others arrive

    async def run() -> list[tuple[int, bytes]]:
        async with httpx.AsyncClient(base_url=stack.proxy.url, timeout=30) as client:

            async def one() -> tuple[int, bytes]:
                response = await client.get("/simple/demo/")
                return response.status_code, response.content

            return await asyncio.gather(*(one() for _ in range(50)))

    results = asyncio.run(run())
    assert {status for status, _ in results} == {200}
    assert len({body for _, body in results}) == 1
    assert _page_requests(stack) == [200]


@pytest.mark.parametrize("upstream_format", ["json", "html"])
@pytest.mark.parametrize("accept", ["application/vnd.pypi.simple.v1+json", "text/html"])
def test_a_page_read_back_from_disk_is_served_as_before(
    make_stack: MakeStack, tmp_path: Path, upstream_format: str, accept: str
) -> None:
    # The disk copy is upstream's own bytes for a JSON upstream and our rendering for an HTML one;
    # either way a restarted proxy serves exactly what the first one did, with no upstream request.
    index = FakeIndex.from_files(
        {"demo": [wheel(A, ["idna"]), wheel(B, ["idna>=3"]), wheel("demo-2.0+cpu-cp311-cp311-win_amd64.whl")]}
    )
    cache = tmp_path / "shared-cache"
    first = make_stack(index, format=upstream_format, cache_dir=cache, route={"page_ttl": 600.0})
    before = first.client.get("/simple/demo/", headers={"Accept": accept})
    assert before.status_code == 200
    again = make_stack(index, format=upstream_format, cache_dir=cache, route={"page_ttl": 600.0})
    after = again.client.get("/simple/demo/", headers={"Accept": accept})
    assert after.status_code == 200
    assert after.content == before.content
    assert not again.upstream.requests_for("/simple/demo/")


def test_a_page_cached_in_the_version_1_form_is_still_served(make_stack: MakeStack, tmp_path: Path) -> None:
    # Caches and bundles made before the page file's version 2 must keep working offline.
    cache = tmp_path / "old-cache"
    first = make_stack(_index(), format="json", cache_dir=cache, route={"page_ttl": 600.0})
    before = first.client.get("/simple/demo/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    (page_file,) = cache.rglob("page.json")
    stored = load_page(page_file.read_bytes())
    version_1 = {
        "kind": stored.kind,
        "url": stored.url,
        "fetched_at": stored.fetched_at,
        "etag": stored.etag,
        "last_modified": stored.last_modified,
        "body": stored.body.decode(),
    }
    page_file.write_text(json.dumps(version_1))
    again = make_stack(_index(), format="json", cache_dir=cache, route={"page_ttl": 600.0})
    after = again.client.get("/simple/demo/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    assert after.status_code == 200 and after.content == before.content
    assert not again.upstream.requests_for("/simple/demo/")
