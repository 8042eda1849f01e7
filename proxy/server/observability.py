"""The operator's view at the HTTP edge: the counters as Prometheus text, one access-log line per request.

The access log is a pure ASGI middleware so it sees the real status and byte count of streamed
responses; what the line says of the cache and of upstream comes from the request's ``RequestFacts``
(``proxy.observe``).
"""

from __future__ import annotations

import enum
import json
import logging
import time
from collections import Counter
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from proxy.cache.leases import LeaseOutcome
from proxy.cache.shared import SharedCounts, SharedKind
from proxy.observe import AheadOutcome, CacheOutcome, Metrics, RequestFacts, end_request, start_request
from proxy.text import escape_controls

__all__ = ["AccessLog", "render_metrics", "request_note"]

log = logging.getLogger("wheelmeld.access")


def _by_outcome(name: str, help_text: str, counts: Counter[Any], outcomes: type[enum.Enum]) -> list[str]:
    """One counter per outcome, those never seen included (at 0)."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
    return lines + [f'{name}{{outcome="{o.value}"}} {counts[o]}' for o in outcomes]


def _probe_lines(metrics: Metrics) -> list[str]:
    name = "wheelmeld_metadata_probes_total"
    return [
        f"# HELP {name} Requests for PEP 658 files no page advertised, by outcome.",
        f"# TYPE {name} counter",
        f'{name}{{outcome="found"}} {metrics.probes[True]}',
        f'{name}{{outcome="missing"}} {metrics.probes[False]}',
    ]


def render_metrics(metrics: Metrics) -> bytes:
    """The counters in Prometheus' text format."""
    lines = [
        "# HELP wheelmeld_requests_total Requests answered, by route and status.",
        "# TYPE wheelmeld_requests_total counter",
    ]
    for (route, status), n in sorted(metrics.requests.items()):
        lines.append(f'wheelmeld_requests_total{{route="{route}",status="{status}"}} {n}')
    lines += _by_outcome("wheelmeld_cache_total", "Cache lookups by outcome.", metrics.cache, CacheOutcome)
    lines += _by_outcome(
        "wheelmeld_lease_total",
        "Fleet leases ([coordination] redis_url) by outcome.",
        metrics.leases,
        LeaseOutcome,
    )
    lines += [
        "# HELP wheelmeld_upstream_requests_total Requests sent upstream, by kind (page, metadata, "
        "range, file).",
        "# TYPE wheelmeld_upstream_requests_total counter",
    ]
    for kind, n in sorted(metrics.upstream_requests.items()):
        lines.append(f'wheelmeld_upstream_requests_total{{kind="{kind}"}} {n}')
    lines += _probe_lines(metrics)
    lines += _ahead_lines(metrics)
    lines += _single_lines(metrics)
    lines += [
        "# HELP wheelmeld_not_cached_total Answers served without being kept: the cache refused them.",
        "# TYPE wheelmeld_not_cached_total counter",
    ]
    for (kind, fault), n in sorted(metrics.not_cached.items()):
        lines.append(f'wheelmeld_not_cached_total{{kind="{kind}",reason="{fault}"}} {n}')
    lines += _shared_lines(metrics.shared)
    return ("\n".join(lines) + "\n").encode()


def _single_lines(metrics: Metrics) -> list[str]:
    """The counters without labels."""
    singles = {
        "wheelmeld_upstream_bytes_total": (
            "Body bytes received from upstreams (pages, metadata, ranges, files).",
            metrics.upstream_bytes,
        ),
        "wheelmeld_melds_total": ("Releases melded.", metrics.melds),
        "wheelmeld_melds_disagreed_total": (
            "Melded releases whose wheels disagreed.",
            metrics.melds_disagreed,
        ),
        "wheelmeld_meld_conflicts_total": (
            "Disagreements markers could not express.",
            metrics.meld_conflicts,
        ),
        "wheelmeld_melds_unavailable_total": (
            "Melds that could not be made; own metadata served.",
            metrics.melds_unavailable,
        ),
        "wheelmeld_blocked_fetches_total": (
            "File links refused by the fetch policy.",
            metrics.blocked_fetches,
        ),
        "wheelmeld_pages_loaded_ahead_total": (
            "Pages this worker loaded from disk after a sibling worker fetched them, before a request.",
            metrics.pages_loaded_ahead,
        ),
    }
    lines = []
    for name, (help_text, value) in singles.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter", f"{name} {value}"]
    return lines


def _shared_lines(counts: SharedCounts) -> list[str]:
    """The shared bucket tier's counters (backend s3; all zero on the local backend)."""
    lines = []
    for name, help_text, counter in (
        ("hits", "Objects found in the shared bucket after a local miss, by kind.", counts.hits),
        ("misses", "Local misses the shared bucket did not hold either, by kind.", counts.misses),
        ("uploads", "Objects this replica uploaded to the shared bucket, by kind.", counts.uploads),
        ("unasked", "Uploads sent without first asking whether the bucket held the object (it was "
         "seen missing under its fleet lease), by kind.", counts.unasked),
        ("duplicate", "Objects this replica fetched upstream that another replica had already put "
         "in the bucket, by kind.", counts.duplicates),
        ("errors", "Shared bucket requests that failed (served as a miss), by kind.", counts.errors),
    ):  # fmt: skip
        metric = f"wheelmeld_shared_{name}_total"
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter"]
        lines += [f'{metric}{{kind="{kind.value}"}} {counter[kind]}' for kind in SharedKind]
    return lines


def _ahead_lines(metrics: Metrics) -> list[str]:
    """What running ahead of the resolver did (``proxy.service.ahead``)."""
    lines = [
        "# HELP wheelmeld_ahead_total Work run ahead of the resolver, by outcome.",
        "# TYPE wheelmeld_ahead_total counter",
    ]
    for ahead in AheadOutcome:
        lines.append(f'wheelmeld_ahead_total{{outcome="{ahead.value}"}} {metrics.ahead[ahead]}')
    lines += [
        "# HELP wheelmeld_ahead_upstream_requests_total Upstream requests spent running ahead, by "
        "whether a client used what they warmed.",
        "# TYPE wheelmeld_ahead_upstream_requests_total counter",
    ]
    for ahead in (AheadOutcome.USED, AheadOutcome.WASTED):
        n = metrics.ahead_requests[ahead]
        lines.append(f'wheelmeld_ahead_upstream_requests_total{{outcome="{ahead.value}"}} {n}')
    lines += [
        "# HELP wheelmeld_ahead_unused_upstream_requests Upstream requests spent on warmed work no "
        "client has asked for yet.",
        "# TYPE wheelmeld_ahead_unused_upstream_requests gauge",
        f"wheelmeld_ahead_unused_upstream_requests {metrics.ahead_unused_requests}",
        "# HELP wheelmeld_ahead_running Jobs run ahead under way or waiting for a slot.",
        "# TYPE wheelmeld_ahead_running gauge",
        f"wheelmeld_ahead_running {metrics.ahead_running}",
    ]
    return lines


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
        facts, token = start_request()

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
            end_request(token)
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
