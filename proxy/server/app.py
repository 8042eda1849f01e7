"""The ASGI app: ``create_app(config)`` builds it; its lifespan owns the HTTP client and the cache.

Outermost first: the access log (it sees and counts the 401s), access control, then the index
dispatcher (``dispatch``), which answers every request below a route prefix itself and hands the
rest — status pages, metrics, health, the lifespan — to a plain Starlette app.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from proxy.cache.backend import opened_shared
from proxy.cache.errors import CacheWriteError
from proxy.cache.page_journal import PageJournal
from proxy.config import Config
from proxy.errors import MethodNotAllowed, NotFound, WheelmeldError
from proxy.observe import Metrics
from proxy.server.answers import error_response
from proxy.server.auth import AuthMiddleware, Principal, principal_of
from proxy.server.dispatch import RouteDispatch
from proxy.server.observability import AccessLog, render_metrics
from proxy.server.state import AppState
from proxy.server.status import RELEASE_PREFIX, render_release
from proxy.server.status_page import render_status

__all__ = ["WheelmeldApp", "create_app"]

log = logging.getLogger("wheelmeld")


async def _unrouted(request: Request) -> Response:
    if request.method not in ("GET", "HEAD"):
        raise MethodNotAllowed(f"{request.method} is not allowed; this index is read-only")
    raise NotFound(f"no route serves {request.url.path!r}")


async def _healthz(request: Request) -> Response:
    return PlainTextResponse("ok\n")


async def _metrics(request: Request) -> Response:
    state: AppState = request.app.state.wheelmeld
    return Response(render_metrics(state.metrics), media_type="text/plain; version=0.0.4")


def _principal(request: Request) -> Principal:
    # The auth middleware admitted every request that gets here; without its word, show nothing.
    return principal_of(request.scope) or Principal("-", frozenset())


async def _status(request: Request) -> Response:
    state: AppState = request.app.state.wheelmeld
    body = render_status(state.config, state.metrics, state.meld_log, _principal(request))
    return Response(body, media_type="text/html", headers={"Cache-Control": "no-store"})


async def _release(request: Request) -> Response:
    state: AppState = request.app.state.wheelmeld
    body = await render_release(
        state.config, state.store, state.metadata, _principal(request), request.path_params["path"]
    )
    return Response(body, media_type="text/html", headers={"Cache-Control": "no-store"})


async def _error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, WheelmeldError)
    return error_response(exc)


class WheelmeldApp:
    """The proxy as one ASGI app: the access log, access control, the index dispatcher, Starlette.

    ``state`` is the Starlette app's: its lifespan puts the worker's ``AppState`` there, as
    ``state.wheelmeld``, and the dispatcher reads it from there. ``router`` is the Starlette app's
    too: ``router.lifespan_context(app)`` runs the lifespan without a server.
    """

    def __init__(self, config: Config, metrics: Metrics, starlette: Starlette) -> None:
        self.state: State = starlette.state
        self.router = starlette.router
        dispatch = RouteDispatch(starlette, self.state, config)
        self._app: ASGIApp = AccessLog(AuthMiddleware(dispatch, config), metrics, config.log_format)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


@contextlib.asynccontextmanager
async def _serving(app: Starlette, state: AppState) -> AsyncIterator[None]:
    """The worker's state in ``app.state`` while it serves, with its pages followed ahead."""
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
        await state.ahead.close()
        await state.metadata.aclose()  # its uploads hold locks and leases: before the leases close
        for upstream in state.upstreams.values():
            await upstream.aclose()
        if state.leases is not None:
            await state.leases.aclose()


def create_app(config: Config, *, page_journal: Path | None = None) -> WheelmeldApp:
    """The wheelmeld ASGI app; nothing is opened until its lifespan starts.

    ``page_journal``: the journal this worker shares with its siblings of one ``serve --workers N``
    run (``proxy.cache.page_journal``); it loads the pages they fetch before they are asked here.
    """

    # The app's own counters outlive a lifespan so the access-log middleware can hold them.
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The bucket (backend s3) is opened first and closed last: every service may reach it.
        async with opened_shared(config, metrics.shared) as shared:
            state = AppState(config, metrics, PageJournal(page_journal) if page_journal else None, shared)
            async with _serving(app, state):
                yield

    all_methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    starlette = Starlette(
        routes=[
            Route("/healthz", _healthz, methods=["GET", "HEAD"]),
            Route("/metrics", _metrics, methods=["GET"]),
            Route("/", _status, methods=["GET", "HEAD"]),
            Route(RELEASE_PREFIX + "/{path:path}", _release, methods=["GET", "HEAD"]),
            Route("/{path:path}", _unrouted, methods=all_methods),
        ],
        exception_handlers={WheelmeldError: _error},
        lifespan=lifespan,
    )
    return WheelmeldApp(config, metrics, starlette)
