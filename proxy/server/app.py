"""The ASGI app: ``create_app(config)`` builds it; its lifespan owns the HTTP client and the cache.

Request paths mirror upstream paths under each route's prefix. Below a prefix, a path ending in
``/`` is a page (a project page or a project list, whichever upstream has there); otherwise its last
segment is a file of the page above it: ``<page>/<file>`` is the distribution file and
``<page>/<file>.metadata`` its served core metadata. Files are always looked up by name in the cached
page, so a client can only ever make the proxy fetch a URL that an upstream page listed.

Errors from every layer arrive here as ``WheelmeldError`` and leave as a status and a one-line reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

from packaging.utils import canonicalize_name
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from proxy.cache.errors import CacheWriteError
from proxy.cache.page_journal import PageJournal
from proxy.cache.store import CacheStore, ProjectKey
from proxy.config import Config, RouteConfig
from proxy.errors import (
    BadRequest,
    MethodNotAllowed,
    NotAcceptableError,
    NotFound,
    OfflineMiss,
    WheelmeldError,
)
from proxy.index.errors import NotAcceptable
from proxy.index.filenames import FileKind, parse_file_name
from proxy.index.model import DistFile, ProjectPage
from proxy.index.negotiate import choose_content_type
from proxy.index.render import render_list_html, render_list_json, render_project_html, render_project_json
from proxy.meld import MeldLimits
from proxy.network.pacing import Pace
from proxy.server.auth import AuthMiddleware, Principal, principal_of
from proxy.server.files import FileService, sidecar_hashes
from proxy.server.metadata import MetadataService, ServedMetadata
from proxy.server.observability import (
    AccessLog,
    CacheOutcome,
    MeldLog,
    Metrics,
    note_cache,
    request_note,
    upstream_calls,
)
from proxy.server.pages import PageEntry, PageService
from proxy.server.project_lists import ProjectListService
from proxy.server.ready import ReadyAnswer, ReadyAnswers, RequestKey
from proxy.server.revalidated import RevalidatedFiles
from proxy.server.status import RELEASE_PREFIX, render_release
from proxy.server.status_page import render_status
from proxy.server.upstream import Upstream
from proxy.text import escape_controls

__all__ = ["create_app"]

log = logging.getLogger("wheelmeld")

_DIST_SUFFIXES = (".whl", ".tar.gz", ".zip", ".tar.bz2", ".tgz", ".egg", ".exe", ".msi", ".rpm", ".metadata")
_JSON = "application/vnd.pypi.simple.v1+json"
# Pages with more entries than this render in a thread (the PyTorch index has 20,000-file pages).
_RENDER_ON_LOOP_MAX = 2000
_IMMUTABLE = "public, max-age=31536000, immutable"
# What urllib.parse.quote leaves as it is.
_URL_SAFE_NAME = re.compile(r"[A-Za-z0-9_.~-]+")


class _State:
    """Everything the handlers share; built in the lifespan, gone after it."""

    def __init__(self, config: Config, metrics: Metrics, journal: PageJournal | None) -> None:
        self.config = config
        self.store = CacheStore(config.cache_dir)
        self.metrics = metrics
        # Index requests under way in this worker; pages siblings fetched load here while it is idle.
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.meld_log = MeldLog()
        self.upstreams = {
            r.prefix: Upstream(
                r,
                metrics,
                config.upstream_timeout,
                config.upstream_concurrency,
                max_page_bytes=config.upstream_max_page_bytes,
            )
            for r in config.routes
        }
        self.pages = PageService(self.store, offline=config.offline, journal=journal, metrics=metrics)
        self.lists = ProjectListService(self.store, offline=config.offline)
        self.metadata = MetadataService(
            self.store,
            self.metrics,
            self.meld_log,
            offline=config.offline,
            limits=MeldLimits(config.meld_max_metadata_size, config.meld_max_requirements),
            incomplete_retry=config.meld_incomplete_retry,
        )
        pace = Pace(config.upstream_file_idle_timeout, config.upstream_file_min_rate)
        self.files = FileService(
            self.store, self.metrics, offline=config.offline, max_size=config.cache_max_size, pace=pace
        )
        self.revalidated = RevalidatedFiles(self.store, self.metrics, offline=config.offline)
        self.ready = ReadyAnswers(self.pages, self.revisions)

    async def render_ahead(self, entry: PageEntry) -> None:
        """Render a page loaded ahead as uv and pip ask for it (PEP 691 JSON), before they do."""
        upstream = next((u for u in self.upstreams.values() if u.route.name == entry.key.route), None)
        if upstream is not None:
            await _ready_bytes(self, entry, upstream, _JSON)

    def revisions(self, key: ProjectKey) -> tuple[int, int]:
        """What a page's advertised hashes depend on besides the page itself (``_rendered_key``)."""
        return self.metadata.revision(key), self.files.revision(key)


@dataclass(slots=True)
class _Ask:
    """What the handlers below a route read of a request, taken straight from the ASGI scope.

    Starlette's ``Request`` (and its URL object) cost a warm page answer more than finding the page.
    A handler whose answer may be sent again as it is (``ready``) says what it was built from.
    """

    scope: Scope
    method: str
    path: str
    query: str
    accept: str | None
    # pip (26.3 and later) compares a wheel's PEP 658 file with the METADATA inside the wheel it
    # downloads and refuses the install on any difference in Requires-Dist or Provides-Extra. It
    # resolves for one environment, where a wheel's own metadata is exactly what the meld gives
    # (fidelity), so such a client is served each wheel's own metadata (docs/meld-contract.md,
    # "Clients that check metadata against the wheel").
    checks_sidecar: bool = False
    built_from: tuple[PageEntry, tuple[int, int], dict[str, object]] | None = None

    @classmethod
    def of(cls, scope: Scope, request_key: RequestKey) -> _Ask:
        method, path, query, accept, checks_sidecar = request_key
        text_accept = None if accept is None else accept.decode("latin-1")
        return cls(scope, method, path, query.decode("latin-1"), text_accept, checks_sidecar)

    def query_param(self, name: str) -> str | None:
        """The last value of ``name`` in the query, as Starlette's ``query_params`` gives it."""
        if not self.query:
            return None
        found = None
        for key, value in parse_qsl(self.query, keep_blank_values=True):
            if key == name:
                found = value
        return found

    def reusable(
        self, entry: PageEntry, revisions: tuple[int, int], asked: tuple[str, ...], **notes: object
    ) -> None:
        """This request's answer may be sent again while ``entry`` and its ``revisions`` (read
        before the answer was built, so one that moved meanwhile makes it stale at once) stay.

        A page found under upstream's own spelling of ``asked`` is not reused, so a later request
        still tries the asked spelling first, as the handlers do.
        """
        if entry.key.path == asked and entry.stale_reason is None:
            self.built_from = (entry, revisions, notes)


# User-Agent prefixes of clients that check a wheel's PEP 658 file against the wheel (see _Ask).
_SIDECAR_CHECKERS = (b"pip/",)


def _request_key(scope: Scope) -> RequestKey:
    """Everything of a request the index handlers read: method, path, query, ``Accept`` and
    whether the client checks metadata files against their wheels."""
    accept = None
    checks_sidecar = False
    for name, value in scope["headers"]:
        if name == b"accept":  # ASGI servers give header names lower-cased
            accept = value
        elif name == b"user-agent":
            checks_sidecar = value.startswith(_SIDECAR_CHECKERS)
    return scope["method"], scope["path"], scope["query_string"], accept, checks_sidecar


def _error_response(exc: WheelmeldError) -> Response:
    return PlainTextResponse(exc.reason + "\n", status_code=exc.status, headers={"Cache-Control": "no-store"})


def _split(route: RouteConfig, path: str) -> tuple[tuple[str, ...], bool]:
    """Segments below the route's prefix, and whether the path ended in '/'."""
    rest = path[len(route.prefix) :]
    segments = tuple(s for s in rest.split("/") if s)
    if any(s in (".", "..") for s in segments):
        raise BadRequest(f"path segments '.' and '..' are not allowed: {path!r}")
    return segments, rest.endswith("/")


def _served_file(dist: DistFile, hashes: Mapping[str, str], core: bool | Mapping[str, str]) -> DistFile:
    """``dist`` as we list it: a link to us by its own name, and what we know of its hashes."""
    # Built directly, not with dataclasses.replace (three times slower: 15,000 calls on a big page);
    # most file names need no quoting at all.
    url = dist.filename if _URL_SAFE_NAME.fullmatch(dist.filename) else quote(dist.filename)
    # Positional, in DistFile's field order: keywords cost a frozen dataclass twice the time.
    return DistFile(
        dist.filename,
        url,
        hashes,
        dist.requires_python,
        dist.yanked,
        core,
        dist.size,
        dist.upload_time,
        dist.gpg_sig,
    )


def _served_page(state: _State, entry: PageEntry, upstream: Upstream) -> ProjectPage:
    """Upstream's page as we serve it: links to us, metadata hashes of what *we* serve."""
    assert entry.page is not None
    groups = entry.release_groups()
    # Upstream gave no hash (PyTorch nightlies): once we hold the verified file, we know it.
    known: dict[str, str] | None = None
    rewritten = []
    for dist in entry.page.files:
        hashes = dist.hashes
        if not hashes.get("sha256"):
            if known is None:
                known = sidecar_hashes(state.store.project_dir(entry.key) / "files")
            if dist.filename in known:
                hashes = {**hashes, "sha256": known[dist.filename]}
        release = groups.get(dist.filename) if dist.filename.endswith(".whl") else None
        core: bool | Mapping[str, str]
        if release is not None:
            digest = state.metadata.advertised_hash(entry.key, release, dist, upstream.route.meld)
            core = {"sha256": digest} if digest else True
        else:
            # In no release (an sdist, a PEP 825 variant wheel, a name packaging cannot read): what
            # upstream says of its metadata, passed through.
            core = dist.core_metadata if dist.filename.endswith(".whl") else False
        served = entry.served_files.get(dist.filename)
        if served is None or served.hashes != hashes or served.core_metadata != core:
            served = _served_file(dist, hashes, core)
            entry.served_files[dist.filename] = served
        rewritten.append(served)
    return replace(entry.page, files=tuple(rewritten))


def _rendered_key(state: _State, entry: PageEntry, content_type: str) -> str:
    # A change to this page's advertised hashes (a meld, a committed file, a metadata file read)
    # re-renders it, no other page; a new PageEntry starts with nothing rendered.
    key = entry.key
    return f"{content_type}|{state.metadata.revision(key)}|{state.files.revision(key)}"


def _render(state: _State, entry: PageEntry, upstream: Upstream, content_type: str, cache_key: str) -> bytes:
    if entry.kind == "list":
        assert entry.listing is not None
        json_out = content_type == _JSON
        body = render_list_json(entry.listing) if json_out else render_list_html(entry.listing)
    else:
        page = _served_page(state, entry, upstream)
        body = render_project_json(page) if content_type == _JSON else render_project_html(page)
    if len(entry.rendered) > 4:
        entry.rendered.clear()
    entry.rendered[cache_key] = body
    return body


async def _ready_bytes(state: _State, entry: PageEntry, upstream: Upstream, content_type: str) -> bytes:
    """The page as bytes: ready ones when nothing changed, else rendered (big pages off the loop)."""
    cache_key = _rendered_key(state, entry, content_type)
    body = entry.rendered.get(cache_key)
    if body is not None:
        return body
    size = len(entry.page.files) if entry.page is not None else len(entry.listing.projects)  # type: ignore[union-attr]
    if size < _RENDER_ON_LOOP_MAX:
        return _render(state, entry, upstream, content_type, cache_key)
    # A 20,000-file page takes tens of ms to render: other requests must not wait behind it.
    return await asyncio.to_thread(_render, state, entry, upstream, content_type, cache_key)


def _upstream_spellings(canonical: str) -> list[str]:
    """Directory names an upstream may keep a project under besides the PEP 503 one.

    The PyTorch index lower-cases project directories without normalizing them
    (``typing_extensions/``), so the normalized URL installers ask for can 404 there.
    """
    return [
        s for s in dict.fromkeys((canonical.replace("-", "_"), canonical.replace("-", "."))) if s != canonical
    ]


async def _get_page(state: _State, upstream: Upstream, segments: tuple[str, ...]) -> PageEntry:
    """The page at ``segments``; a normalized project name missing upstream is tried as spelled there."""
    try:
        return await state.pages.get(ProjectKey(upstream.route.name, segments), upstream)
    except (NotFound, OfflineMiss) as missing:
        if not segments or canonicalize_name(segments[-1]) != segments[-1]:
            raise
        for spelled in _upstream_spellings(segments[-1]):
            try:
                entry = await state.pages.get(
                    ProjectKey(upstream.route.name, (*segments[:-1], spelled)), upstream
                )
            except (NotFound, OfflineMiss):
                continue
            if entry.kind == "project":
                return entry
        raise missing


def _content_type(ask: _Ask) -> str:
    try:
        return choose_content_type(ask.accept, ask.query_param("format"))
    except NotAcceptable as exc:
        raise NotAcceptableError(str(exc)) from exc


async def _project_list(ask: _Ask, state: _State, upstream: Upstream) -> Response:
    """The route's own project list: streamed from the cache's renderings (``project_lists``)."""
    content_type = _content_type(ask)
    body = await state.lists.get(ProjectKey(upstream.route.name, ()), upstream, content_type == _JSON)
    note_cache(body.outcome)
    headers = _page_headers(upstream.route.page_ttl, body.stale_reason)
    return body.response(headers, content_type, ask.method == "HEAD")


def _page_headers(ttl: float, stale_reason: str | None) -> dict[str, str]:
    headers = {
        "Vary": "Accept",
        "Cache-Control": f"max-age={int(ttl)}",
        "X-Wheelmeld-Cache": "stale" if stale_reason else "fresh",
    }
    if stale_reason:
        headers["X-Wheelmeld-Stale"] = _header_value(stale_reason)
        headers["Warning"] = '110 wheelmeld "Response is stale"'
    return headers


async def _page(ask: _Ask, state: _State, upstream: Upstream, segments: tuple[str, ...]) -> Response:
    content_type = _content_type(ask)
    canonical = canonicalize_name(segments[-1]) if segments else None
    try:
        entry = await _get_page(state, upstream, segments)
    except NotFound:
        if canonical is not None and canonical != segments[-1]:
            return _redirect_to(ask, upstream.route.prefix, (*segments[:-1], canonical))
        raise
    if entry.kind == "project" and canonical is not None and canonical != segments[-1]:
        return _redirect_to(ask, upstream.route.prefix, (*segments[:-1], canonical))
    if entry.stale_reason:
        note_cache(CacheOutcome.STALE)
    else:
        note_cache(CacheOutcome.HIT, unless_noted=True)
    headers = _page_headers(upstream.route.page_ttl, entry.stale_reason)
    ask.reusable(
        entry, state.revisions(entry.key), segments, route=upstream.route.prefix, cache=CacheOutcome.HIT
    )
    body = await _ready_bytes(state, entry, upstream, content_type)
    if ask.method == "HEAD":
        headers["Content-Length"] = str(len(body))
        return Response(b"", headers=headers, media_type=content_type)
    return Response(body, headers=headers, media_type=content_type)


def _header_value(text: str, limit: int = 500) -> str:
    """Text an upstream or a client had a hand in, made safe for a header: one line, printable ASCII
    (anything else as its backslash escape: a header is Latin-1 on the wire, and h11 refuses control
    characters), bounded. Every such header value goes through here."""
    flat = escape_controls(" ".join(text.split()))
    return flat.encode("ascii", "backslashreplace").decode("ascii")[:limit]


def _redirect_to(ask: _Ask, prefix: str, segments: tuple[str, ...]) -> Response:
    target = prefix + "/" + "/".join(quote(s) for s in segments) + "/"
    if ask.query:
        target += "?" + ask.query
    return RedirectResponse(target, status_code=301)


async def _file(ask: _Ask, state: _State, upstream: Upstream, segments: tuple[str, ...]) -> Response:
    *page_path, name = segments
    entry = await _get_page(state, upstream, tuple(page_path))
    key = entry.key
    files = entry.files_by_name()
    wants_metadata = name.endswith(".metadata") and name[: -len(".metadata")] in files
    dist: DistFile | None = files.get(name[: -len(".metadata")] if wants_metadata else name)
    if dist is None:
        raise NotFound(f"/{key.label}/ lists no file {name!r}")
    if wants_metadata:
        assert entry.page is not None
        revisions = state.revisions(key)
        calls = upstream_calls()
        served = await state.metadata.serve(
            key, entry.release_groups().get(dist.filename), dist, upstream, own=ask.checks_sidecar
        )
        note_cache(CacheOutcome.MISS if upstream_calls() > calls else CacheOutcome.HIT)
        if _settled(served):
            ask.reusable(
                entry, revisions, tuple(page_path), route=upstream.route.prefix, cache=CacheOutcome.HIT
            )
        headers = {
            "ETag": f'"{served.sha256}"',
            # A file's own metadata never changes; a meld may, when a new sibling appears upstream.
            "Cache-Control": (
                _IMMUTABLE if served.meld_state == "off" else f"max-age={int(upstream.route.page_ttl)}"
            ),
            "X-Wheelmeld-Meld": _header_value(served.meld_state),
        }
        if served.varies_by_client:
            # Shared caches in front (deploy/nginx.conf) must keep pip's answer and uv's apart.
            headers["Vary"] = "User-Agent"
        if served.conflicts:
            headers["X-Wheelmeld-Conflicts"] = _header_value(
                f"{len(served.conflicts)}: {served.conflicts[0]}"
            )
        body = b"" if ask.method == "HEAD" else served.body
        if ask.method == "HEAD":
            headers["Content-Length"] = str(len(served.body))
        return Response(body, headers=headers, media_type="text/plain; charset=utf-8")
    if parse_file_name(dist.filename).kind is FileKind.VARIANTS_JSON:
        return await state.revalidated.respond(key, dist, upstream, ask.method)
    cached = state.store.file_path(key, dist.filename).exists()
    note_cache(CacheOutcome.HIT if cached else CacheOutcome.MISS)
    return await state.files.respond(key, dist, upstream, ask.method)


async def _lists_file(state: _State, upstream: Upstream, segments: tuple[str, ...]) -> bool:
    """Whether the page above ``segments`` lists its last segment as a file.

    For names of no known distribution suffix (a PEP 825 ``variants.json``, a format of the
    future): a page may list any file, and a page asked without its '/' is redirected otherwise.
    """
    try:
        entry = await _get_page(state, upstream, segments[:-1])
    except WheelmeldError:
        return False
    return segments[-1] in entry.files_by_name()


def _settled(served: ServedMetadata) -> bool:
    """Whether the same request gets the same answer until the page or its revisions change.

    An incomplete or unavailable meld is tried again on the next request, so it is not kept.
    """
    return not served.meld_state.startswith("unavailable") and ";" not in served.meld_state


async def _dispatch(ask: _Ask, state: _State, route: RouteConfig) -> Response:
    if ask.method not in ("GET", "HEAD"):
        raise MethodNotAllowed(f"{ask.method} is not allowed; this index is read-only")
    request_note(ask.scope, route=route.prefix)
    upstream = state.upstreams[route.prefix]
    segments, trailing = _split(route, ask.path)
    if trailing or not segments:
        if not trailing:
            return RedirectResponse(route.prefix + "/", status_code=301)
        if not segments:
            return await _project_list(ask, state, upstream)
        return await _page(ask, state, upstream, segments)
    if not segments[-1].lower().endswith(_DIST_SUFFIXES) and (
        len(segments) < 2 or "." not in segments[-1] or not await _lists_file(state, upstream, segments)
    ):
        return _redirect_to(ask, route.prefix, segments)  # a page asked without its '/'
    if len(segments) < 2:
        raise NotFound(f"a file must be asked for below its project page: {ask.path!r}")
    return await _file(ask, state, upstream, segments)


async def _guarded(ask: _Ask, state: _State, route: RouteConfig) -> Response:
    try:
        return await _dispatch(ask, state, route)
    except WheelmeldError as exc:
        if exc.status >= 500:
            log.warning("%s %s -> %d %s", ask.method, escape_controls(ask.path), exc.status, exc.reason)
        return _error_response(exc)
    except Exception as exc:
        # A bug of ours: the traceback goes to the log, the client gets one line.
        log.exception("unexpected error on %s %s", ask.method, escape_controls(ask.path))
        return _error_response(WheelmeldError(f"internal error ({type(exc).__name__}); see the proxy's log"))


class _RouteDispatch:
    """Answers every request below a route prefix itself; the rest go on to Starlette.

    Index traffic is thousands of warm requests a second, and Starlette's routing, ``Request``,
    and error middleware cost more than the answer itself (benchmarks/README.md); Starlette keeps
    what is not index traffic: status pages, metrics, health, and the lifespan.
    """

    def __init__(self, app: ASGIApp, owner: Starlette, config: Config) -> None:
        self.app = app
        self._owner = owner  # whose lifespan puts the _State in its state
        self._config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._config.route_for(scope["path"]) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        state: _State = self._owner.state.wheelmeld
        if not state.in_flight:
            state.idle.clear()
        state.in_flight += 1
        try:
            await self._answer(state, route, scope, receive, send)
        finally:
            state.in_flight -= 1
            if not state.in_flight:
                state.idle.set()

    async def _answer(
        self, state: _State, route: RouteConfig, scope: Scope, receive: Receive, send: Send
    ) -> None:
        request_key = _request_key(scope)
        ready = state.ready.get(request_key, route.page_ttl)
        if ready is not None:
            request_note(scope, **ready.notes)
            await send(ready.start)
            await send(ready.body)
            return
        ask = _Ask.of(scope, request_key)
        response = await _guarded(ask, state, route)
        # Exactly Response: its subclasses (files, redirects) stream or are not built from a page.
        if ask.built_from is not None and type(response) is Response and response.status_code == 200:
            entry, revisions, notes = ask.built_from
            # bytes() of a bytes object is that object, no copy; the stubs also allow a memoryview body.
            answer = ReadyAnswer.of(200, response.raw_headers, bytes(response.body), entry, revisions, notes)
            state.ready.put(request_key, answer)
        await response(scope, receive, send)


async def _unrouted(request: Request) -> Response:
    if request.method not in ("GET", "HEAD"):
        return _error_response(MethodNotAllowed(f"{request.method} is not allowed; this index is read-only"))
    return _error_response(NotFound(f"no route serves {request.url.path!r}"))


async def _healthz(request: Request) -> Response:
    return PlainTextResponse("ok\n")


async def _metrics(request: Request) -> Response:
    state: _State = request.app.state.wheelmeld
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")


def _principal(request: Request) -> Principal:
    # The auth middleware admitted every request that gets here; without its word, show nothing.
    return principal_of(request.scope) or Principal("-", frozenset())


async def _status(request: Request) -> Response:
    state: _State = request.app.state.wheelmeld
    body = render_status(state.config, state.metrics, state.meld_log, _principal(request))
    return Response(body, media_type="text/html", headers={"Cache-Control": "no-store"})


async def _release(request: Request) -> Response:
    state: _State = request.app.state.wheelmeld
    try:
        body = await render_release(
            state.config, state.store, state.metadata, _principal(request), request.path_params["path"]
        )
    except WheelmeldError as exc:
        return _error_response(exc)
    return Response(body, media_type="text/html", headers={"Cache-Control": "no-store"})


class _App(Starlette):
    """Starlette for the status pages and the lifespan, behind our own access log, access control
    and index dispatch (pure ASGI, outermost first: the access log sees and counts the 401s)."""

    def __init__(self, config: Config, metrics: Metrics, **starlette: Any) -> None:
        super().__init__(**starlette)
        self._config = config
        self._metrics = metrics

    def build_middleware_stack(self) -> ASGIApp:
        inner = _RouteDispatch(super().build_middleware_stack(), self, self._config)
        return AccessLog(AuthMiddleware(inner, self._config), self._metrics, self._config.log_format)


def create_app(config: Config, *, page_journal: Path | None = None) -> Starlette:
    """The wheelmeld ASGI app; nothing is opened until its lifespan starts.

    ``page_journal``: the journal this worker shares with its siblings of one ``serve --workers N``
    run (``proxy.cache.page_journal``); it loads the pages they fetch before they are asked here.
    """

    # The app's own counters outlive a lifespan so the access-log middleware can hold them.
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state = _State(config, metrics, PageJournal(page_journal) if page_journal else None)
        try:
            state.store.prepare()
        except CacheWriteError as exc:
            # Warm entries are still served and misses streamed uncached (the services degrade).
            log.warning("%s: serving what the cache holds, storing nothing", exc)
        app.state.wheelmeld = state
        following = asyncio.create_task(state.pages.follow(state.idle, state.render_ahead))
        try:
            yield
        finally:
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await following
            for upstream in state.upstreams.values():
                await upstream.client.aclose()

    all_methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return _App(
        config,
        metrics,
        routes=[
            Route("/healthz", _healthz, methods=["GET", "HEAD"]),
            Route("/metrics", _metrics, methods=["GET"]),
            Route("/", _status, methods=["GET", "HEAD"]),
            Route(RELEASE_PREFIX + "/{path:path}", _release, methods=["GET", "HEAD"]),
            Route("/{path:path}", _unrouted, methods=all_methods),
        ],
        lifespan=lifespan,
    )
