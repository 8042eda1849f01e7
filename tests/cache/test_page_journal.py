"""Workers sharing pages: with ``--workers N`` each worker loads the pages its siblings fetched
(``proxy.cache.page_journal``), while it is idle, so a page is parsed ahead of the first request for
it there; and a page a sibling merely revalidated costs no parse at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import proxy.service.pages as pages_module
from proxy.cache.page_journal import PageJournal
from proxy.cache.store import CacheStore, PageKey
from proxy.config import RouteConfig
from proxy.network.upstream import Upstream
from proxy.observe import Metrics
from proxy.server.app import create_app
from proxy.service.pages import PageService
from tests.cache.cachekit import metric, serve_process
from tests.support.fake_index import FakeIndex
from tests.support.proxy import proxy_config
from tests.support.stack import wait_until, wheel
from tests.support.upstream import UpstreamOptions, UpstreamServer

DEMO = PageKey("simple", ("demo",))
OTHER = PageKey("simple", ("other",))


def _index() -> FakeIndex:
    return FakeIndex.from_files(
        {"demo": [wheel("demo-1.0-py3-none-any.whl")], "other": [wheel("other-2.0-py3-none-any.whl")]}
    )


def _journal(tmp_path: Path) -> Path:
    """An empty journal, as ``wheelmeld serve`` makes one for its workers."""
    path = tmp_path / "pages.journal"
    path.touch(mode=0o600)
    return path


def test_a_worker_reads_what_its_siblings_recorded_once_each_and_never_its_own(tmp_path: Path) -> None:
    path = _journal(tmp_path)
    first, second = PageJournal(path, worker="1"), PageJournal(path, worker="2")
    assert second.others() == []  # nothing recorded yet
    first.record(DEMO)
    first.record(OTHER)
    first.record(DEMO)
    second.record(OTHER)
    assert second.others() == [DEMO, OTHER]
    assert second.others() == []  # each line is read once
    assert first.others() == [OTHER]


def test_damaged_and_half_written_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "pages.journal"
    reader = PageJournal(path, worker="me")
    path.write_bytes(b"7 simple/../etc\n7 \n\xff\xfe\nno-space\n7 simple/demo\n7 simple/oth")
    assert reader.others() == [DEMO]  # the traversal, the empty and the garbage lines are dropped
    with path.open("ab") as fh:
        fh.write(b"er\n")  # the sibling finishes its line
    assert reader.others() == [OTHER]
    with path.open("ab") as fh:
        fh.write(b"x" * 10_000)  # never a line: not kept growing in memory
    assert reader.others() == []
    assert reader._partial == b""


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every project page the page services of this process parse."""
    calls: list[str] = []
    real_parse = pages_module.parse_project_page

    def counting(*args: object, **kwargs: object) -> object:
        calls.append("parse")
        return real_parse(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pages_module, "parse_project_page", counting)
    return calls


@pytest.fixture
def upstream() -> Iterator[UpstreamServer]:
    with UpstreamServer(_index(), UpstreamOptions(prefix="/simple", format="json")) as up:
        yield up


def test_a_page_one_worker_fetched_is_loaded_by_the_other_while_idle(
    upstream: UpstreamServer, tmp_path: Path, parses: list[str]
) -> None:
    store = CacheStore(tmp_path / "cache")
    store.prepare()
    journal = _journal(tmp_path)
    metrics = Metrics()
    fetching = PageService(store, offline=False, journal=PageJournal(journal, worker="a"))
    following = PageService(store, offline=False, journal=PageJournal(journal, worker="b"), metrics=metrics)
    route = RouteConfig(prefix="/simple", upstream=upstream.url + "/simple")

    async def run() -> None:
        up = Upstream(route, Metrics(), 10.0)
        idle = asyncio.Event()  # the following worker is busy: it must not load yet
        follower = asyncio.create_task(following.follow(idle))
        try:
            fetched = await fetching.get(DEMO, up)
            assert fetched.page is not None
            await asyncio.sleep(0.6)
            assert metrics.pages_loaded_ahead == 0 and parses == ["parse"]
            idle.set()
            for _ in range(100):  # up to 5 s
                if metrics.pages_loaded_ahead:
                    break
                await asyncio.sleep(0.05)
            assert metrics.pages_loaded_ahead == 1
            assert parses == ["parse", "parse"]  # upstream's page once, the disk copy once
            served = await following.get(DEMO, up)  # no parse, no upstream request: it is loaded
            assert served.page == fetched.page
            assert parses == ["parse", "parse"]
            assert len(upstream.requests_for("/simple/demo/")) == 1
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
            await up.aclose()

    asyncio.run(run())


def test_a_page_a_sibling_revalidated_is_adopted_without_a_parse(
    upstream: UpstreamServer, tmp_path: Path, parses: list[str]
) -> None:
    store = CacheStore(tmp_path / "cache")
    store.prepare()
    first, second = PageService(store, offline=False), PageService(store, offline=False)
    ttl = 0.3
    route = RouteConfig(prefix="/simple", upstream=upstream.url + "/simple", page_ttl=ttl)

    async def run() -> None:
        up = Upstream(route, Metrics(), 10.0)
        try:
            mine = await second.get(DEMO, up)  # parsed from upstream's answer
            await first.get(DEMO, up)  # the disk copy, still fresh: parsed once here
            assert len(parses) == 2
            await asyncio.sleep(ttl + 0.05)
            await first.get(DEMO, up)  # expired: revalidated, a 304, re-saved
            assert [r.status for r in upstream.requests_for("/simple/demo/")] == [200, 304]
            adopted = await second.get(DEMO, up)  # expired here too, but the disk copy is fresh
            assert adopted is mine and second.in_service(mine, ttl)
            assert len(parses) == 2, "the same bytes are not parsed again"
            assert len(upstream.requests_for("/simple/demo/")) == 2
            # A sibling that fetched a changed page makes this worker parse the new one.
            newer = wheel("demo-1.1-py3-none-any.whl")
            upstream.set_index(FakeIndex.from_files({**_index().projects, "demo": [newer]}))
            await asyncio.sleep(ttl + 0.05)
            await first.get(DEMO, up)
            changed = await second.get(DEMO, up)
            assert changed is not mine and changed.page is not None
            assert [f.filename for f in changed.page.files] == [newer.filename]
        finally:
            await up.aclose()

    asyncio.run(run())


def test_two_serve_workers_load_each_others_pages_and_the_journal_goes_with_the_run(
    upstream: UpstreamServer, tmp_path: Path
) -> None:
    before = set(Path(tempfile.gettempdir()).glob("wheelmeld-pages-*.journal"))
    with serve_process(tmp_path / "cache", {"/simple": upstream.url + "/simple"}, "--workers", "2") as proxy:
        assert httpx.get(proxy.url + "/simple/demo/").status_code == 200
        journals = set(Path(tempfile.gettempdir()).glob("wheelmeld-pages-*.journal")) - before
        assert len(journals) == 1
        (journal,) = journals
        assert journal.read_text().endswith(" simple/demo\n")
        assert os.stat(journal).st_mode & 0o777 == 0o600

        def loaded_ahead() -> bool:
            # A new connection each time: it lands on either worker; one of them loaded the page.
            return metric(httpx.get(proxy.url + "/metrics").text, "wheelmeld_pages_loaded_ahead_total") == 1

        wait_until(loaded_ahead, "the other worker to load the page ahead")
        assert len(upstream.requests_for("/simple/demo/")) == 1
    assert not journal.exists()


def test_a_worker_is_idle_only_with_no_index_request_in_flight(tmp_path: Path) -> None:
    options = UpstreamOptions(prefix="/simple", format="json", latency_ms=300)
    with UpstreamServer(_index(), options) as slow:
        app = create_app(proxy_config(tmp_path / "cache", {"/simple": slow.url + "/simple"}))

        async def run() -> None:
            transport = httpx.ASGITransport(app=app)
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(transport=transport, base_url="http://wheelmeld") as client,
            ):
                idle: asyncio.Event = app.state.wheelmeld.idle
                assert idle.is_set()
                asking = [asyncio.create_task(client.get(f"/simple/{p}/")) for p in ("demo", "other")]
                await asyncio.sleep(0.15)  # both wait on the slow upstream
                assert not idle.is_set()
                first = await asking[0]
                assert first.status_code == 200
                assert not idle.is_set() or asking[1].done()
                assert (await asking[1]).status_code == 200
                assert idle.is_set()
                await client.get("/healthz")  # not index traffic: never counted
                assert idle.is_set()

        asyncio.run(run())


def test_a_journal_that_cannot_be_written_never_fails_a_page_and_is_never_made_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _journal(tmp_path)
    writer, reader = PageJournal(path, worker="1"), PageJournal(path, worker="2")
    writer.record(DEMO)
    assert reader.others() == [DEMO]
    path.unlink()  # say a temp-directory cleaner removed it
    writer.record(OTHER)  # no exception: a page fetch goes on without the journal
    writer.record(OTHER)
    assert sum("cannot be written" in r.getMessage() for r in caplog.records) == 1  # said once
    assert not path.exists(), "not made again where anyone could have put a file of that name"
    assert reader.others() == []
    target = tmp_path / "not-a-journal"
    target.write_text("precious\n")
    path.symlink_to(target)  # someone else's link where the journal was
    PageJournal(path, worker="3").record(DEMO)
    assert target.read_text() == "precious\n", "never written through a symbolic link"
