"""Ready answers (``proxy.server.ready``): a warm page or ``.metadata`` answer sent again as it was,
and never once anything it was built from changed.

The first test calls the app in process, to see which requests reach the handlers at all; the rest
run a real proxy in front of a real fake upstream and check what a client sees after each change.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import weakref
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

import proxy.server.dispatch as dispatch_module
from proxy.cache.store import PageKey
from proxy.config import RouteConfig
from proxy.server.app import create_app
from tests.support.fake_index import FakeIndex
from tests.support.proxy import proxy_config
from tests.support.stack import JSON, MakeStack, Stack, sha256, wheel
from tests.support.upstream import Fault, UpstreamOptions, UpstreamServer

MAC = "gpu_lib-1.0-cp311-cp311-macosx_11_0_arm64.whl"
LINUX = "gpu_lib-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"
PURE = "plain-2.0-py3-none-any.whl"
# A melded release one of whose wheels the meld leaves as it is (its line already has its marker).
KEPT_MAC = "cuda_lib-1.0-cp311-cp311-macosx_11_0_arm64.whl"
KEPT_LINUX = "cuda_lib-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"


def _index() -> FakeIndex:
    """One release whose wheels disagree (so it is melded), one pure wheel."""
    return FakeIndex.from_files(
        {
            "gpu-lib": [wheel(MAC, ["numpy"]), wheel(LINUX, ["numpy", "nvidia-thing"])],
            "plain": [wheel(PURE, ["idna"])],
            "cuda-lib": [
                wheel(KEPT_MAC, ["numpy"]),
                wheel(KEPT_LINUX, ["numpy", 'nvidia-thing; sys_platform == "linux"']),
            ],
        }
    )


@pytest.fixture
def upstream() -> Iterator[UpstreamServer]:
    with UpstreamServer(_index(), UpstreamOptions(prefix="/simple", pep658=True)) as up:
        yield up


def _answer(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    return response.status_code, sorted(response.headers.items()), response.content


def test_a_repeated_request_is_answered_without_the_handlers(
    upstream: UpstreamServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = proxy_config(tmp_path / "cache", {"/simple": f"{upstream.url}/simple"})
    app = create_app(config)
    handled: list[str] = []
    real_guarded = dispatch_module._guarded

    async def counting(ask: Any, state: Any, route: Any) -> Any:
        handled.append(f"{ask.method} {ask.path}?{ask.query} {ask.accept}")
        return await real_guarded(ask, state, route)

    monkeypatch.setattr(dispatch_module, "_guarded", counting)
    asks = [
        ("GET", "/simple/gpu-lib/", {"Accept": JSON}),
        ("GET", "/simple/gpu-lib/", {"Accept": "text/html"}),
        ("HEAD", "/simple/gpu-lib/", {"Accept": JSON}),
        ("GET", "/simple/gpu-lib/?format=application/vnd.pypi.simple.v1%2Bjson", {}),
        ("GET", f"/simple/gpu-lib/{MAC}.metadata", {}),
        ("GET", f"/simple/plain/{PURE}.metadata", {}),
    ]  # not the project list: it streams from its file on disk, never held in memory to send again

    async def run() -> None:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://wheelmeld") as client,
        ):
            # Metadata first: its meld moves the page's revision, so pages read after it stay ready.
            for method, path, headers in [asks[4], asks[5], *asks[:4]]:
                await client.request(method, path, headers=headers)
            first = [_answer(await client.request(m, p, headers=h)) for m, p, h in asks]
            built = len(handled)
            with caplog.at_level(logging.INFO, logger="wheelmeld.access"):
                again = [_answer(await client.request(m, p, headers=h)) for m, p, h in asks]
            assert len(handled) == built, handled[built:]
            assert again == first
            assert all(status == 200 for status, _h, _b in again)
            head = again[2]
            assert head[2] == b"" and dict(head[1])["content-length"] == str(len(first[0][2]))
            # The access log still has one line per request, with the route and the cache outcome.
            lines = [r.getMessage() for r in caplog.records if r.name == "wheelmeld.access"]
            assert len(lines) == len(asks)
            assert all("status=200" in line for line in lines)
            assert "cache=hit" in lines[0] and "cache=hit" in lines[4]
            # Anything not asked exactly so before is built by the handlers.
            await client.get("/simple/gpu-lib/", headers={"Accept": f"{JSON}, text/html;q=0.1"})
            assert len(handled) == built + 1

        # Counted like any other answer: warm-up, two rounds, and the one built anew.
        counted = app.state.wheelmeld.metrics.requests[("/simple", 200)]
        assert counted == 3 * len(asks) + 1

    asyncio.run(run())


@pytest.fixture
def stack(make_stack: MakeStack) -> Stack:
    return make_stack(_index(), pep658=True, format="json")


def _core(stack: Stack, project: str, filename: str, accept: str = JSON) -> object:
    page = stack.client.get(stack.page(project), headers={"Accept": accept}).json()
    return next(f["core-metadata"] for f in page["files"] if f["filename"] == filename)


def test_a_meld_is_advertised_on_a_page_answered_before(stack: Stack) -> None:
    assert _core(stack, "cuda-lib", KEPT_LINUX) is True  # the meld is not made yet: no hash to advertise
    assert _core(stack, "cuda-lib", KEPT_LINUX) is True  # sent again as it was
    stack.client.get(stack.file("cuda-lib", KEPT_MAC, ".metadata"))
    served = stack.client.get(stack.file("cuda-lib", KEPT_LINUX, ".metadata")).content
    assert _core(stack, "cuda-lib", KEPT_LINUX) == {"sha256": sha256(served)}
    # The wheel the meld rewrote is served by client (pip gets its own): no one hash, still `true`.
    assert _core(stack, "cuda-lib", KEPT_MAC) is True


def test_a_committed_file_is_advertised_on_a_page_answered_before(make_stack: MakeStack) -> None:
    stack = make_stack(_index(), hashes=False, format="json")
    for _ in range(2):
        (entry,) = stack.json_page("plain")["files"]
        assert "sha256" not in entry["hashes"]  # upstream gave none, the proxy holds no file yet
    content = stack.client.get(stack.file("plain", PURE)).content
    (entry,) = stack.json_page("plain")["files"]
    assert entry["hashes"]["sha256"] == sha256(content)


def test_an_expired_page_is_asked_upstream_again(make_stack: MakeStack) -> None:
    ttl = 0.5
    stack = make_stack(_index(), format="json", route={"page_ttl": ttl})
    before = [stack.json_page("plain") for _ in range(3)]
    assert before[0] == before[2]
    newer = wheel("plain-2.1-py3-none-any.whl", ["idna"])
    stack.upstream.set_index(
        FakeIndex.from_files({**_index().projects, "plain": [wheel(PURE, ["idna"]), newer]})
    )
    assert stack.json_page("plain") == before[0]  # still fresh: the answer stands
    time.sleep(ttl + 0.1)
    names = {f["filename"] for f in stack.json_page("plain")["files"]}
    assert names == {PURE, newer.filename}
    assert len(stack.upstream.requests_for("/simple/plain/")) == 2


def test_a_stale_page_is_never_sent_again_as_fresh(make_stack: MakeStack) -> None:
    ttl = 0.3
    stack = make_stack(_index(), format="json", route={"page_ttl": ttl})
    assert stack.client.get(stack.page("plain")).headers["x-wheelmeld-cache"] == "fresh"
    stack.upstream.inject_fault("/simple/plain/", Fault(status=503))
    time.sleep(ttl + 0.1)
    for _ in range(2):
        response = stack.client.get(stack.page("plain"))
        assert response.status_code == 200
        assert response.headers["x-wheelmeld-cache"] == "stale", response.headers


def test_answers_differ_by_method_accept_and_query(stack: Stack) -> None:
    json_page = stack.client.get(stack.page("plain"), headers={"Accept": JSON})
    html_page = stack.client.get(stack.page("plain"), headers={"Accept": "text/html"})
    head = stack.client.head(stack.page("plain"), headers={"Accept": JSON})
    by_query = stack.client.get(stack.page("plain") + "?format=text/html", headers={"Accept": JSON})
    for _ in range(2):
        assert stack.client.get(stack.page("plain"), headers={"Accept": JSON}).content == json_page.content
        assert (
            stack.client.get(stack.page("plain"), headers={"Accept": "text/html"}).content
            == html_page.content
        )
        again = stack.client.head(stack.page("plain"), headers={"Accept": JSON})
        assert again.content == b"" and again.headers["content-length"] == str(len(json_page.content))
        assert (
            stack.client.get(stack.page("plain") + "?format=text/html", headers={"Accept": JSON}).content
            == by_query.content
        )
    assert json_page.headers["content-type"].startswith(JSON)
    assert html_page.headers["content-type"].startswith("text/html")
    assert by_query.headers["content-type"].startswith("text/html")
    assert head.headers["content-length"] == str(len(json_page.content))


def test_an_unavailable_meld_is_tried_again(stack: Stack) -> None:
    stack.upstream.inject_fault(f"/{LINUX}.metadata", Fault(status=500))
    stack.upstream.inject_fault(f"/{LINUX}", Fault(status=500))
    for _ in range(2):
        response = stack.client.get(stack.file("gpu-lib", MAC, ".metadata"))
        assert response.headers["x-wheelmeld-meld"].startswith("unavailable")
    stack.upstream.clear_faults()
    healed = stack.client.get(stack.file("gpu-lib", MAC, ".metadata"))
    assert healed.headers["x-wheelmeld-meld"] == "melded"
    assert b"nvidia-thing" in healed.content


def test_an_answer_nobody_asks_again_does_not_keep_a_replaced_page_alive(
    upstream: UpstreamServer, tmp_path: Path
) -> None:
    route = RouteConfig(prefix="/simple", upstream=f"{upstream.url}/simple", page_ttl=0.2)
    app = create_app(replace(proxy_config(tmp_path / "cache", {}), routes=(route,)))
    key = PageKey("simple", ("plain",))

    async def run() -> None:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://wheelmeld") as client,
        ):
            pages = app.state.wheelmeld.pages
            assert (await client.head("/simple/plain/")).status_code == 200  # a ready answer now
            old = weakref.ref(pages._entries[key])
            newer = wheel("plain-2.1-py3-none-any.whl", ["idna"])
            upstream.set_index(FakeIndex.from_files({**_index().projects, "plain": [newer]}))
            await asyncio.sleep(0.3)
            page = await client.get("/simple/plain/", headers={"Accept": JSON})  # a new entry
            assert [f["filename"] for f in page.json()["files"]] == [newer.filename]
            gc.collect()
            assert old() is None, "the HEAD answer still held the replaced page"
            again = await client.head("/simple/plain/")  # and it is not sent from the old page
            html = await client.get("/simple/plain/")
            assert newer.filename in html.text
            assert again.headers["content-length"] == str(len(html.content))

    asyncio.run(run())


def test_a_moved_revision_drops_the_page_view_with_its_bodies_and_ready_answers(
    upstream: UpstreamServer, tmp_path: Path
) -> None:
    app = create_app(proxy_config(tmp_path / "cache", {"/simple": f"{upstream.url}/simple"}))
    key = PageKey("simple", ("cuda-lib",))

    async def run() -> None:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://wheelmeld") as client,
        ):
            for accept in (JSON, "text/html"):
                assert (await client.get("/simple/cuda-lib/", headers={"Accept": accept})).status_code == 200
            state = app.state.wheelmeld
            view = state.views.view_of(state.pages._entries[key])
            assert set(view.rendered) == {JSON, "text/html"}
            before = weakref.ref(view)
            del view
            # The meld this makes moves the page's revision: the next page request builds anew, and
            # the view the two pages and this answer were built from goes, all of it at once.
            await client.get(f"/simple/cuda-lib/{KEPT_MAC}.metadata")
            page = (await client.get("/simple/cuda-lib/", headers={"Accept": JSON})).json()
            assert any(isinstance(f["core-metadata"], dict) for f in page["files"])
            gc.collect()
            assert before() is None, "the view of the old revisions is still held"
            assert state.views.view_of(state.pages._entries[key]).rendered.keys() == {JSON}

    asyncio.run(run())
