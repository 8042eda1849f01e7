"""The human status pages: ``/`` (routes, cache, counters, recent melds) and the per-release view.

``/-/release/<route prefix>/<page path…>/<version>`` (``/-/release/whl/nightly/cu126/torch/2.6.0``)
shows one melded release as the cache holds it: every wheel, the requirement sets side by side (which
wheels declare what), the served ``Requires-Dist`` with the markers the meld added, and the conflicts
markers could not express — what a person wants to look at when a lock surprised them. It reads the
cache only (meld records and original metadata), never an upstream.

Everything shown that came from upstream (file names, requirements, markers, reasons) is escaped.
With access control on, a credential sees only the routes it may read (``proxy.server.auth``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import quote

from packaging.metadata import parse_email
from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from proxy.cache.store import CacheStore, ProjectKey
from proxy.config import Config, RouteConfig
from proxy.errors import BadRequest, NotFound
from proxy.meld.requirements import InvalidRequiresDist, RequirementKey, parse_requirement
from proxy.server.auth import Principal
from proxy.server.metadata import MetadataService
from proxy.server.observability import MeldLog, Metrics

__all__ = ["RELEASE_PREFIX", "release_href", "render_release", "render_status"]

RELEASE_PREFIX = "/-/release"

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:90em}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;"
    "vertical-align:top}code{font-size:90%}.yes{background:#e6f4e6;text-align:center}"
    ".no{background:#fbeaea;text-align:center}.added{color:#8a4b00}small{color:#555}"
)


def _page(title: str, body: str) -> bytes:
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>{body}</body></html>"
    ).encode()


def _wheel_version(filename: str) -> Version | None:
    try:
        return parse_wheel_filename(filename)[1]
    except InvalidWheelFilename:
        return None


def release_href(config: Config, page_label: str, example_file: str) -> str | None:
    """The per-release view's path for a meld of ``page_label`` (``ProjectKey.label``), if it has one."""
    route_name, _, rest = page_label.partition("/")
    route = next((r for r in config.routes if r.name == route_name), None)
    version = _wheel_version(example_file)
    if route is None or version is None or not rest:
        return None
    segments = (*rest.split("/"), str(version))
    return RELEASE_PREFIX + route.prefix + "/" + "/".join(quote(s, safe="") for s in segments)


# -- the status page at / ---------------------------------------------------------------------------


def _added_rows(report: Mapping[str, Any]) -> str:
    rows = []
    for item in report.get("added", ()):
        if isinstance(item, dict):
            requirement = item.get("requirement", "")
            marker = item.get("marker") or "(own marker kept)"
            lacking = ", ".join(str(w) for w in item.get("lacking", ()))
        else:
            requirement, marker, lacking = str(item), "", ""
        rows.append(
            f"<tr><td><code>{escape(str(requirement))}</code></td><td><code>{escape(str(marker))}</code></td>"
            f"<td>{escape(lacking)}</td></tr>"
        )
    return "".join(rows)


def _readable(config: Config, principal: Principal) -> tuple[RouteConfig, ...]:
    return tuple(r for r in config.routes if principal.may_read(r.prefix))


def render_status(config: Config, metrics: Metrics, meld_log: MeldLog, principal: Principal) -> bytes:
    """The page at ``/``; only the routes (and their melds) ``principal`` may read."""
    readable = _readable(config, principal)
    names = {r.name for r in readable}
    routes = "".join(
        f"<tr><td><a href='{escape(r.prefix)}/'>{escape(r.prefix)}/</a></td><td>{escape(r.upstream)}</td>"
        f"<td>{'on' if r.meld else 'off'}</td><td>{r.page_ttl:g} s</td></tr>"
        for r in readable
    )
    melds = []
    for entry in meld_log.recent():
        if entry.page.partition("/")[0] not in names:
            continue
        conflicts = "".join(f"<li>{escape(str(c))}</li>" for c in entry.report.get("conflicts", ()))
        href = release_href(config, entry.page, entry.example_file)
        version = _wheel_version(entry.example_file)
        title = f"{entry.page} {version}" if version else f"{entry.page} — {entry.example_file}"
        heading = f"<a href='{escape(href)}'>{escape(title)}</a>" if href else escape(title)
        melds.append(
            f"<h3>{heading}</h3>"
            f"<p>{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(entry.at))}</p>"
            "<table><tr><th>requirement</th><th>marker added</th><th>wheels that lacked it</th></tr>"
            f"{_added_rows(entry.report)}</table>"
            + (f"<p>Conflicts markers cannot express:</p><ul>{conflicts}</ul>" if conflicts else "")
        )
    body = (
        "<h1>wheelmeld</h1>"
        f"<p>{'offline: no upstream is contacted' if config.offline else 'online'} · cache "
        f"<code>{escape(str(config.cache_dir))}</code>"
        + (f" · signed in as <code>{escape(principal.name)}</code>" if config.auth.enabled else "")
        + "</p><h2>Routes</h2><table><tr><th>prefix</th><th>upstream</th><th>meld</th><th>page TTL</th></tr>"
        f"{routes}</table>"
        f"<h2>Counters</h2><p>melds {metrics.melds}, of which disagreed {metrics.melds_disagreed}; "
        f"conflicts {metrics.meld_conflicts}; melds unavailable {metrics.melds_unavailable}; "
        f"upstream bytes {metrics.upstream_bytes}. <a href='/metrics'>/metrics</a></p>"
        "<h2>Recent releases whose wheels disagreed</h2>"
        "<p><small>Each links to its release view: every wheel's own requirements side by side and "
        "what the meld served.</small></p>" + ("".join(melds) or "<p>None yet.</p>")
    )
    return _page("wheelmeld", body)


# -- the per-release view ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Requirement:
    key: RequirementKey | str  # a str when the line is not PEP 508 (shown, never matched)
    text: str


@dataclass(frozen=True, slots=True)
class _Release:
    route: RouteConfig
    key: ProjectKey
    version: Version
    wheels: tuple[str, ...]
    own: Mapping[str, tuple[_Requirement, ...] | None]  # None: the cache holds no metadata for it
    report: Mapping[str, Any]


def _parse_line(text: str) -> _Requirement:
    try:
        parsed = parse_requirement(text)
    except InvalidRequiresDist:
        return _Requirement(text, text)
    return _Requirement(parsed.key, parsed.text)


def _own_requirements(store: CacheStore, key: ProjectKey, filename: str) -> tuple[_Requirement, ...] | None:
    data = store.read(store.metadata_path(key, filename))
    if data is None:
        return None
    raw, _unparsed = parse_email(data)
    return tuple(_parse_line(line) for line in raw.get("requires_dist", ()))


def _load_release(
    store: CacheStore, metadata: MetadataService, route: RouteConfig, key: ProjectKey, version: Version
) -> _Release | None:
    """The newest meld the cache holds for ``version`` on ``key``'s page (blocking)."""
    for wheels, report in metadata.stored_melds(key):
        if wheels and all(_wheel_version(w) == version for w in wheels):
            own = {w: _own_requirements(store, key, w) for w in wheels}
            return _Release(route, key, version, wheels, own, report)
    return None


async def render_release(
    config: Config, store: CacheStore, metadata: MetadataService, principal: Principal, path: str
) -> bytes:
    """The page for ``/-/release/<path>``; ``NotFound`` for anything the cache or principal lacks."""
    full = "/" + path.strip("/")
    route = config.route_for(full)
    # A route the principal may not read looks exactly like one that does not exist.
    if route is None or not principal.may_read(route.prefix):
        raise NotFound(f"no route serves {full!r}")
    segments = tuple(s for s in full[len(route.prefix) :].split("/") if s)
    if len(segments) < 2:
        raise NotFound(f"want {RELEASE_PREFIX}{route.prefix}/<project page path>/<version>, got {full!r}")
    *page, version_text = segments
    try:
        version = Version(version_text)
    except InvalidVersion as exc:
        raise BadRequest(f"not a version: {version_text!r}") from exc
    key = ProjectKey(route.name, tuple(page))
    release = await asyncio.to_thread(_load_release, store, metadata, route, key, version)
    if release is None:
        raise NotFound(f"the cache holds no meld of {key.label} {version}")
    return _render_release(release)


def _groups(release: _Release) -> list[tuple[tuple[str, ...], frozenset[RequirementKey | str] | None]]:
    """Wheels with the same requirement set share a column: 175 agreeing wheels are one column."""
    by_set: dict[frozenset[RequirementKey | str] | None, list[str]] = {}
    for wheel in release.wheels:
        own = release.own[wheel]
        by_set.setdefault(None if own is None else frozenset(r.key for r in own), []).append(wheel)
    return [(tuple(wheels), keys) for keys, wheels in by_set.items()]


def _wheel_list(wheels: Sequence[str]) -> str:
    items = "".join(f"<li><code>{escape(w)}</code></li>" for w in wheels)
    count = f"{len(wheels)} wheel{'s' if len(wheels) != 1 else ''}"
    return f"<details><summary>{count}</summary><ul>{items}</ul></details>"


def _cell(keys: frozenset[RequirementKey | str] | None, row: RequirementKey | str) -> str:
    if keys is None:
        return "<td>?</td>"
    return "<td class='yes'>✓</td>" if row in keys else "<td class='no'>—</td>"


def _served(requirement: _Requirement, added: Mapping[RequirementKey | str, Mapping[str, Any]]) -> str:
    item = added.get(requirement.key)
    if item is None:
        return f"<code>{escape(requirement.text)}</code> <small>(as written)</small>"
    if item.get("result") is None:
        return "<small>dropped: only wheels no installer would pick declared it</small>"
    marker = item.get("marker")
    note = (
        f"<br><small class='added'>marker added: <code>{escape(str(marker))}</code></small>"
        if marker
        else "<br><small>own marker kept: the wheels lacking it cannot use it</small>"
    )
    return f"<code class='added'>{escape(str(item['result']))}</code>{note}"


def _render_release(release: _Release) -> bytes:
    report = release.report
    added: dict[RequirementKey | str, Mapping[str, Any]] = {}
    for item in report.get("added", ()):
        if isinstance(item, dict) and isinstance(item.get("requirement"), str):
            added[_parse_line(item["requirement"]).key] = item
    rows: dict[RequirementKey | str, _Requirement] = {}
    for own in release.own.values():
        for requirement in own or ():
            rows.setdefault(requirement.key, requirement)
    groups = _groups(release)
    missing = "<small>metadata not cached</small>"
    header = "".join(f"<th>{_wheel_list(ws)}{missing if keys is None else ''}</th>" for ws, keys in groups)
    body_rows = []
    for row_key, requirement in rows.items():
        cells = "".join(_cell(keys, row_key) for _wheels, keys in groups)
        text, served = escape(requirement.text), _served(requirement, added)
        body_rows.append(f"<tr><td><code>{text}</code></td>{cells}<td>{served}</td></tr>")
    conflicts = "".join(f"<li>{escape(str(c))}</li>" for c in report.get("conflicts", ()))
    problems = report.get("problems") or {}
    problem_items = "".join(
        f"<li><code>{escape(str(w))}</code>: {escape(str(p))}</li>"
        for w, p in (problems.items() if isinstance(problems, dict) else ())
    )
    changed = {str(c) for c in report.get("changed", ())}
    wheel_rows = "".join(
        f"<tr><td><code>{escape(w)}</code></td><td>{'rewritten' if w in changed else 'as upstream'}</td></tr>"
        for w in release.wheels
    )
    page_href = release.route.prefix + "/" + "/".join(quote(s) for s in release.key.path) + "/"
    extras = ", ".join(escape(str(e)) for e in report.get("provides_extra", ())) or "none"
    title = f"{release.key.project} {release.version}"
    body = (
        f"<p><a href='/'>wheelmeld</a> · route <code>{escape(release.route.prefix)}/</code> · page "
        f"<a href='{escape(page_href)}'>"
        f"{escape(release.key.label)}</a></p><h1>{escape(title)}</h1>"
        f"<p>{len(release.wheels)} wheels; "
        f"{'they disagreed, so the served metadata was melded' if report.get('disagreed') else 'they agree'}"
        f"{'' if report.get('complete', True) else ' (incomplete: some metadata was unusable)'}.</p>"
        "<h2>Requirements, side by side</h2>"
        "<p><small>One column per set of wheels that declare the same requirements; the last column is "
        "what every wheel's served metadata says.</small></p>"
        f"<table><tr><th>requirement</th>{header}<th>served (melded)</th></tr>{''.join(body_rows)}</table>"
        f"<p>Provides-Extra served: {extras}</p>"
        "<h2>Conflicts markers cannot express</h2>"
        + (f"<ul>{conflicts}</ul>" if conflicts else "<p>None.</p>")
        + (f"<h2>Wheels whose metadata was unusable</h2><ul>{problem_items}</ul>" if problem_items else "")
        + f"<h2>Wheels</h2><table><tr><th>file</th><th>served metadata</th></tr>{wheel_rows}</table>"
    )
    return _page(f"wheelmeld: {title}", body)
