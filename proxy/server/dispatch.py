"""Index traffic: every request below a route prefix, answered without Starlette's routing.

Request paths mirror upstream paths under each route's prefix. Below a prefix, a path ending in
``/`` is a page (a project page or a project list, whichever upstream has there); otherwise its last
segment is a file of the page above it: ``<page>/<file>`` is the distribution file and
``<page>/<file>.metadata`` its served core metadata. Files are always looked up by name in the cached
page, so a client can only ever make the proxy fetch a URL that an upstream page listed.

Errors from every layer arrive here as ``WheelmeldError`` and leave through ``error_response``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote

from packaging.utils import canonicalize_name
from starlette.datastructures import State
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from proxy.cache.store import PageKey
from proxy.config import Config, RouteConfig
from proxy.errors import (
    BadRequest,
    MethodNotAllowed,
    NotAcceptableError,
    NotFound,
    WheelmeldError,
)
from proxy.index.errors import NoAcceptableFormat
from proxy.index.filenames import FileKind, parse_file_name
from proxy.index.model import DistFile
from proxy.index.negotiate import JSON_V1, choose_content_type
from proxy.network.upstream import Upstream
from proxy.observe import CacheOutcome, note_cache, upstream_calls
from proxy.server.answers import error_response, header_value, headers_only, page_headers
from proxy.server.file_responses import file_response, list_response
from proxy.server.observability import request_note
from proxy.server.ready import ReadyAnswer, RequestKey
from proxy.server.state import AppState
from proxy.service.files import IMMUTABLE
from proxy.service.meld_state import MeldKind
from proxy.service.page_views import PageView
from proxy.service.pages import PageEntry
from proxy.text import escape_controls

__all__ = ["RouteDispatch"]

log = logging.getLogger("wheelmeld")

_DIST_SUFFIXES = (".whl", ".tar.gz", ".zip", ".tar.bz2", ".tgz", ".egg", ".exe", ".msi", ".rpm", ".metadata")


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
    built_from: tuple[PageView, dict[str, object]] | None = None

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

    def reusable(self, view: PageView, asked: tuple[str, ...], **notes: object) -> None:
        """This request's answer may be sent again while ``view`` (taken before the answer was
        built, so a revision that moved meanwhile makes it stale at once) holds.

        A page found under upstream's own spelling of ``asked`` is not reused, so a later request
        still tries the asked spelling first, as the handlers do.
        """
        if view.entry.key.path == asked and view.entry.stale_reason is None:
            self.built_from = (view, notes)


# User-Agent prefixes of clients that check a wheel's PEP 658 file against the wheel (see _Ask).
# deploy/nginx.conf keys its stored .metadata by this same rule (its map to $wheelmeld_client): change
# both together; tests/deploy/test_client_class.py fails when they disagree.
_SIDECAR_CHECKERS = (b"pip/",)


def is_sidecar_checker(user_agent: bytes) -> bool:
    """Whether a client sending this ``User-Agent`` is served each wheel's own metadata: a
    case-sensitive prefix test on the header's bytes."""
    return user_agent.startswith(_SIDECAR_CHECKERS)


def _request_key(scope: Scope) -> RequestKey:
    """Everything of a request the index handlers read: method, path, query, ``Accept`` and
    whether the client checks metadata files against their wheels."""
    accept = None
    checks_sidecar = False
    for name, value in scope["headers"]:
        if name == b"accept":  # ASGI servers give header names lower-cased
            accept = value
        elif name == b"user-agent":
            checks_sidecar = is_sidecar_checker(value)
    return scope["method"], scope["path"], scope["query_string"], accept, checks_sidecar


def _split(route: RouteConfig, path: str) -> tuple[tuple[str, ...], bool]:
    """Segments below the route's prefix, and whether the path ended in '/'."""
    segments = route.segments(path)
    if any(s in (".", "..") for s in segments):
        raise BadRequest(f"path segments '.' and '..' are not allowed: {path!r}")
    return segments, len(path) > len(route.prefix) and path.endswith("/")


async def _get_page(state: AppState, upstream: Upstream, segments: tuple[str, ...]) -> PageEntry:
    return await state.pages.lookup(PageKey(upstream.route.name, segments), upstream)


def _content_type(ask: _Ask) -> str:
    try:
        return choose_content_type(ask.accept, ask.query_param("format"))
    except NoAcceptableFormat as exc:
        raise NotAcceptableError(str(exc)) from exc


async def _project_list(ask: _Ask, state: AppState, upstream: Upstream) -> Response:
    """The route's own project list: streamed from the cache's renderings (``project_lists``)."""
    content_type = _content_type(ask)
    body = await state.lists.get(PageKey(upstream.route.name, ()), upstream, content_type == JSON_V1)
    note_cache(body.outcome)
    headers = page_headers(upstream.route.page_ttl, body.stale_reason)
    return list_response(body, headers, content_type)


async def _page(ask: _Ask, state: AppState, upstream: Upstream, segments: tuple[str, ...]) -> Response:
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
    state.ahead.asked_page(entry.key)
    if entry.stale_reason:
        note_cache(CacheOutcome.STALE)
    else:
        note_cache(CacheOutcome.HIT, unless_noted=True)
    headers = page_headers(upstream.route.page_ttl, entry.stale_reason)
    view = state.views.view_of(entry)
    ask.reusable(view, segments, route=upstream.route.prefix, cache=CacheOutcome.HIT)
    body = await state.views.body(view, upstream.route.meld, content_type)
    return Response(body, headers=headers, media_type=content_type)


def _redirect_to(ask: _Ask, prefix: str, segments: tuple[str, ...]) -> Response:
    target = prefix + "/" + "/".join(quote(s) for s in segments) + "/"
    if ask.query:
        target += "?" + ask.query
    return RedirectResponse(target, status_code=301)


async def _file(ask: _Ask, state: AppState, upstream: Upstream, segments: tuple[str, ...]) -> Response:
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
        view = state.views.view_of(entry)  # before serving: a meld it makes moves the revisions
        calls = upstream_calls()
        release = entry.release_groups().get(dist.filename)
        state.ahead.asking_metadata(key, release)
        served = await state.metadata.serve(key, release, dist, upstream, own=ask.checks_sidecar)
        state.ahead.served_metadata(key, release, served.body, upstream)
        note_cache(CacheOutcome.MISS if upstream_calls() > calls else CacheOutcome.HIT)
        # An incomplete or unavailable meld is tried again on the next request, so it is not kept.
        if served.meld.settled:
            ask.reusable(view, tuple(page_path), route=upstream.route.prefix, cache=CacheOutcome.HIT)
        headers = {
            "ETag": f'"{served.sha256}"',
            # A file's own metadata never changes; a meld may, when a new sibling appears upstream.
            "Cache-Control": (
                IMMUTABLE if served.meld.kind is MeldKind.OFF else f"max-age={int(upstream.route.page_ttl)}"
            ),
            "X-Wheelmeld-Meld": header_value(served.meld.header()),
        }
        if served.varies_by_client:
            # Shared caches in front (deploy/nginx.conf) must keep pip's answer and uv's apart.
            headers["Vary"] = "User-Agent"
        if served.conflicts:
            headers["X-Wheelmeld-Conflicts"] = header_value(f"{len(served.conflicts)}: {served.conflicts[0]}")
        return Response(served.body, headers=headers, media_type="text/plain; charset=utf-8")
    if parse_file_name(dist.filename).kind is FileKind.VARIANTS_JSON:
        return await _revalidated(state, key, dist, upstream)
    cached = state.store.file_path(key, dist.filename).exists()
    note_cache(CacheOutcome.HIT if cached else CacheOutcome.MISS)
    return file_response(await state.files.answer(key, dist, upstream, ask.method))


async def _revalidated(state: AppState, key: PageKey, dist: DistFile, upstream: Upstream) -> Response:
    body, stale = await state.revalidated.get(key, dist, upstream)
    headers = {
        "Cache-Control": f"max-age={int(upstream.route.page_ttl)}",
        "ETag": f'"{hashlib.sha256(body).hexdigest()}"',
        "X-Wheelmeld-Cache": "stale" if stale else "fresh",
    }
    if stale:
        headers["X-Wheelmeld-Stale"] = stale
    media_type = "application/json" if dist.filename.endswith(".json") else "application/octet-stream"
    return Response(body, headers=headers, media_type=media_type)


async def _lists_file(state: AppState, upstream: Upstream, segments: tuple[str, ...]) -> bool:
    """Whether the page above ``segments`` lists its last segment as a file.

    For names of no known distribution suffix (a PEP 825 ``variants.json``, a format of the
    future): a page may list any file, and a page asked without its '/' is redirected otherwise.
    """
    try:
        entry = await _get_page(state, upstream, segments[:-1])
    except WheelmeldError:
        return False
    return segments[-1] in entry.files_by_name()


async def _dispatch(ask: _Ask, state: AppState, route: RouteConfig) -> Response:
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


async def _guarded(ask: _Ask, state: AppState, route: RouteConfig) -> Response:
    try:
        return await _dispatch(ask, state, route)
    except WheelmeldError as exc:
        if exc.status >= 500:
            log.warning("%s %s -> %d %s", ask.method, escape_controls(ask.path), exc.status, exc.reason)
        return error_response(exc)
    except Exception as exc:
        # A bug of ours: the traceback goes to the log, the client gets one line.
        log.exception("unexpected error on %s %s", ask.method, escape_controls(ask.path))
        return error_response(WheelmeldError(f"internal error ({type(exc).__name__}); see the proxy's log"))


class RouteDispatch:
    """Answers every request below a route prefix itself; the rest go on to Starlette.

    Index traffic is thousands of warm requests a second, and Starlette's routing, ``Request``,
    and error middleware cost more than the answer itself (benchmarks/README.md); Starlette keeps
    what is not index traffic: status pages, metrics, health, and the lifespan.
    """

    def __init__(self, app: ASGIApp, state: State, config: Config) -> None:
        self.app = app
        self._state = state  # where the lifespan puts the AppState
        self._config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._config.route_for(scope["path"]) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        state: AppState = self._state.wheelmeld
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
        self, state: AppState, route: RouteConfig, scope: Scope, receive: Receive, send: Send
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
        # A plain Response holds its whole body; its subclasses (files, lists, redirects) stream, or
        # answer HEAD themselves, or are not built from a page.
        whole = type(response) is Response
        head = ask.method == "HEAD"
        if ask.built_from is not None and whole and response.status_code == 200:
            view, notes = ask.built_from
            # bytes() of a bytes object is that object, no copy; the stubs also allow a memoryview body.
            body = b"" if head else bytes(response.body)
            answer = ReadyAnswer.of(200, response.raw_headers, body, view, notes)
            state.ready.put(request_key, answer)
        await response(scope, receive, headers_only(send) if head and whole else send)
