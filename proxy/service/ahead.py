"""Running ahead of the resolver: meld what a client will most likely ask for before it asks.

A resolver discovers a lock level by level (page, metadata, the dependencies' pages, theirs …) and
each meld starts only when it asks for that release, so upstream latency and resolver depth multiply.
Once a client has a release's metadata, this service fetches, in the background, the pages of its
requirements and warms the melds of the releases each will most likely resolve to (``ahead_choice``),
through the very ``PageService.lookup`` and ``MetadataService.serve`` a client request takes: what
it leaves behind is exactly what that request would have put in the cache, so no answer changes.

Bounded per trigger (the release a client asked for): ``depth`` levels below it, ``releases`` in
all (the fork's extra version of ``likely_releases`` counts as one, and nothing runs ahead below
it). Its jobs run ``concurrency`` at a time and fetch within as many upstream slots
(``background``), below the route's own gates, so client traffic goes first; a job a client starts
waiting for is promoted to a client's speed. Slots go breadth-first (``_turn``): a level's pages,
then its melds, then the next level's, whatever trigger they came from; pins first in a level. A
job skips a meld a client asked for itself, and waits for a page a client is fetching without
holding a slot. A trigger's tree nobody asked anything of for ``window`` seconds is cancelled.
Counted as ``wheelmeld_ahead_total{outcome}``: started, used (a client later asked for it), wasted
(never asked before it was cancelled, evicted or the worker stopped), cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from proxy.cache.store import PageKey
from proxy.errors import WheelmeldError
from proxy.index.releases import Release
from proxy.network.upstream import Upstream
from proxy.observe import AheadOutcome, Metrics, RequestFacts, start_request
from proxy.service.ahead_choice import (
    Wanted,
    covered_pythons,
    likely_releases,
    metadata_requirements,
    wanted_requirements,
)
from proxy.service.background import Budget, PriorityGate, Turn, background_slot, running_ahead, spend
from proxy.service.pages import PageEntry, PageService
from proxy.service.served_metadata import MetadataService

__all__ = ["AheadLimits", "AheadService"]

log = logging.getLogger("wheelmeld")

# Warmed work remembered until a client asks for it; the oldest beyond this counts as wasted.
_REMEMBERED = 4096


@dataclass(frozen=True, slots=True)
class AheadLimits:
    """Running ahead's bounds, from ``Config.meld_run_ahead_*`` (the one place their defaults live)."""

    depth: int  # levels of requirements below the release a client asked for; 0: off
    releases: int  # releases warmed per trigger
    concurrency: int  # jobs under way at once, and upstream requests they may have in flight
    window: float  # seconds a trigger's tree runs on without a client asking any of it


@dataclass(slots=True, eq=False)  # by identity: trees live in sets
class _Tree:
    """The work one client-asked release started; cancelled as a whole."""

    asked_at: float
    scheduled: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    pages: set[PageKey] = field(default_factory=set)


@dataclass(slots=True)
class _Warm:
    """Something running ahead fetched or melded that no client has asked for yet."""

    tree: _Tree
    requests: int = 0  # upstream requests it cost
    budget: Budget | None = None  # while under way: promoted when a client starts waiting for it
    outcome: AheadOutcome | None = None  # USED or WASTED once settled (work under way may be either)


# What a warm entry is: a page ("page", key) or a release's meld ("meld", key, release key).
_WarmKey = tuple[object, ...]


class AheadService:
    def __init__(
        self,
        pages: PageService,
        metadata: MetadataService,
        metrics: Metrics,
        limits: AheadLimits,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pages = pages
        self._metadata = metadata
        self._metrics = metrics
        self._limits = limits
        self._clock = clock
        self._jobs = PriorityGate(max(1, limits.concurrency))
        self._order = itertools.count()  # jobs of one level: first scheduled, first served
        self._gate = PriorityGate(max(1, limits.concurrency))
        self._trees: set[_Tree] = set()  # those with work to do; a cancelled one is out
        self._tasks: set[asyncio.Task[None]] = set()
        self._by_page: dict[PageKey, _Tree] = {}
        self._warm: OrderedDict[_WarmKey, _Warm] = OrderedDict()
        self._seen: set[_WarmKey] = set()  # scheduled once per worker (a set bounded like _warm)
        self._asked: set[PageKey] = set()  # pages clients asked for (bounded like _seen)
        self._asked_melds: set[tuple[PageKey, str]] = set()  # releases' metadata they asked for (idem)
        self._deferred = 0  # served answers whose run-ahead is still to be chosen (served_metadata)
        self._closed = False
        self._settled = asyncio.Event()
        self._settled.set()

    def enabled(self, upstream: Upstream) -> bool:
        return self._limits.depth > 0 and upstream.route.run_ahead and upstream.route.meld

    # -- what clients ask ------------------------------------------------------------------------
    def asked_page(self, key: PageKey) -> None:
        """A client asked for ``key``'s page: its tree runs on, and a page fetched ahead was used."""
        self._sweep()
        if len(self._asked) >= 4 * _REMEMBERED:
            self._asked.clear()
        self._asked.add(key)
        tree = self._by_page.get(key)
        if tree is not None:
            tree.asked_at = self._clock()
        self._use(("page", key))

    def asking_metadata(self, key: PageKey, release: Release | None) -> None:
        """Before a client's ``.metadata`` is served: work under way for it runs at a client's speed."""
        if release is None:
            return
        self.asked_page(key)
        if len(self._asked_melds) >= 4 * _REMEMBERED:
            self._asked_melds.clear()
        self._asked_melds.add((key, release.key))
        warm = self._warm.get(("meld", key, release.key))
        if warm is not None and warm.budget is not None:
            warm.budget.promote()
        self._use(("meld", key, release.key))

    def served_metadata(self, key: PageKey, release: Release | None, body: bytes, upstream: Upstream) -> None:
        """A client got ``release``'s metadata ``body``: run ahead of it, a new tree rooted there.

        At the loop's next turn, not before the answer: reading a big release's requirements and
        choosing what to start cost up to a few ms, and the client's next requests wait for this
        answer (its handler writes a small response without yielding, so it goes out first).
        """
        if release is None or not self.enabled(upstream) or self._closed:
            return
        self._deferred += 1
        self._settled.clear()
        asyncio.get_running_loop().call_soon(self._served_later, key, release, body, upstream)

    def _served_later(self, key: PageKey, release: Release, body: bytes, upstream: Upstream) -> None:
        self._deferred -= 1
        if not self._closed:
            self._trigger("served", key, release, body, upstream)
        self._settle_if_idle()

    def first_metadata(self, key: PageKey, release: Release, body: bytes, upstream: Upstream) -> None:
        """A client's meld of ``release`` read its first sibling, ``body``: run ahead from it while
        the meld reads the rest (``MetadataService.on_first_metadata``). A meld run ahead goes on
        from its own result instead, within its tree's depth."""
        if not running_ahead():
            self._trigger("first", key, release, body, upstream)

    def _trigger(
        self, what: str, key: PageKey, release: Release | None, body: bytes, upstream: Upstream
    ) -> None:
        if release is None or not self.enabled(upstream):
            return
        if not self._remember(("trigger", what, key, release.key)):
            return
        tree = _Tree(self._clock())
        self._trees.add(tree)
        self._by_page[key] = tree
        tree.pages.add(key)
        self._expand(tree, key, release, body, frozenset(), None, upstream, 1)
        if not tree.tasks:
            self._retire(tree)

    # -- the work --------------------------------------------------------------------------------
    def _expand(
        self,
        tree: _Tree,
        key: PageKey,
        release: Release,
        body: bytes,
        extras: frozenset[str],
        within: frozenset[tuple[int, int]] | None,
        upstream: Upstream,
        depth: int,
    ) -> None:
        """Start a job for each requirement of ``release`` (its metadata ``body``), at ``depth``."""
        requires_python, requirements = metadata_requirements(body)
        pythons = covered_pythons(release, requires_python, within)
        for item in wanted_requirements(requirements, extras, pythons):
            if tree.scheduled >= self._limits.releases:
                return
            target = PageKey(key.route, (*key.path[:-1], item.name))
            if self._remember(("job", target, str(item.specifier), item.extras, pythons)):
                tree.scheduled += 1
                self._schedule(tree, self._warm_one(tree, target, item, pythons, upstream, depth))

    async def _warm_one(
        self,
        tree: _Tree,
        key: PageKey,
        wanted: Wanted,
        pythons: frozenset[tuple[int, int]],
        upstream: Upstream,
        depth: int,
    ) -> None:
        """One job: ``wanted``'s page, then the melds of the releases it most likely resolves to
        (``likely_releases``), each step taking its turn (``_turn``)."""
        sequence = next(self._order)
        facts, _token = start_request()  # this task's own: counts only what it makes upstream
        spend(Budget(self._gate, _turn(depth, wanted.pinned, sequence, meld=False)))
        if key in self._asked:
            # A client's request fetches this page: wait for it without holding a job's slot.
            with contextlib.suppress(WheelmeldError):
                await self._pages.lookup(key, upstream)
        async with self._jobs.slot(_turn(depth, wanted.pinned, sequence, meld=False)):
            if not self._alive(tree):
                return
            self._metrics.ahead[AheadOutcome.STARTED] += 1
            entry = await self._page(tree, key, upstream, facts)
            if entry.page is None:
                return
            groups = await asyncio.to_thread(entry.release_groups)
            likely = await asyncio.to_thread(likely_releases, entry.page.files, groups, wanted, pythons)
        for index, release in enumerate(likely):
            if index > 0:  # the extra version counts against the tree's bound as its own release
                if tree.scheduled >= self._limits.releases:
                    return
                tree.scheduled += 1
            turn = _turn(depth, wanted.pinned, sequence, meld=True)
            async with self._jobs.slot(turn):
                if not self._alive(tree):
                    return
                if self._under_way(entry.key, release):
                    continue  # a client asked for it (and runs ahead from it), or another job melds it
                body = await self._meld(tree, entry.key, release, upstream, facts, turn)
            # Below the extra version nothing more: a resolver asks for it only where it forks.
            if index == 0 and depth < self._limits.depth and self._alive(tree):
                self._expand(tree, entry.key, release, body, wanted.extras, pythons, upstream, depth + 1)

    def _under_way(self, key: PageKey, release: Release) -> bool:
        if (key, release.key) in self._asked_melds:
            return True
        warm = self._warm.get(("meld", key, release.key))
        return warm is not None and warm.budget is not None

    async def _meld(
        self,
        tree: _Tree,
        key: PageKey,
        release: Release,
        upstream: Upstream,
        facts: RequestFacts,
        order: Turn,
    ) -> bytes:
        """``release``'s served metadata, melded within a budget of its own (promoted when a
        client starts waiting for it); what it cost upstream is charged to it."""
        # Known already (a client's, or another tree's): read back without upstream requests,
        # only to go on below it.
        budget = Budget(self._gate, order)
        spend(budget)
        known = self._metadata.knows(key, release)
        warm = None if known else self._warmed(("meld", key, release.key), tree, budget)
        before = facts.upstream_requests
        try:
            served = await self._metadata.serve(key, release, release.wheels[0], upstream)
        finally:
            if warm is not None:
                warm.budget = None
                self._charge(warm, facts.upstream_requests - before)
        return served.body

    async def _page(self, tree: _Tree, key: PageKey, upstream: Upstream, facts: RequestFacts) -> PageEntry:
        """``key``'s page, as a client's request would find it; what fetching it cost is charged to
        it, or counted as wasted when there is none to have (a client would fetch it again)."""
        try:
            async with background_slot():
                entry = await self._pages.lookup(key, upstream)
        except WheelmeldError:
            self._metrics.ahead[AheadOutcome.WASTED] += 1
            self._metrics.ahead_requests[AheadOutcome.WASTED] += facts.upstream_requests
            raise
        self._by_page[entry.key] = tree
        tree.pages.add(entry.key)
        if facts.upstream_requests:
            self._charge(self._warmed(("page", entry.key), tree), facts.upstream_requests)
        return entry

    def _schedule(self, tree: _Tree, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        tree.tasks.add(task)
        self._tasks.add(task)
        self._settled.clear()
        self._metrics.ahead_running += 1

        def done(finished: asyncio.Task[None]) -> None:
            self._metrics.ahead_running -= 1
            tree.tasks.discard(finished)
            self._tasks.discard(finished)
            if not finished.cancelled():
                exc = finished.exception()
                if isinstance(exc, WheelmeldError):
                    log.debug("running ahead: %s", exc.reason)
                elif exc is not None:
                    log.error("running ahead failed", exc_info=exc)
            if not tree.tasks:
                self._retire(tree)
            self._settle_if_idle()

        task.add_done_callback(done)

    def _settle_if_idle(self) -> None:
        if not self._tasks and not self._deferred:
            self._settled.set()

    # -- bookkeeping -----------------------------------------------------------------------------
    def _alive(self, tree: _Tree) -> bool:
        """Whether ``tree`` may run on; one nobody asked anything of within the window is cancelled."""
        self._sweep()
        return tree in self._trees

    def _sweep(self) -> None:
        """Cancel every tree nobody asked anything of within the window."""
        now = self._clock()
        for tree in [t for t in self._trees if now - t.asked_at > self._limits.window]:
            self._cancel(tree)

    def _cancel(self, tree: _Tree) -> None:
        for task in list(tree.tasks):
            self._metrics.ahead[AheadOutcome.CANCELLED] += 1
            task.cancel()
        self._retire(tree)
        for warm_key in [k for k, w in self._warm.items() if w.tree is tree]:
            self._settle(warm_key, AheadOutcome.WASTED)

    def _retire(self, tree: _Tree) -> None:
        """``tree`` has no more work (done, or cancelled): client requests no longer keep it going."""
        self._trees.discard(tree)
        for page in tree.pages:
            if self._by_page.get(page) is tree:
                del self._by_page[page]

    def _remember(self, key: _WarmKey) -> bool:
        """Whether ``key`` is new (then remembered): each job and trigger runs once per worker."""
        if key in self._seen:
            return False
        if len(self._seen) >= 4 * _REMEMBERED:
            self._seen.clear()
        self._seen.add(key)
        return True

    def _warmed(self, key: _WarmKey, tree: _Tree, budget: Budget | None = None) -> _Warm:
        warm = self._warm.get(key)
        if warm is not None:  # two requirements of one project led to one release
            return warm
        warm = self._warm[key] = _Warm(tree, 0, budget)
        while len(self._warm) > _REMEMBERED:
            self._settle(next(iter(self._warm)), AheadOutcome.WASTED)
        return warm

    def _charge(self, warm: _Warm, requests: int) -> None:
        warm.requests += requests
        if warm.outcome is None:
            self._metrics.ahead_unused_requests += requests
        else:  # a client asked for it, or it was given up, while it was under way
            self._metrics.ahead_requests[warm.outcome] += requests

    def _use(self, key: _WarmKey) -> None:
        if key in self._warm:
            self._settle(key, AheadOutcome.USED)

    def _settle(self, key: _WarmKey, outcome: AheadOutcome) -> None:
        """``key``'s warmed work was used, or is given up as wasted, with the requests it cost."""
        warm = self._warm.pop(key)
        warm.outcome = outcome
        self._metrics.ahead[outcome] += 1
        self._metrics.ahead_requests[outcome] += warm.requests
        self._metrics.ahead_unused_requests -= warm.requests

    async def settled(self) -> None:
        """Until no job is under way (tests, and a clean stop)."""
        await self._settled.wait()

    async def close(self) -> None:
        """The worker stops: cancel everything, and what was never asked for is wasted."""
        self._closed = True  # run-ahead still to be chosen is not chosen any more
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for warm_key in list(self._warm):
            self._settle(warm_key, AheadOutcome.WASTED)


def _turn(depth: int, pinned: bool, sequence: int, *, meld: bool) -> Turn:
    """A step's turn at the job and upstream gates, the lowest first: breadth-first over the graph
    a resolver walks (the pages of a level, then their melds, then the next level's pages); in a
    level, pinned requirements (``==`` one version) first, as uv decides those before the rest
    (pydantic's ``pydantic-core==``), then the job scheduled first. A client's own requests never
    wait at these gates."""
    return (2 * depth + meld, not pinned, sequence)
