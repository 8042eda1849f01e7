"""Running ahead stops: when nobody asks anything of its tree within the window (an injected clock),
and when the worker stops, what it warmed for nobody counts as wasted, with its upstream requests.

In process: the worker's ``AppState`` in front of a real fake upstream, asked as the dispatcher asks.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from proxy.cache.store import PageKey
from proxy.observe import AheadOutcome, Metrics
from proxy.server.state import AppState
from tests.support.fake_index import FakeIndex
from tests.support.proxy import proxy_config
from tests.support.stack import wheel
from tests.support.upstream import Fault, UpstreamOptions, UpstreamServer

WINDOW = 30.0


def _index(width: int) -> FakeIndex:
    projects = {"root": (wheel("root-1.0-py3-none-any.whl", [f"p{i}" for i in range(width)]),)}
    for i in range(width):
        projects[f"p{i}"] = (
            wheel(f"p{i}-1.0-cp311-cp311-manylinux_2_28_x86_64.whl", ["x"]),
            wheel(f"p{i}-1.0-cp311-cp311-win_amd64.whl"),
        )
    return FakeIndex(projects)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _ask_root(state: AppState) -> None:
    """What the dispatcher does for a client's ``root-1.0-py3-none-any.whl.metadata``."""
    upstream = state.upstreams["/simple"]
    key = PageKey("simple", ("root",))
    entry = await state.pages.lookup(key, upstream)
    release = entry.release_groups()["root-1.0-py3-none-any.whl"]
    state.ahead.asking_metadata(key, release)
    served = await state.metadata.serve(key, release, release.wheels[0], upstream)
    state.ahead.served_metadata(key, release, served.body, upstream)


async def _stop(state: AppState) -> Metrics:
    """Once running ahead has nothing under way: the worker stops (the lifespan's end)."""
    await state.ahead.settled()
    await state.ahead.close()
    await state.upstreams["/simple"].aclose()
    return state.metrics


def _state(up: UpstreamServer, cache: Path, clock: _Clock, **config: object) -> AppState:
    settings = {"meld_run_ahead_depth": 2, "meld_run_ahead_window": WINDOW, **config}
    state = AppState(
        proxy_config(cache, {"/simple": up.url + "/simple"}, **settings), Metrics(), None, clock=clock
    )
    state.store.prepare()
    return state


def test_a_tree_nobody_asks_of_is_cancelled(tmp_path: Path) -> None:
    clock = _Clock()
    with UpstreamServer(_index(6), UpstreamOptions(prefix="/simple")) as up:
        up.inject_fault("/p0/", Fault(head_delay_ms=3000))  # the first job hangs on its page

        async def run() -> Metrics:
            state = _state(up, tmp_path / "cache", clock, meld_run_ahead_concurrency=1)
            await _ask_root(state)
            while not up.requests_for("/p0/"):  # noqa: ASYNC110 (the upstream runs in a thread)
                await asyncio.sleep(0.01)
            clock.now += WINDOW + 1
            state.ahead.asked_page(PageKey("simple", ("elsewhere",)))  # any request looks at the clock
            return await _stop(state)

        metrics = asyncio.run(run())
        # One job cut off on its page, five that never started; no page after the first was asked.
        assert metrics.ahead[AheadOutcome.CANCELLED] == 6
        assert metrics.ahead[AheadOutcome.STARTED] == 1
        assert [r.path for r in up.requests_for("/") if "/p" in r.path] == ["/simple/p0/"]
        assert not [r for r in up.requests_for(".whl") if "/p" in r.path]


def test_a_tree_a_client_keeps_asking_of_runs_on(tmp_path: Path) -> None:
    clock = _Clock()
    with UpstreamServer(_index(3), UpstreamOptions(prefix="/simple")) as up:

        async def run() -> Metrics:
            state = _state(up, tmp_path / "cache", clock, meld_run_ahead_concurrency=1)
            await _ask_root(state)
            clock.now += WINDOW - 1
            state.ahead.asked_page(PageKey("simple", ("root",)))  # the client is still at it
            clock.now += WINDOW - 1
            state.ahead.asked_page(PageKey("simple", ("elsewhere",)))
            return await _stop(state)

        metrics = asyncio.run(run())
        assert metrics.ahead[AheadOutcome.CANCELLED] == 0
        assert metrics.ahead[AheadOutcome.STARTED] == 3 + 1  # each p, and x below them


def test_what_nobody_asked_for_is_wasted_with_its_requests(tmp_path: Path) -> None:
    clock = _Clock()
    with UpstreamServer(_index(4), UpstreamOptions(prefix="/simple")) as up:

        async def run() -> tuple[Metrics, int]:
            state = _state(up, tmp_path / "cache", clock)
            await _ask_root(state)
            client_requests = len(up.log)
            await state.ahead.settled()
            ahead_requests = len(up.log) - client_requests
            metrics = state.metrics
            wasted = metrics.ahead_requests[AheadOutcome.WASTED]  # x: not upstream
            assert metrics.ahead_unused_requests + wasted == ahead_requests > 0
            await state.ahead.close()  # the worker stops
            await state.upstreams["/simple"].aclose()
            return metrics, ahead_requests

        metrics, ahead_requests = asyncio.run(run())
        assert metrics.ahead[AheadOutcome.WASTED] == 4 + 4 + 1  # each p's page and meld; x's 404
        assert metrics.ahead_requests[AheadOutcome.WASTED] == ahead_requests  # as the upstream counts
        assert metrics.ahead_unused_requests == 0
        assert metrics.ahead[AheadOutcome.USED] == 0


def test_an_answer_served_as_the_worker_stops_starts_nothing(tmp_path: Path) -> None:
    # What a served answer runs ahead is chosen at the loop's next turn (after the answer is
    # written); a worker stopping in between must not start it on clients it has already closed.
    clock = _Clock()
    with UpstreamServer(_index(3), UpstreamOptions(prefix="/simple")) as up:

        async def run() -> tuple[Metrics, bool]:
            state = _state(up, tmp_path / "cache", clock)
            upstream = state.upstreams["/simple"]
            key = PageKey("simple", ("root",))
            entry = await state.pages.lookup(key, upstream)
            release = entry.release_groups()["root-1.0-py3-none-any.whl"]
            served = await state.metadata.serve(key, release, release.wheels[0], upstream)
            state.ahead.served_metadata(key, release, served.body, upstream)
            settled_before = state.ahead._settled.is_set()
            await state.ahead.close()
            await asyncio.sleep(0)  # one loop turn: the deferred choice runs now, if ever
            await state.ahead.settled()
            await upstream.aclose()
            return state.metrics, settled_before

        metrics, settled_before = asyncio.run(run())
        assert not settled_before, "a choice still to be made is work under way"
        assert metrics.ahead[AheadOutcome.STARTED] == 0
        assert not [r for r in up.log.records() if "/p" in r.path]
