"""An in-process wheelmeld proxy on 127.0.0.1 for the tools, and URL → route mapping.

``prefetch`` drives a proxy over HTTP so the cache is filled exactly as serving fills it; when no
``--proxy`` is given it starts this one: the real ``create_app`` under uvicorn in a background thread,
on a port the kernel picks, stopped when the block ends.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from proxy.cache.store import PageKey
from proxy.config import Config, RouteConfig

__all__ = ["LocalProxyError", "RoutedPath", "route_path", "running_proxy"]

_START_TIMEOUT = 15.0


class LocalProxyError(RuntimeError):
    """The in-process proxy could not start."""


@contextlib.contextmanager
def running_proxy(config: Config) -> Iterator[str]:
    """Serve ``config`` on 127.0.0.1 (any free port) for the duration of the block; yields its base URL."""
    import uvicorn

    from proxy.server.app import create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = replace(config, host="127.0.0.1", port=port)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config), log_config=None, log_level="warning", access_log=False,
            lifespan="on", http="h11", loop="asyncio", timeout_graceful_shutdown=2,
        )
    )  # fmt: skip
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="wheelmeld-local", daemon=True
    )
    # The tools print their own progress; one access-log line per prefetched file would drown it.
    access = logging.getLogger("wheelmeld.access")
    old_level = access.level
    access.setLevel(logging.WARNING)
    thread.start()
    try:
        deadline = time.monotonic() + _START_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise LocalProxyError("the in-process proxy did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=5)
        sock.close()
        access.setLevel(old_level)


@dataclass(frozen=True, slots=True)
class RoutedPath:
    """A URL seen through the proxy's routes: the route and the path segments below its prefix."""

    route: RouteConfig
    segments: tuple[str, ...]

    def key(self) -> PageKey:
        """The cache key of the page these segments name (all of them: a page path)."""
        return PageKey(self.route.name, self.segments)


def route_path(
    url: str, routes: tuple[RouteConfig, ...], *, proxy_url: str | None = None
) -> RoutedPath | None:
    """Which route serves ``url`` and at which segments, or ``None``.

    ``url`` may be a proxy URL (its path starts with a route prefix: a lock made through any
    wheelmeld with the same routes) or an upstream URL (it starts with a route's upstream). Proxy
    paths win when ``url``'s origin is ``proxy_url``'s; otherwise upstream URLs are tried first.
    """
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    origin = f"{parts.scheme}://{parts.netloc}"
    by_upstream = _by_upstream(url, routes)
    by_prefix = _by_prefix(path, routes)
    if proxy_url is not None and origin == proxy_url.rstrip("/"):
        return by_prefix or by_upstream
    return by_upstream or by_prefix


def _by_prefix(path: str, routes: tuple[RouteConfig, ...]) -> RoutedPath | None:
    best: RouteConfig | None = None
    for route in routes:
        if (path == route.prefix or path.startswith(route.prefix + "/")) and (
            best is None or len(route.prefix) > len(best.prefix)
        ):
            best = route
    if best is None:
        return None
    return RoutedPath(best, _segments(path[len(best.prefix) :]))


def _by_upstream(url: str, routes: tuple[RouteConfig, ...]) -> RoutedPath | None:
    bare = url.split("?", 1)[0].split("#", 1)[0].rstrip("/")
    best: RouteConfig | None = None
    for route in routes:
        base = route.upstream.rstrip("/")
        if (bare == base or bare.startswith(base + "/")) and (
            best is None or len(route.upstream) > len(best.upstream)
        ):
            best = route
    if best is None:
        return None
    return RoutedPath(best, _segments(urlsplit(bare).path[len(urlsplit(best.upstream).path.rstrip("/")) :]))


def _segments(rest: str) -> tuple[str, ...]:
    from urllib.parse import unquote

    return tuple(unquote(s) for s in rest.split("/") if s)
