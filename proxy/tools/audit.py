"""``wheelmeld audit``: which releases of a project have wheels that disagree about ``Requires-Dist``.

The audit reads a project page and every wheel's own core metadata with the server's own parts — the
page cache (``PageService``), the SSRF-checked upstream client (``Upstream``) and the metadata reader
(``MetadataService.original``: PEP 658 file, else METADATA by range requests, else the whole file) —
over the same ``CacheStore``, so an audit warms the cache a later ``serve`` uses and vice versa. Each
release (exact version, local label included) is melded with ``meld_release``; the report says, per
requirement not every wheel declares, which wheels (by tag) lack it and the marker the meld adds.

Releases whose siblings upstream advertises with one and the same metadata hash agree by
construction and cost no request (docs/meld-contract.md, "Metadata sources, cheapest first").
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from proxy.cache.store import CacheStore, PageKey
from proxy.config import Config, RouteConfig
from proxy.errors import WheelmeldError
from proxy.index.model import DistFile
from proxy.index.releases import release_groups
from proxy.meld import MeldReport, WheelInput
from proxy.meld.summary import by_lacking, platform_summary
from proxy.network.upstream import Upstream
from proxy.observe import MeldLog, Metrics
from proxy.origins import redact_url
from proxy.service.pages import PageService
from proxy.service.served_metadata import MetadataService
from proxy.tools.local_proxy import route_path

__all__ = [
    "AuditReport",
    "ReleaseFinding",
    "adhoc_prefix",
    "audit_project",
    "platform_summary",
    "render_json",
    "render_table",
    "wheel_platforms",
]


@dataclass(frozen=True, slots=True)
class ReleaseFinding:
    """One release that is not consistent (or could not be fully checked)."""

    version: str
    wheels: tuple[str, ...]
    report: MeldReport
    errors: dict[str, str] = field(default_factory=dict)  # wheel -> why its metadata could not be had

    @property
    def inconsistent(self) -> bool:
        return self.report.disagreed or bool(self.report.conflicts)


@dataclass(frozen=True, slots=True)
class AuditReport:
    project: str
    index: str  # redacted
    releases_checked: int
    findings: tuple[ReleaseFinding, ...]

    @property
    def inconsistent(self) -> tuple[ReleaseFinding, ...]:
        return tuple(f for f in self.findings if f.inconsistent)

    @property
    def incomplete(self) -> tuple[ReleaseFinding, ...]:
        return tuple(f for f in self.findings if not f.report.complete)

    def exit_code(self) -> int:
        """0: consistent; 1: some release's wheels disagree; 3: none disagree but some were unreadable."""
        if self.inconsistent:
            return 1
        return 3 if self.incomplete else 0


def wheel_platforms(filenames: Sequence[str]) -> list[str]:
    """Short tag names for wheels: ``cp311-linux_aarch64`` (interpreter and platform; the ABI is noise)."""
    out: dict[str, None] = {}
    for filename in filenames:
        tags = sorted(parse_wheel_filename(filename)[3], key=str)
        interpreters = sorted({t.interpreter for t in tags})
        platforms = sorted({t.platform for t in tags})
        out[f"{'.'.join(interpreters)}-{'.'.join(platforms)}"] = None
    return list(out)


def audit_route(config: Config, index_url: str) -> tuple[RouteConfig, tuple[str, ...]]:
    """The configured route fronting ``index_url`` (so the audit shares its cache), or an ad-hoc one."""
    routed = route_path(index_url, config.routes)
    bare = index_url.rstrip("/")
    if routed is not None and (bare == routed.route.upstream or bare.startswith(routed.route.upstream + "/")):
        return routed.route, routed.segments
    return RouteConfig(prefix=adhoc_prefix(index_url), upstream=index_url.rstrip("/")), ()


def adhoc_prefix(index_url: str) -> str:
    """A route prefix of its own for an index no configured route fronts: one cache tree per index,
    so two indexes' pages of one project never share a cache entry.

    Named for what it holds (``/audit-upstream.example-simple-1a2b3c``: host, port and path, then a
    digest of the whole URL so two that read alike stay apart), since ``cache stats`` lists it; the
    credentials a URL may carry never reach the name.
    """
    bare = index_url.rstrip("/")
    parts = urlsplit(bare)
    where = (parts.hostname or "") + (f"_{parts.port}" if parts.port else "") + parts.path
    label = re.sub(r"[^A-Za-z0-9._]+", "-", where).strip("-")
    return f"/audit-{label}-{hashlib.sha256(bare.encode()).hexdigest()[:6]}"


async def audit_project(
    config: Config, project: str, index_url: str, versions: SpecifierSet | None = None
) -> AuditReport:
    """Meld every multi-wheel release of ``project`` on ``index_url`` and report the inconsistent ones."""
    route, below = audit_route(config, index_url)
    name = canonicalize_name(project)
    key = PageKey(route.name, (*below, name))
    # No ``prepare()``: it empties tmp/, where a server sharing this cache may be writing.
    store = CacheStore(config.cache_dir)
    metrics = Metrics()
    upstream = Upstream(route, metrics, config.upstream_timeout, config.upstream_concurrency)
    try:
        pages = PageService(store, offline=config.offline)
        metadata = MetadataService(store, metrics, MeldLog(), offline=config.offline)
        entry = await pages.get(key, upstream)
        files = entry.page.files if entry.page is not None else ()
        releases = {id(r): r for r in release_groups(files).values()}.values()
        gate = asyncio.Semaphore(config.upstream_concurrency)

        async def read(dist: DistFile, errors: dict[str, str]) -> WheelInput:
            async with gate:
                try:
                    return WheelInput(dist.filename, await metadata.original(key, dist, upstream))
                except WheelmeldError as exc:
                    errors[dist.filename] = exc.reason
                    return WheelInput(dist.filename, None)

        findings: list[ReleaseFinding] = []
        checked = 0
        for release in releases:
            group = release.wheels
            version = parse_wheel_filename(group[0].filename)[1]
            if versions is not None and not versions.contains(version, prereleases=True):
                continue
            checked += 1
            if not release.needs_meld:
                continue
            errors: dict[str, str] = {}
            inputs = await asyncio.gather(*(read(d, errors) for d in group))
            result = await metadata.meld_inputs(key, release, list(inputs), upstream)
            finding = ReleaseFinding(str(version), tuple(d.filename for d in group), result.report, errors)
            if finding.inconsistent or not result.report.complete:
                findings.append(finding)
    finally:
        await upstream.aclose()
    findings.sort(key=lambda f: Version(f.version))
    return AuditReport(name, redact_url(index_url), checked, tuple(findings))


# -- output -----------------------------------------------------------------------------------------


def _finding_dict(finding: ReleaseFinding) -> dict[str, Any]:
    report = finding.report
    return {
        "version": finding.version,
        "wheels": len(finding.wheels),
        "consistent": not finding.inconsistent,
        "complete": report.complete,
        "differences": [
            {
                "requirement": added.requirement,
                "served_as": added.result,
                "marker_added": added.marker,
                "declared_on": wheel_platforms(added.declared_by),
                "missing_on": wheel_platforms(added.lacking),
                "declared_by": list(added.declared_by),
                "lacking": list(added.lacking),
            }
            for added in report.added
        ],
        "provides_extra": list(report.provides_extra),
        "conflicts": list(report.conflicts),
        "problems": {**dict(report.problems), **finding.errors},
    }


def render_json(report: AuditReport) -> str:
    doc = {
        "project": report.project,
        "index": report.index,
        "releases_checked": report.releases_checked,
        "inconsistent_releases": len(report.inconsistent),
        "releases": [_finding_dict(f) for f in report.findings],
    }
    return json.dumps(doc, indent=2)


def render_table(report: AuditReport) -> str:
    """The terminal view: per release, requirements grouped by the wheels that lack them."""
    lines = [
        f"{report.project} on {report.index}: {report.releases_checked} release(s) checked, "
        f"{len(report.inconsistent)} inconsistent"
    ]
    if not report.findings:
        lines.append("every release's wheels declare the same requirements")
    for finding in report.findings:
        state = "INCONSISTENT" if finding.inconsistent else "incomplete"
        lines += ["", f"{report.project} {finding.version}  ({len(finding.wheels)} wheels)  {state}"]
        for lacking, group in by_lacking(finding.report.added):
            lines.append(f"  missing on {platform_summary(lacking) or '(no wheel)'}:")
            for added in group:
                marker = f"  + marker: {added.marker}" if added.marker else "  (own marker kept)"
                lines.append(f"    {added.requirement}{marker}")
        for conflict in finding.report.conflicts:
            lines.append(f"  conflict: {conflict}")
        for wheel, problem in {**dict(finding.report.problems), **finding.errors}.items():
            lines.append(f"  unreadable: {wheel}: {problem}")
    return "\n".join(lines)
