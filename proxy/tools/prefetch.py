"""``wheelmeld prefetch``: fill a cache with every page, ``.metadata`` and file some installs need.

Prefetch never writes the cache itself: it asks a running proxy (``--proxy URL``) or one it starts in
process over HTTP, so pages, melds, metadata and verified files land exactly as serving puts them —
served ``.metadata`` is the *melded* one, which fetches every sibling's metadata on the way.

What to fetch comes from a ``uv.lock`` (every registry file it names, or the ``--platform`` ones'
wheels) or from requirements that the real ``uv pip compile`` resolves against the proxy once per
platform and Python version (``plan_requirements``). A rerun is cheap: files the cache holds with a
verified hash are skipped without a request, and everything else is answered from the cache, so
within the page TTL nothing reaches the upstream at all.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TextIO
from urllib.parse import quote

import httpx
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from proxy.cache.store import CacheStore, PageKey
from proxy.config import RouteConfig
from proxy.index.parse import parse_project_page
from proxy.tools.local_proxy import route_path
from proxy.tools.lockfile import LockedPackage, select_files
from proxy.tools.platforms import Target

__all__ = [
    "FetchItem",
    "PlanError",
    "PrefetchSummary",
    "Progress",
    "plan_lock",
    "plan_requirements",
    "run_plan",
]

_JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"
_CHUNK = 1024 * 1024
# Pages and metadata are small and their first request may start a meld upstream; files are big.
_SMALL_CONCURRENCY = 8
_FILE_CONCURRENCY = 4
# Resolution goes through the proxy alone: variables that would add or swap indexes are dropped.
_UV_INDEX_VARIABLES = ("UV_INDEX", "UV_DEFAULT_INDEX", "UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_FIND_LINKS")


class PlanError(ValueError):
    """What to prefetch cannot be worked out (an unroutable lock URL, a failed resolution)."""


@dataclass(frozen=True, slots=True)
class FetchItem:
    """One GET against the proxy. ``key``/``filename`` let a rerun find a cached file without a request."""

    kind: Literal["page", "metadata", "file"]
    path: str  # absolute path on the proxy; pages end in "/"
    sha256: str | None = None
    size: int | None = None
    key: PageKey | None = None
    filename: str | None = None

    @property
    def label(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class PrefetchSummary:
    fetched: int  # requests answered (pages, metadata, files)
    files: int  # distribution files among them
    skipped: int  # files already cached and verified: no request at all
    bytes: int  # body bytes received from the proxy
    seconds: float
    failures: tuple[str, ...] = ()

    def line(self) -> str:
        mb = self.bytes / 1e6
        text = (
            f"prefetch: {self.fetched} fetched ({self.files} files), {self.skipped} already cached, "
            f"{mb:.1f} MB in {self.seconds:.1f} s"
        )
        return text + (f", {len(self.failures)} FAILED" if self.failures else "")


@dataclass(slots=True)
class Progress:
    """A one-line bar on a terminal, one line per item otherwise (logs of CI runs stay readable)."""

    total: int
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    done: int = 0
    received: int = 0

    def advance(self, item: FetchItem, nbytes: int, note: str = "") -> None:
        self.done += 1
        self.received += nbytes
        width = len(str(self.total))
        text = (
            f"[{self.done:>{width}}/{self.total}] {self.received / 1e6:8.1f} MB  {item.kind:<8} {item.label}"
        )
        if note:
            text += f"  ({note})"
        if self.stream.isatty():
            self.stream.write("\r\x1b[2K" + text[:160])
            if self.done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


# -- plans ------------------------------------------------------------------------------------------


def _page_items(page_path: str, key: PageKey, files: Iterable[tuple[str, str | None, int | None]]
                ) -> list[FetchItem]:  # fmt: skip
    items = [FetchItem("page", page_path, key=key)]
    for filename, sha256, size in files:
        file_path = page_path + quote(filename, safe="")
        if filename.endswith(".whl"):
            items.append(FetchItem("metadata", file_path + ".metadata", key=key, filename=filename))
        items.append(FetchItem("file", file_path, sha256, size, key=key, filename=filename))
    return items


def plan_lock(packages: Sequence[LockedPackage], targets: Sequence[Target], routes: tuple[RouteConfig, ...]
              ) -> list[FetchItem]:  # fmt: skip
    """Every page, served ``.metadata`` and file of ``packages`` that ``targets`` need (all: none given).

    Lock URLs name whichever host the lock was made against — a wheelmeld (its path starts with a
    route prefix) or an upstream (it starts with a route's upstream URL); both map to our routes.
    """
    items: list[FetchItem] = []
    for package in packages:
        routed = route_path(package.registry, routes)
        if routed is None:
            prefixes = ", ".join(r.prefix for r in routes)
            raise PlanError(
                f"lock index {package.registry!r} ({package.name}) is served by no route ({prefixes})"
            )
        segments = (*routed.segments, package.name)
        key = PageKey(routed.route.name, segments)
        page_path = "/".join((routed.route.prefix, *(quote(s) for s in segments))) + "/"
        chosen = select_files(package, targets)
        items += _page_items(page_path, key, ((f.filename, f.sha256, f.size) for f in chosen))
    return items


def _version_of(filename: str) -> Version | None:
    try:
        if filename.endswith(".whl"):
            return parse_wheel_filename(filename)[1]
        return parse_sdist_filename(filename)[1]
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None


def uv_compile(uv: str, requirements: Sequence[str], target: Target, python: tuple[int, int], index_url: str
               ) -> list[tuple[str, str]]:  # fmt: skip
    """``(name, version)`` pins the real uv resolves for one platform and Python, against ``index_url``."""
    env = {k: v for k, v in os.environ.items() if k not in _UV_INDEX_VARIABLES}
    env.setdefault("UV_PYTHON_DOWNLOADS", "never")
    argv = [
        uv, "pip", "compile", "-", "--python-platform", target.uv_platform,
        "--python-version", f"{python[0]}.{python[1]}", "--index-url", index_url,
        "--no-header", "--no-annotate", "--no-config", "--quiet",
    ]  # fmt: skip
    done = subprocess.run(argv, input="\n".join(requirements) + "\n", capture_output=True, text=True,
                          env=env, check=False, timeout=900)  # fmt: skip
    if done.returncode != 0:
        raise PlanError(
            f"uv could not resolve for {target.name} / Python {python[0]}.{python[1]}:\n{done.stderr.strip()}"
        )
    pins: list[tuple[str, str]] = []
    for line in done.stdout.splitlines():
        text = line.split("#", 1)[0].strip()
        if not text or text.startswith("-"):
            continue
        try:
            requirement = Requirement(text)
        except InvalidRequirement as exc:
            raise PlanError(f"unexpected line in uv's output: {line!r}") from exc
        specs = [s for s in requirement.specifier if s.operator == "=="]
        if len(specs) != 1:
            raise PlanError(f"uv's output is not a pin: {line!r}")
        pins.append((canonicalize_name(requirement.name), specs[0].version))
    return pins


async def plan_requirements(
    client: httpx.AsyncClient,
    uv: str,
    requirements: Sequence[str],
    targets: Sequence[Target],
    pythons: Sequence[tuple[int, int]],
    route: RouteConfig,
    index_path: str,
) -> list[FetchItem]:
    """Resolve ``requirements`` with uv per (platform, Python) against the proxy's index at
    ``index_path`` (``route`` serves it), then pick the wheel an installer there would take (or the
    sdist when none fits) of every pin."""
    index_path = "/" + index_path.strip("/")
    below = route.segments(index_path)
    index_url = f"{str(client.base_url).rstrip('/')}{index_path}"
    wanted: dict[str, set[tuple[Target, tuple[int, int]]]] = {}
    for target in targets:
        for python in pythons:
            pins = await asyncio.to_thread(uv_compile, uv, requirements, target, python, index_url)
            for name, version in pins:
                wanted.setdefault(f"{name}=={version}", set()).add((target, python))
    items: list[FetchItem] = []
    for pin, where in sorted(wanted.items()):
        name, _, version = pin.partition("==")
        page_path = f"{index_path}/{name}/"
        response = await client.get(page_path, headers={"Accept": _JSON_ACCEPT}, follow_redirects=True)
        if response.status_code != 200:
            raise PlanError(f"the proxy answered {response.status_code} for {page_path}")
        page = parse_project_page(
            response.content, response.headers.get("content-type", ""), str(response.url)
        )
        release = [f for f in page.files if _version_of(f.filename) == Version(version)]
        by_name = {f.filename: f for f in release}
        chosen: dict[str, None] = {}
        for target, python in sorted(where, key=lambda tp: (tp[0].name, tp[1])):
            best = target.best_wheel(by_name, python)
            sdists = [f.filename for f in release if not f.filename.endswith(".whl")]
            for filename in [best] if best else sdists[:1]:
                chosen[filename] = None
        key = PageKey(route.name, (*below, name))
        items += _page_items(
            page_path, key, ((n, by_name[n].hashes.get("sha256"), by_name[n].size) for n in chosen)
        )
    return items


# -- running a plan ---------------------------------------------------------------------------------


def _cached(store: CacheStore | None, item: FetchItem) -> bool:
    """A file the cache already holds, committed and hash-verified (the sidecar is written at commit)."""
    if store is None or item.kind != "file" or item.key is None or item.filename is None:
        return False
    path = store.file_path(item.key, item.filename)
    known = store.file_hash(path)
    return path.is_file() and known is not None and (item.sha256 is None or known == item.sha256)


async def _get(client: httpx.AsyncClient, item: FetchItem) -> int:
    """GET ``item`` from the proxy, reading it whole; returns body bytes. Raises ``PlanError`` on failure."""
    digest = hashlib.sha256()
    size = 0
    headers = {"Accept": _JSON_ACCEPT} if item.kind == "page" else {}
    try:
        async with client.stream("GET", item.path, headers=headers) as response:
            if response.status_code != 200:
                body = (await response.aread()).decode(errors="replace").strip()
                raise PlanError(f"{item.path}: HTTP {response.status_code} {body[:200]}")
            async for chunk in response.aiter_raw(_CHUNK):
                size += len(chunk)
                digest.update(chunk)
    except httpx.HTTPError as exc:
        raise PlanError(f"{item.path}: {type(exc).__name__}: {exc}") from exc
    if item.kind == "file" and item.sha256 and digest.hexdigest() != item.sha256:
        raise PlanError(f"{item.path}: sha256 {digest.hexdigest()} but the lock says {item.sha256}")
    if item.kind == "file" and item.size is not None and size != item.size:
        raise PlanError(f"{item.path}: {size} bytes but the lock says {item.size}")
    return size


async def run_plan(
    client: httpx.AsyncClient,
    items: Sequence[FetchItem],
    *,
    store: CacheStore | None = None,
    progress: Progress | None = None,
) -> PrefetchSummary:
    """Fetch ``items`` through the proxy: pages, then metadata (melds), then files; dedupes repeats."""
    started = time.monotonic()
    unique = list(dict.fromkeys(items))
    progress = progress or Progress(len(unique))
    failures: list[str] = []
    counts = {"fetched": 0, "files": 0, "skipped": 0, "bytes": 0}

    async def one(item: FetchItem, gate: asyncio.Semaphore) -> None:
        if _cached(store, item):
            counts["skipped"] += 1
            progress.advance(item, 0, "cached")
            return
        async with gate:
            try:
                nbytes = await _get(client, item)
            except PlanError as exc:
                failures.append(str(exc))
                progress.advance(item, 0, "FAILED")
                return
        counts["fetched"] += 1
        counts["files"] += item.kind == "file"
        counts["bytes"] += nbytes
        progress.advance(item, nbytes)

    for kind, limit in (
        ("page", _SMALL_CONCURRENCY),
        ("metadata", _SMALL_CONCURRENCY),
        ("file", _FILE_CONCURRENCY),
    ):
        gate = asyncio.Semaphore(limit)
        await asyncio.gather(*(one(i, gate) for i in unique if i.kind == kind))
    return PrefetchSummary(
        counts["fetched"], counts["files"], counts["skipped"], counts["bytes"],
        time.monotonic() - started, tuple(failures),
    )  # fmt: skip
