"""A real wheelmeld proxy on 127.0.0.1 for tests: ``with ProxyServer(config) as proxy: proxy.url``.

The app runs under uvicorn in a background thread with its lifespan on, exactly as ``wheelmeld
serve`` runs it, so tests exercise real HTTP, real streaming and the real cache.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import TracebackType

import uvicorn

from proxy.config import Config, RouteConfig
from proxy.server.app import create_app

__all__ = ["ProxyServer", "proxy_config"]


def proxy_config(cache_dir: Path, routes: dict[str, str], **changes: object) -> Config:
    """A config with the given ``{prefix: upstream}`` routes and no default discovery."""
    built = tuple(RouteConfig(prefix=p, upstream=u.rstrip("/")) for p, u in routes.items())
    return replace(Config(cache_dir=cache_dir, routes=built), **changes)  # type: ignore[arg-type]


class ProxyServer:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.port = 0

    def start(self) -> ProxyServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.config.port if self.config.port != 8000 else 0))
        self._socket, self.port = sock, sock.getsockname()[1]
        self.config = replace(self.config, port=self.port)
        server_config = uvicorn.Config(
            create_app(self.config),
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="on",
            http="h11",
            loop="asyncio",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(server_config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"proxy:{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the proxy did not start")
            time.sleep(0.005)
        logging.getLogger("wheelmeld.access").setLevel(logging.WARNING)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout=5)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ProxyServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
