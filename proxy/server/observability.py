"""What the proxy tells its operator: Prometheus counters, one access-log line per request, recent melds.

The counters are plain integers owned by the app (no client library: a dozen counters do not justify a
dependency). The access log is a pure ASGI middleware so it sees the real status and byte count of
streamed responses. What the line says of the cache and of upstream is gathered while the request is
answered in its ``RequestFacts``, reachable from any code that runs for it (``request_facts``).
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from proxy.cache.errors import CacheWriteError
from proxy.text import escape_controls

__all__ = [
    "AccessLog",
    "CacheOutcome",
    "MeldEntry",
    "MeldLog",
    "Metrics",
    "RequestFacts",
    "not_cached",
    "note_cache",
    "request_note",
    "upstream_calls",
    "upstream_time",
]

log = logging.getLogger("wheelmeld.access")


class CacheOutcome(enum.Enum):
    """How the cache answered one request's lookup."""

    HIT = "hit"  # served from the cache, upstream not asked
    MISS = "miss"  # fetched from upstream (the cache had nothing, or an outdated copy)
    REVALIDATED = "revalidated"  # upstream said 304: the cached copy, confirmed
    STALE = "stale"  # upstream failed: the last good copy, marked stale


@dataclass(slots=True)
class RequestFacts:
    """What one request cost, filled in by whatever code runs for it (tasks it starts included)."""

    cache: CacheOutcome | None = None
    upstream_ms: float = 0.0
    upstream_calls: int = 0


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
    not_cached: Counter[tuple[str, str]] = field(default_factory=Counter)  # (kind, CacheFault value)

    def upstream_request(self, kind: str, count: int = 1, nbytes: int = 0) -> None:
        self.upstream_requests[kind] += count
        self.upstream_bytes += nbytes

    def meld_done(self, *, disagreed: bool, conflicts: int) -> None:
        self.melds += 1
        self.melds_disagreed += int(disagreed)
        self.meld_conflicts += conflicts

    def meld_unavailable(self) -> None:
        self.melds_unavailable += 1

    def render(self, cache_bytes: int | None = None) -> bytes:
        lines = [
            "# HELP wheelmeld_requests_total Requests answered, by route and status.",
            "# TYPE wheelmeld_requests_total counter",
        ]
        for (route, status), n in sorted(self.requests.items()):
            lines.append(f'wheelmeld_requests_total{{route="{route}",status="{status}"}} {n}')
        lines += [
            "# HELP wheelmeld_cache_total Cache lookups by outcome.",
            "# TYPE wheelmeld_cache_total counter",
        ]
        for outcome in CacheOutcome:
            lines.append(f'wheelmeld_cache_total{{outcome="{outcome.value}"}} {self.cache[outcome]}')
        lines += [
            "# HELP wheelmeld_upstream_requests_total Requests sent upstream, by kind (page, metadata, "
            "range, file).",
            "# TYPE wheelmeld_upstream_requests_total counter",
        ]
        for kind, n in sorted(self.upstream_requests.items()):
            lines.append(f'wheelmeld_upstream_requests_total{{kind="{kind}"}} {n}')
        singles = {
            "wheelmeld_upstream_bytes_total": (
                "Body bytes received from upstreams (pages, metadata, ranges, files).",
                self.upstream_bytes,
            ),
            "wheelmeld_melds_total": ("Releases melded.", self.melds),
            "wheelmeld_melds_disagreed_total": (
                "Melded releases whose wheels disagreed.",
                self.melds_disagreed,
            ),
            "wheelmeld_meld_conflicts_total": (
                "Disagreements markers could not express.",
                self.meld_conflicts,
            ),
            "wheelmeld_melds_unavailable_total": (
                "Melds that could not be made; own metadata served.",
                self.melds_unavailable,
            ),
            "wheelmeld_blocked_fetches_total": (
                "File links refused by the fetch policy.",
                self.blocked_fetches,
            ),
            "wheelmeld_pages_loaded_ahead_total": (
                "Pages this worker loaded from disk after a sibling worker fetched them, before a request.",
                self.pages_loaded_ahead,
            ),
        }
        for name, (help_text, value) in singles.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter", f"{name} {value}"]
        lines += [
            "# HELP wheelmeld_not_cached_total Answers served without being kept: the cache refused them.",
            "# TYPE wheelmeld_not_cached_total counter",
        ]
        for (kind, fault), n in sorted(self.not_cached.items()):
            lines.append(f'wheelmeld_not_cached_total{{kind="{kind}",reason="{fault}"}} {n}')
        if cache_bytes is not None:
            lines += [
                "# HELP wheelmeld_cache_bytes Bytes the cache holds on disk.",
                "# TYPE wheelmeld_cache_bytes gauge",
                f"wheelmeld_cache_bytes {cache_bytes}",
            ]
        return ("\n".join(lines) + "\n").encode()


@dataclass(slots=True)
class MeldEntry:
    page: str
    example_file: str
    report: dict[str, Any]
    at: float


class MeldLog:
    """The most recent releases whose wheels disagreed, for the status page."""

    def __init__(self, size: int = 50) -> None:
        self._entries: deque[MeldEntry] = deque(maxlen=size)

    def add(self, page: str, example_file: str, report: dict[str, Any]) -> None:
        self._entries.appendleft(MeldEntry(page, example_file, report, time.time()))
        for conflict in report.get("conflicts", ()):
            logging.getLogger("wheelmeld.meld").warning(
                "meld conflict in %s: %s", escape_controls(page), escape_controls(str(conflict))
            )

    def recent(self) -> list[MeldEntry]:
        return list(self._entries)


def request_note(scope: Scope, **values: Any) -> None:
    """Attach facts (cache outcome, upstream time, route) to the current request's access-log line."""
    scope.setdefault("state", {}).setdefault("wheelmeld", {}).update(values)


class _SecondClock:
    """ISO 8601 UTC stamps with milliseconds; the date and time part is formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def stamp(self, wall: float) -> str:
        second = int(wall)
        if second != self._second:
            self._second, self._text = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._text}.{int((wall - second) * 1000):03d}Z"


class AccessLog:
    """One structured line per request: method, path, status, bytes, duration, cache, upstream time."""

    def __init__(self, app: ASGIApp, metrics: Metrics, fmt: str = "text") -> None:
        self.app = app
        self.metrics = metrics
        self.fmt = fmt
        self._clock = _SecondClock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        wall = time.time()
        status = 500
        sent = 0
        facts = RequestFacts()
        token = _FACTS.set(facts)

        async def counting_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            _FACTS.reset(token)
            notes = scope.get("state", {}).get("wheelmeld", {})
            route = notes.get("route", "-")
            self.metrics.requests[(route, status)] += 1
            # A ready answer (proxy.server.ready) is sent again without any lookup: it says "hit".
            noted = notes.get("cache")
            outcome = facts.cache or (noted if isinstance(noted, CacheOutcome) else None)
            if outcome is not None:
                self.metrics.cache[outcome] += 1
            if log.isEnabledFor(logging.INFO):
                ms = round((time.perf_counter() - started) * 1000, 2)
                self._write(scope, outcome, facts, wall, status, sent, ms)

    def _write(
        self,
        scope: Scope,
        outcome: CacheOutcome | None,
        facts: RequestFacts,
        wall: float,
        status: int,
        sent: int,
        ms: float,
    ) -> None:
        # "time" is when the request arrived (UTC, ms): with "ms", a timeline of overlapping requests.
        # The path is logged, never the query: credentials could be there.
        stamp, method, path = self._clock.stamp(wall), scope["method"], scope["path"]
        cache = outcome.value if outcome is not None else "-"
        upstream_ms: float | str = round(facts.upstream_ms, 2) if facts.upstream_calls else "-"
        if self.fmt == "json":
            # json.dumps writes every control character as an escape itself.
            line = json.dumps(
                {
                    "time": stamp,
                    "method": method,
                    "path": path,
                    "status": status,
                    "bytes": sent,
                    "ms": ms,
                    "cache": cache,
                    "upstream_ms": upstream_ms,
                }
            )
        else:
            line = (
                f"time={stamp} method={escape_controls(method)} path={escape_controls(path)} "
                f"status={status} bytes={sent} ms={ms} cache={cache} upstream_ms={upstream_ms}"
            )
        # A record made directly: Logger.info would walk the stack for a caller nobody prints, the
        # largest share of this line's cost on a warm request (benchmarks/README.md).
        log.handle(log.makeRecord(log.name, logging.INFO, __file__, 0, line, (), None))


def not_cached(metrics: Metrics, kind: str, name: str, exc: CacheWriteError) -> None:
    """The cache refused to keep ``name`` (a page, metadata, a file): it is served uncached."""
    metrics.not_cached[(kind, exc.fault.value)] += 1
    logging.getLogger("wheelmeld").warning(
        "serving %s %s uncached: %s", kind, escape_controls(name), escape_controls(str(exc))
    )
