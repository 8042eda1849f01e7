"""A real wheelmeld proxy on 127.0.0.1 for tests: ``with ProxyServer(config) as proxy: proxy.url``.

The app runs under uvicorn in a background thread with its lifespan on, exactly as ``wheelmeld
serve`` runs it, so tests exercise real HTTP, real streaming and the real cache.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from proxy.config import Config, RouteConfig
from proxy.server.app import create_app
from tests.support.child_server import Started
from tests.support.serving import ThreadedServer

__all__ = ["ProxyServer", "proxy_config"]


def proxy_config(cache_dir: Path, routes: dict[str, str], **changes: object) -> Config:
    """A config with the given ``{prefix: upstream}`` routes and no default discovery.

    Running ahead is off, whatever the default, unless a test turns it on (``meld_run_ahead_depth``):
    tests read the upstream's request log for what one client request cost, and running ahead adds
    to it on its own time (tests/server/test_ahead*.py are where it is tested)."""
    built = tuple(RouteConfig(prefix=p, upstream=u.rstrip("/")) for p, u in routes.items())
    changes = {"meld_run_ahead_depth": 0, **changes}
    return replace(Config(cache_dir=cache_dir, routes=built), **changes)  # type: ignore[arg-type]


class ProxyServer(Started):
    def __init__(self, config: Config) -> None:
        self.config = config
        self._runner: ThreadedServer | None = None
        self.port = 0

    def start(self) -> ProxyServer:
        # Port 8000 is Config's default, not a request: tests take any free port unless told.
        port = self.config.port if self.config.port != 8000 else 0
        self._runner = ThreadedServer(create_app(self.config), port=port, lifespan="on", name="proxy")
        self.port = self._runner.start()
        self.config = replace(self.config, port=self.port)  # the app itself never reads its port
        logging.getLogger("wheelmeld.access").setLevel(logging.WARNING)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            self._runner.stop()
        self._runner = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"
