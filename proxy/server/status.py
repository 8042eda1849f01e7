"""The per-release view (the status page at ``/`` is ``status_page``).

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import quote

from packaging.metadata import parse_email
from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from proxy.cache.page_file import load_page
from proxy.cache.store import CacheStore, PageKey
from proxy.config import Config, RouteConfig
from proxy.errors import BadRequest, NotFound
from proxy.index.errors import PageParseError
from proxy.index.negotiate import JSON_V1
from proxy.index.parse import parse_project_page
from proxy.meld import AddedRequirement, MeldReport
from proxy.meld.requirements import InvalidRequiresDist, RequirementKey, parse_requirement
from proxy.server.auth import Principal
from proxy.server.html_page import html_page
from proxy.service.served_metadata import MetadataService

__all__ = [
    "RELEASE_PREFIX",
    "SHOWN_FIELDS",
    "release_href",
    "render_release",
    "report_extras",
    "wheel_version",
]

RELEASE_PREFIX = "/-/release"
# MeldReport.to_dict() fields the pages show in their own place; others are listed as they are.
SHOWN_FIELDS = frozenset(
    {"project", "version", "wheels", "disagreed", "complete", "added", "provides_extra", "conflicts"}
    | {"problems", "changed"}
)


def wheel_version(filename: str) -> Version | None:
    try:
        return parse_wheel_filename(filename)[1]
    except InvalidWheelFilename:
        return None


def release_href(config: Config, page_label: str, example_file: str) -> str | None:
    """The per-release view's path for a meld of ``page_label`` (``PageKey.label``), if it has one."""
    route_name, _, rest = page_label.partition("/")
    route = next((r for r in config.routes if r.name == route_name), None)
    version = wheel_version(example_file)
    if route is None or version is None or not rest:
        return None
    segments = (*rest.split("/"), str(version))
    return RELEASE_PREFIX + route.prefix + "/" + "/".join(quote(s, safe="") for s in segments)


# -- the per-release view ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Requirement:
    key: RequirementKey | str  # a str when the line is not PEP 508 (shown, never matched)
    text: str


@dataclass(frozen=True, slots=True)
class _ShownRelease:
    route: RouteConfig
    key: PageKey
    version: Version
    wheels: tuple[str, ...]
    own: Mapping[str, tuple[_Requirement, ...] | None]  # None: the cache holds no metadata for it
    report: MeldReport


def _parse_line(text: str) -> _Requirement:
    try:
        parsed = parse_requirement(text)
    except InvalidRequiresDist:
        return _Requirement(text, text)
    return _Requirement(parsed.key, parsed.text)


def _own_requirements(store: CacheStore, key: PageKey, filename: str) -> tuple[_Requirement, ...] | None:
    data = store.read(store.metadata_path(key, filename))
    if data is None:
        return None
    raw, _unparsed = parse_email(data)
    return tuple(_parse_line(line) for line in raw.get("requires_dist", ()))


def _load_release(
    store: CacheStore, metadata: MetadataService, route: RouteConfig, key: PageKey, version: Version
) -> _ShownRelease | None:
    """The newest meld the cache holds for ``version`` on ``key``'s page (blocking)."""
    for wheels, report in metadata.stored_melds(key):
        if wheels and all(wheel_version(w) == version for w in wheels):
            own = {w: _own_requirements(store, key, w) for w in wheels}
            return _ShownRelease(route, key, version, wheels, own, report)
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
    segments = route.segments(full)
    if len(segments) < 2:
        raise NotFound(f"want {RELEASE_PREFIX}{route.prefix}/<project page path>/<version>, got {full!r}")
    *page, version_text = segments
    try:
        version = Version(version_text)
    except InvalidVersion as exc:
        raise BadRequest(f"not a version: {version_text!r}") from exc
    key = PageKey(route.name, tuple(page))
    release = await asyncio.to_thread(_load_release, store, metadata, route, key, version)
    if release is not None:
        return _render_release(release)
    wheels = await asyncio.to_thread(_cached_wheels, store, key, version)
    if not wheels:
        raise NotFound(f"the cache holds no page listing wheels of {key.label} {version}")
    return _render_unmelded(route, key, version, wheels)


def _cached_wheels(store: CacheStore, key: PageKey, version: Version) -> tuple[str, ...]:
    """The wheels of ``version`` the cached page of ``key`` lists (blocking: reads one page)."""
    raw = store.read(store.page_path(key))
    try:
        stored = load_page(raw) if raw is not None else None
        page = parse_project_page(stored.body, JSON_V1, stored.url) if stored else None
    except (ValueError, PageParseError):
        return ()
    files = page.files if page is not None else ()
    return tuple(
        f.filename for f in files if f.filename.endswith(".whl") and wheel_version(f.filename) == version
    )


def _render_unmelded(route: RouteConfig, key: PageKey, version: Version, wheels: Sequence[str]) -> bytes:
    """A release the cache holds no meld of: a single wheel, or wheels that had nothing to meld."""
    if len(wheels) == 1:
        said = "It has a single wheel, so there was nothing to meld: its own metadata is served as it is."
    else:
        said = (
            f"Its {len(wheels)} wheels have no meld in the cache: upstream advertised the same metadata "
            "for each (nothing to meld), or no client has asked for their metadata yet."
        )
    title = f"{key.project} {version}"
    body = (
        _breadcrumb(route, key)
        + f"<h1>{escape(title)}</h1><p>{said}</p>"
        + "<h2>Wheels</h2><ul>"
        + "".join(f"<li><code>{escape(w)}</code></li>" for w in wheels)
        + "</ul>"
    )
    return html_page(f"wheelmeld: {title}", body)


def _breadcrumb(route: RouteConfig, key: PageKey) -> str:
    page_href = route.prefix + "/" + "/".join(quote(s) for s in key.path) + "/"
    return (
        f"<p><a href='/'>wheelmeld</a> · route <code>{escape(route.prefix)}/</code> · page "
        f"<a href='{escape(page_href)}'>{escape(key.label)}</a></p>"
    )


def report_extras(report: Mapping[str, Any], shown: frozenset[str]) -> str:
    """Report fields not in ``shown`` (a newer wheelmeld's), listed as they are rather than dropped."""
    items = []
    for name, value in report.items():
        if name in shown or value in (None, [], {}, (), ""):
            continue
        text = ", ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
        items.append(f"<li>{escape(name.replace('_', ' '))}: <code>{escape(text)}</code></li>")
    return f"<ul class='muted'>{''.join(items)}</ul>" if items else ""


def _groups(release: _ShownRelease) -> list[tuple[tuple[str, ...], frozenset[RequirementKey | str] | None]]:
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


def _served(requirement: _Requirement, added: Mapping[RequirementKey | str, AddedRequirement]) -> str:
    item = added.get(requirement.key)
    if item is None:
        return f"<code>{escape(requirement.text)}</code> <small>(as written)</small>"
    if item.result is None:
        return "<small>dropped: only wheels no installer would pick declared it</small>"
    marker = item.marker
    note = (
        f"<br><small class='added'>marker added: <code>{escape(str(marker))}</code></small>"
        if marker
        else "<br><small>own marker kept: the wheels lacking it cannot use it</small>"
    )
    return f"<code class='added'>{escape(item.result)}</code>{note}"


def _render_release(release: _ShownRelease) -> bytes:
    report = release.report
    added = {_parse_line(item.requirement).key: item for item in report.added}
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
    conflicts = "".join(f"<li>{escape(c)}</li>" for c in report.conflicts)
    problem_items = "".join(
        f"<li><code>{escape(w)}</code>: {escape(p)}</li>" for w, p in report.problems.items()
    )
    changed = set(report.changed)
    wheel_rows = "".join(
        f"<tr><td><code>{escape(w)}</code></td><td>{'rewritten' if w in changed else 'as upstream'}</td></tr>"
        for w in release.wheels
    )
    extras = ", ".join(escape(e) for e in report.provides_extra) or "none"
    title = f"{release.key.project} {release.version}"
    body = (
        _breadcrumb(release.route, release.key) + f"<h1>{escape(title)}</h1>"
        f"<p>{len(release.wheels)} wheels; "
        f"{'they disagreed, so the served metadata was melded' if report.disagreed else 'they agree'}"
        f"{'' if report.complete else ' (incomplete: some metadata was unusable)'}.</p>"
        "<h2>Requirements, side by side</h2>"
        "<p><small>One column per set of wheels that declare the same requirements; the last column is "
        "what every wheel's served metadata says.</small></p>"
        f"<table><tr><th>requirement</th>{header}<th>served (melded)</th></tr>{''.join(body_rows)}</table>"
        f"<p>Provides-Extra served: {extras}</p>"
        "<h2>Conflicts markers cannot express</h2>"
        + (f"<ul>{conflicts}</ul>" if conflicts else "<p>None.</p>")
        + (f"<h2>Wheels whose metadata was unusable</h2><ul>{problem_items}</ul>" if problem_items else "")
        + f"<h2>Wheels</h2><table><tr><th>file</th><th>served metadata</th></tr>{wheel_rows}</table>"
        + report_extras(report.to_dict(), SHOWN_FIELDS)
    )
    return html_page(f"wheelmeld: {title}", body)
