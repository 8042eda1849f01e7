"""The status page at ``/``: a few numbers that matter, recent disagreements by platform, routes.

Built from what the worker already holds in memory — its counters and the last releases whose wheels
disagreed (``MeldLog``, bounded) — so it costs the same with ten releases in the cache or ten
thousand, and never touches the disk or an upstream. Disagreements are grouped as ``wheelmeld audit``
groups them (``proxy.meld.summary``): the requirements missing on one set of wheels under one
platform summary. Everything that came from upstream is escaped; with access control on, a
credential sees only the routes (and melds) it may read.
"""

from __future__ import annotations

import time
from html import escape

from proxy.config import Config, RouteConfig
from proxy.meld.summary import by_lacking, platform_summary
from proxy.observe import CacheOutcome, MeldEntry, MeldLog, Metrics
from proxy.server.auth import Principal
from proxy.server.html_page import html_page
from proxy.server.status import SHOWN_FIELDS, release_href, report_extras, wheel_version
from proxy.text import masked_url

__all__ = ["human_bytes", "render_status"]


def human_bytes(n: int) -> str:
    """``1991165751`` -> ``1.99 GB`` (decimal units, as download tools print them)."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            if unit == "B":
                return f"{int(size)} B"
            return f"{size:.3g} {unit}" if size < 1000 else f"{size:,.0f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def _number(value: str, label: str, *, warn: bool = False) -> str:
    return f"<div class='number{' warn' if warn else ''}'><b>{escape(value)}</b><span>{label}</span></div>"


def _numbers(metrics: Metrics) -> str:
    requests = sum(metrics.requests.values())
    errors = sum(n for (_route, status), n in metrics.requests.items() if status >= 500)
    lookups = sum(metrics.cache.values())
    hits = metrics.cache[CacheOutcome.HIT] + metrics.cache[CacheOutcome.REVALIDATED]
    ratio = f"{100 * hits / lookups:.0f}%" if lookups else "–"
    stale = metrics.cache[CacheOutcome.STALE]
    upstream = sum(metrics.upstream_requests.values())
    return (
        "<div class='numbers'>"
        + _number(f"{requests:,}", "requests answered")
        + _number(ratio, f"cache hit ratio ({lookups:,} lookups)")
        + _number(f"{upstream:,}", "upstream requests")
        + _number(human_bytes(metrics.upstream_bytes), "from upstream")
        + _number(f"{metrics.melds:,}", "releases melded")
        + _number(f"{metrics.melds_disagreed:,}", "whose wheels disagreed")
        + _number(f"{stale:,}", "stale answers (upstream failing)", warn=stale > 0)
        + _number(f"{errors:,}", "errors (5xx)", warn=errors > 0)
        + "</div>"
    )


def _disagreement(config: Config, entry: MeldEntry) -> str:
    report = entry.report
    version = wheel_version(entry.example_file)
    title = f"{entry.page.rpartition('/')[2]} {version}" if version else entry.example_file
    href = release_href(config, entry.page, entry.example_file)
    heading = f"<a href='{escape(href)}'>{escape(title)}</a>" if href else escape(title)
    groups = []
    for lacking, added in by_lacking(report.added):
        lines = "".join(
            f"<li><code>{escape(a.requirement)}</code>"
            + (f" <small class='added'>+ marker <code>{escape(a.marker)}</code></small>" if a.marker else "")
            + "</li>"
            for a in added
        )
        kept = sum(a.marker is None for a in added)
        note = (
            f"<small>{'They' if kept == len(added) else f'{kept} of them'} keep their own markers, which "
            "already leave out the wheels lacking them.</small>"
            if kept
            else ""
        )
        where = platform_summary(lacking) or "(no wheel)"
        groups.append(
            f"<div class='group'>Missing on <span class='platforms'>{escape(where)}</span>"
            f" <small>({len(lacking)} wheel{'s' if len(lacking) != 1 else ''})</small>"
            f"<ul>{lines}</ul>{note}</div>"
        )
    conflict_items = "".join(f"<li>{escape(c)}</li>" for c in report.conflicts)
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(entry.at))
    return (
        f"<div class='release'><h3>{heading}</h3><small>{escape(entry.page)} · "
        f"{report.wheels} wheels · melded {when}</small>"
        + "".join(groups)
        + (f"<p>Conflicts markers cannot express:</p><ul>{conflict_items}</ul>" if conflict_items else "")
        + report_extras(report.to_dict(), SHOWN_FIELDS)
        + "</div>"
    )


def _route_rows(readable: tuple[RouteConfig, ...]) -> str:
    return "".join(
        f"<tr><td><a href='{escape(r.prefix)}/'>{escape(r.prefix)}/</a></td><td><code>{escape(r.upstream)}"
        f"</code></td><td>{'on' if r.meld else 'off'}</td><td>{r.page_ttl:g} s</td></tr>"
        for r in readable
    )


def render_status(config: Config, metrics: Metrics, meld_log: MeldLog, principal: Principal) -> bytes:
    """The page at ``/``; only the routes (and their melds) ``principal`` may read."""
    readable = tuple(r for r in config.routes if principal.may_read(r.prefix))
    names = {r.name for r in readable}
    recent = [e for e in meld_log.recent() if e.page.partition("/")[0] in names]
    mode = "offline: no upstream is contacted" if config.offline else "online"
    signed_in = f" · signed in as <code>{escape(principal.name)}</code>" if config.auth.enabled else ""
    leases = (
        f" · fleet leases on <code>{escape(masked_url(config.redis_url))}</code>" if config.redis_url else ""
    )
    body = (
        "<h1>wheelmeld</h1>"
        f"<p class='muted'>{mode} · cache <code>{escape(str(config.cache_dir))}</code>{leases}{signed_in}</p>"
        + _numbers(metrics)
        + "<p><small>Counted by this worker since it started · <a href='/metrics'>/metrics</a></small></p>"
        "<h2>Recent releases whose wheels disagreed</h2>"
        "<p><small>The requirements some wheels of a release lack, grouped by the wheels that lack "
        "them; each release links to its view: every wheel's requirements side by side and what the "
        "meld served.</small></p>"
        + ("".join(_disagreement(config, e) for e in recent) or "<p>None yet.</p>")
        + "<h2>Routes</h2><table><tr><th>prefix (project list)</th><th>upstream</th><th>meld</th>"
        f"<th>page TTL</th></tr>{_route_rows(readable)}</table>"
    )
    return html_page("wheelmeld", body)
