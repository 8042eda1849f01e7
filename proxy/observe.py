"""What the proxy counts and remembers for its operator, below every layer that counts into it.

The counters are plain integers (no client library: a dozen counters do not justify a dependency);
the edge renders them (``proxy.server.observability``). What one request cost — its cache outcome,
its upstream time — is gathered in its ``RequestFacts``, reachable from any code that runs for it.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextvars import ContextVar, Token
from dataclasses import dataclass, field

from proxy.cache.errors import CacheWriteError
from proxy.cache.leases import LeaseOutcome
from proxy.cache.shared import SharedCounts
from proxy.meld import MeldReport
from proxy.text import escape_controls

__all__ = [
    "AheadOutcome",
    "CacheOutcome",
    "MeldEntry",
    "MeldLog",
    "Metrics",
    "RequestFacts",
    "end_request",
    "not_cached",
    "note_cache",
    "start_request",
    "upstream_calls",
    "upstream_time",
]


class CacheOutcome(enum.Enum):
    """How the cache answered one request's lookup."""

    HIT = "hit"  # served from the cache, upstream not asked
    MISS = "miss"  # fetched from upstream (the cache had nothing, or an outdated copy)
    REVALIDATED = "revalidated"  # upstream said 304: the cached copy, confirmed
    STALE = "stale"  # upstream failed: the last good copy, marked stale


class AheadOutcome(enum.Enum):
    """What became of one piece of work run ahead of the resolver (``proxy.service.ahead``)."""

    STARTED = "started"  # a job began: a requirement's page, then its likely release's meld
    USED = "used"  # a client later asked for a page or meld it warmed
    WASTED = "wasted"  # never asked for before it was cancelled, evicted or the worker stopped
    CANCELLED = "cancelled"  # a job cut off: nobody asked anything of its tree within the window


@dataclass(slots=True)
class RequestFacts:
    """What one request cost, filled in by whatever code runs for it (tasks it starts included)."""

    cache: CacheOutcome | None = None
    upstream_ms: float = 0.0
    upstream_calls: int = 0
    upstream_requests: int = 0  # as ``Metrics.upstream_request`` counts them (a range read's each)


# The facts of the request being answered: the access log sets a fresh one per request, and tasks
# started for it copy the context, so a meld's sibling fetches add to the request that began them.
_FACTS: ContextVar[RequestFacts | None] = ContextVar("wheelmeld_request_facts", default=None)


def note_cache(outcome: CacheOutcome, *, unless_noted: bool = False) -> None:
    """Record the current request's cache outcome (the lookup that decided its answer); with
    ``unless_noted``, only if the code that looked it up said nothing (it found it: a hit)."""
    facts = _FACTS.get()
    if facts is not None and not (unless_noted and facts.cache is not None):
        facts.cache = outcome


def upstream_calls() -> int:
    """How many upstream exchanges the current request has made so far (0 outside a request)."""
    facts = _FACTS.get()
    return facts.upstream_calls if facts is not None else 0


@contextlib.contextmanager
def upstream_time() -> Iterator[None]:
    """Count the time spent inside towards the current request's ``upstream_ms``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        facts = _FACTS.get()
        if facts is not None:
            facts.upstream_ms += (time.perf_counter() - started) * 1000
            facts.upstream_calls += 1


@dataclass(slots=True)
class Metrics:
    requests: Counter[tuple[str, int]] = field(default_factory=Counter)  # (route, status)
    cache: Counter[CacheOutcome] = field(default_factory=Counter)
    upstream_requests: Counter[str] = field(default_factory=Counter)  # by kind
    upstream_bytes: int = 0
    melds: int = 0
    melds_disagreed: int = 0
    meld_conflicts: int = 0
    melds_unavailable: int = 0
    blocked_fetches: int = 0
    pages_loaded_ahead: int = 0
    probes: Counter[bool] = field(default_factory=Counter)  # unadvertised PEP 658 probes, by found
    not_cached: Counter[tuple[str, str]] = field(default_factory=Counter)  # (kind, CacheFault value)
    leases: Counter[LeaseOutcome] = field(default_factory=Counter)  # fleet leases ([coordination])
    shared: SharedCounts = field(default_factory=SharedCounts)  # the bucket tier (backend s3)
    ahead: Counter[AheadOutcome] = field(default_factory=Counter)
    # Upstream requests spent on work run ahead, by what became of it (USED or WASTED).
    ahead_requests: Counter[AheadOutcome] = field(default_factory=Counter)
    ahead_unused_requests: int = 0  # spent on warmed work no client has asked for yet (a gauge)
    ahead_running: int = 0  # jobs run ahead that are under way or waiting for a slot (a gauge)

    def upstream_request(self, kind: str, count: int = 1, nbytes: int = 0) -> None:
        self.upstream_requests[kind] += count
        self.upstream_bytes += nbytes
        facts = _FACTS.get()
        if facts is not None:
            facts.upstream_requests += count

    def probe(self, *, found: bool) -> None:
        self.probes[found] += 1

    def meld_done(self, *, disagreed: bool, conflicts: int) -> None:
        self.melds += 1
        self.melds_disagreed += int(disagreed)
        self.meld_conflicts += conflicts

    def meld_unavailable(self) -> None:
        self.melds_unavailable += 1

    def lease(self, outcome: LeaseOutcome) -> None:
        self.leases[outcome] += 1


@dataclass(slots=True)
class MeldEntry:
    page: str
    example_file: str
    report: MeldReport
    at: float


class MeldLog:
    """The most recent releases whose wheels disagreed, for the status page."""

    def __init__(self, size: int = 50) -> None:
        self._entries: deque[MeldEntry] = deque(maxlen=size)

    def add(self, page: str, example_file: str, report: MeldReport) -> None:
        self._entries.appendleft(MeldEntry(page, example_file, report, time.time()))
        for conflict in report.conflicts:
            logging.getLogger("wheelmeld.meld").warning(
                "meld conflict in %s: %s", escape_controls(page), escape_controls(str(conflict))
            )

    def recent(self) -> list[MeldEntry]:
        return list(self._entries)


def not_cached(metrics: Metrics, kind: str, name: str, exc: CacheWriteError) -> None:
    """The cache refused to keep ``name`` (a page, metadata, a file): it is served uncached."""
    metrics.not_cached[(kind, exc.fault.value)] += 1
    logging.getLogger("wheelmeld").warning(
        "serving %s %s uncached: %s", kind, escape_controls(name), escape_controls(str(exc))
    )


def start_request() -> tuple[RequestFacts, Token[RequestFacts | None]]:
    """Fresh facts for the request about to be answered; ``end_request`` with the token after it."""
    facts = RequestFacts()
    return facts, _FACTS.set(facts)


def end_request(token: Token[RequestFacts | None]) -> None:
    _FACTS.reset(token)
