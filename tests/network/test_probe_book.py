"""Which unadvertised PEP 658 files are probed: ``ProbeBook`` as a table of outcomes, and
``MetadataFetcher`` against a real loopback upstream that starts serving the files later."""

from __future__ import annotations

import asyncio

import pytest

from proxy.cache.store import PageKey
from proxy.config import RouteConfig
from proxy.index.model import DistFile
from proxy.network.metadata_fetch import MetadataFetcher
from proxy.network.probe_book import ProbeBook, ProbePlan
from proxy.network.upstream import Upstream
from proxy.observe import Metrics
from tests.support.fake_index import FakeIndex
from tests.support.stack import wheel
from tests.support.upstream import UpstreamOptions, UpstreamServer

ROUTE = "/simple"


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _page(project: str) -> PageKey:
    return PageKey("simple", (project,))


# Each step: (project, what its probe got); then the plan asked for one project.
@pytest.mark.parametrize(
    ("steps", "last"),
    [
        ([], ("a", ProbePlan.TRY)),
        ([("a", True)], ("a", ProbePlan.EXPECT)),
        ([("a", True), ("a", True)], ("a", ProbePlan.EXPECT)),
        # A miss, before or after answers: PEP 658 files go by release, so each is tried.
        ([("a", False)], ("a", ProbePlan.TRY)),
        ([("a", False), ("a", False)], ("a", ProbePlan.TRY)),
        ([("a", True), ("a", False)], ("a", ProbePlan.TRY)),
        ([("a", False), ("a", True)], ("a", ProbePlan.TRY)),
        ([("a", True)], ("b", ProbePlan.TRY)),
        ([(f"p{i}", False) for i in range(7)], ("new", ProbePlan.TRY)),
        ([(f"p{i}", False) for i in range(8)], ("new", ProbePlan.SKIP)),
        ([("p0", False)] * 8, ("new", ProbePlan.SKIP)),
        # A route that answered once keeps probing, however many miss after or before.
        ([("good", True), *((f"p{i}", False) for i in range(8))], ("new", ProbePlan.TRY)),
        ([*((f"p{i}", False) for i in range(8)), ("good", True)], ("new", ProbePlan.TRY)),
        ([*((f"p{i}", False) for i in range(8)), ("good", True)], ("good", ProbePlan.EXPECT)),
    ],
)
def test_plans_follow_what_was_learned(steps: list[tuple[str, bool]], last: tuple[str, ProbePlan]) -> None:
    book = ProbeBook(_Clock())
    for project, found in steps:
        book.record(ROUTE, _page(project), found=found)
    assert book.plan(ROUTE, _page(last[0])) is last[1]


@pytest.mark.parametrize(
    ("steps", "doubted"),
    [
        ([], False),
        ([("a", False)], True),
        ([("a", False), ("b", False)], True),
        ([("a", True)], False),
        ([("a", False), ("b", True)], False),
        ([("a", True), ("b", False)], False),
    ],
)
def test_a_route_is_doubted_once_it_missed_and_until_it_answers(
    steps: list[tuple[str, bool]], doubted: bool
) -> None:
    book = ProbeBook(_Clock())
    for project, found in steps:
        book.record(ROUTE, _page(project), found=found)
    assert book.doubted(ROUTE) is doubted
    assert book.doubted("/other") is False, "routes are learned apart"


def test_a_pause_ends_one_miss_renews_it_and_one_answer_ends_it_for_good() -> None:
    clock = _Clock()
    book = ProbeBook(clock, give_up=2, pause=60.0)
    for project in ("a", "b"):
        book.record(ROUTE, _page(project), found=False)
    assert book.plan(ROUTE, _page("c")) is ProbePlan.SKIP
    assert book.plan("/other", _page("c")) is ProbePlan.TRY, "routes are learned apart"
    clock.now += 61
    assert book.plan(ROUTE, _page("c")) is ProbePlan.TRY
    book.record(ROUTE, _page("c"), found=False)
    assert book.plan(ROUTE, _page("d")) is ProbePlan.SKIP, "past a pause, one miss pauses again"
    clock.now += 61
    book.record(ROUTE, _page("d"), found=True)
    assert book.plan(ROUTE, _page("e")) is ProbePlan.TRY
    for project in ("e", "f", "g"):
        book.record(ROUTE, _page(project), found=False)
    assert book.plan(ROUTE, _page("h")) is ProbePlan.TRY, "one answer enables probing for good"


def test_projects_kept_are_bounded() -> None:
    book = ProbeBook(_Clock(), max_projects=3)
    for project in ("a", "b", "c", "d"):
        book.record(ROUTE, _page(project), found=True)
    assert book.plan(ROUTE, _page("a")) is ProbePlan.TRY, "the least recently used was dropped"
    assert book.plan(ROUTE, _page("d")) is ProbePlan.EXPECT


def _solo(project: str) -> str:
    return f"{project}-1.0-py3-none-any.whl"


def test_a_route_that_starts_serving_the_files_is_noticed_again() -> None:
    projects = [f"p{i}" for i in range(12)]
    index = FakeIndex.from_files({p: [wheel(_solo(p), ["idna"])] for p in projects})
    options = UpstreamOptions(format="html", pep658=False, advertise_pep658=False, prefix=ROUTE)
    clock = _Clock()

    async def fetch(up: UpstreamServer, upstream: Upstream, fetcher: MetadataFetcher, project: str) -> None:
        dist = DistFile(_solo(project), up.file_url(_solo(project)), {}, None, False, False)
        fetched = await fetcher.fetch(_page(project), dist, upstream, may_probe=True, sibling=True)
        assert fetched.data.startswith(b"Metadata-Version")

    async def go(up: UpstreamServer) -> None:
        metrics = Metrics()
        upstream = Upstream(RouteConfig(prefix=ROUTE, upstream=up.url + ROUTE), metrics, timeout=10)
        fetcher = MetadataFetcher(metrics, clock)
        try:
            for project in projects[:9]:
                await fetch(up, upstream, fetcher, project)
            up.set_options(pep658=True)
            await fetch(up, upstream, fetcher, projects[9])
            assert len(up.requests_for(".metadata")) == 8, "paused after eight misses"
            clock.now += 3600
            await fetch(up, upstream, fetcher, projects[10])
            await fetch(up, upstream, fetcher, projects[11])
            assert metrics.probes == {False: 8, True: 2}
        finally:
            await upstream.aclose()

    with UpstreamServer(index, options) as up:
        asyncio.run(go(up))
    probed = [r.path.rsplit("/", 2)[1] for r in up.requests_for(".metadata")]
    assert probed == [*projects[:8], *projects[10:]]
    assert not up.requests_for("/" + _solo(projects[11])), "served from its PEP 658 file"
